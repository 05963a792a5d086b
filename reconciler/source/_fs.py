"""Which files of a repository are manifests, and reading them without leaving the repository.

Used by the loader (to find manifests and read them, and the values files)
and by the template loader (to read includes). Every path is resolved to
its real location and checked to lie inside the repository's real root
before anything is opened; a symlink pointing outside is an error, never
followed. Hidden paths (``.git/...``) are never read, however they are named.

Rules for what is a manifest (documented in example-repo/README.md):

- ``*.yaml``, ``*.yml`` are manifests; ``*.j2`` files (e.g. ``web.yaml.j2``) are
  Jinja2 templates rendered to YAML first;
- skipped: hidden files and directories (``.git``, ``.github``, ...), templates
  whose name or a folder on whose path starts with ``_`` (Jinja2 partials such
  as ``_labels.j2`` or ``_lib/meta.j2``, read only through includes), the root's
  ``values.yaml`` and ``environments/`` directory, and whatever the root's
  ``.capstanignore`` names; plain YAML in a folder starting with ``_`` is read
  like any other unless ``.capstanignore`` names it;
- every skipped path (a skipped directory once, not its contents) and every
  file that is not a manifest is reported with the reason (``validate -v``);
- ``.capstanignore``: one glob per line (``#`` comments); a pattern with a ``/``
  is matched against the repository-relative path, otherwise against the
  file or directory name; a trailing ``/`` matches directories only;
- a directory or file reached twice through symlinks inside the repository
  is read once;
- a directory below the loaded one that holds a kustomization file is not
  entered: the loader has kustomize build it (Flux's rule).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from reconciler.source.errors import ManifestError, SourceLocation

VALUES_FILE = "values.yaml"
ENVIRONMENTS_DIR = "environments"
IGNORE_FILE = ".capstanignore"
MANIFEST_SUFFIXES = (".yaml", ".yml")
TEMPLATE_SUFFIX = ".j2"
# Far above any manifest (the Kubernetes API refuses objects over ~1.5 MiB);
# keeps a stray dump in the repository from exhausting memory.
MAX_FILE_BYTES = 8 * 1024 * 1024


class RepositoryPathError(Exception):
    """A path that must not be read: outside the repository, not a regular file, too big."""


class MissingFile(RepositoryPathError):
    """The path is inside the repository, but nothing is there."""


@dataclass(frozen=True)
class SkippedPath:
    """A file or directory the loader did not read as a manifest, and why."""

    name: str  # repository-relative, '/'-separated
    reason: str


@dataclass(frozen=True)
class ManifestFile:
    """A manifest or template found in the repository."""

    name: str  # repository-relative, '/'-separated
    real_path: Path
    template: bool


def is_inside(path: Path, root_real: Path) -> bool:
    # Both are absolute and normalized (realpath), so a string prefix is exact
    # and much cheaper than walking path.parents.
    root = str(root_real)
    text = str(path)
    return text == root or text.startswith(root.rstrip(os.sep) + os.sep)


def relative_name(path: Path, root: Path) -> str:
    return str(PurePosixPath(*path.relative_to(root).parts)) if path != root else "."


def resolve_inside(root_real: Path, name: str) -> Path:
    """The real path of repository-relative ``name``; raises if it leaves the repository.

    ``name`` may be hostile (an include written in a template): absolute paths,
    ``..`` and symlinks are all resolved before the containment check.
    """
    if not name or "\x00" in name:
        raise RepositoryPathError(f"invalid path {name!r}")
    candidate = Path(os.path.realpath(root_real / name.lstrip("/")))
    if name.startswith("/") or not is_inside(candidate, root_real):
        raise RepositoryPathError(f"{name!r} resolves outside the repository")
    return candidate


def read_inside(root_real: Path, real_path: Path, *, allow_hidden: bool = False) -> str:
    """The UTF-8 text of a regular file that lies inside the repository.

    Hidden paths are refused unless asked for: ``.git/config`` may hold a
    token in a remote URL, and a template or symlink must not be able to
    copy it into a ConfigMap or ``capstan render`` output.
    """
    if not is_inside(real_path, root_real):
        raise RepositoryPathError("resolves outside the repository")
    if not allow_hidden and any(
        part.startswith(".") for part in real_path.relative_to(root_real).parts
    ):
        raise RepositoryPathError("resolves to a hidden path (.git, ...), which is never read")
    # O_NOFOLLOW: the path was resolved already; a symlink appearing here
    # means the tree changed under us, and is refused rather than followed.
    try:
        fd = os.open(real_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise MissingFile("no such file") from exc
    except OSError as exc:
        raise RepositoryPathError(f"cannot open: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        # Checked on the open descriptor: a FIFO named web.yaml would block
        # a plain read forever.
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise RepositoryPathError("not a regular file")
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise RepositoryPathError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RepositoryPathError(f"not UTF-8 text (bad byte at offset {exc.start})") from exc


@dataclass(frozen=True)
class _IgnoreRule:
    pattern: str
    directories_only: bool
    full_path: bool

    def matches(self, name: str, *, is_dir: bool) -> bool:
        if self.directories_only and not is_dir:
            return False
        target = name if self.full_path else name.rsplit("/", 1)[-1]
        return fnmatchcase(target, self.pattern)


def _ignore_rules(root_real: Path) -> tuple[list[_IgnoreRule], list[ManifestError]]:
    path = root_real / IGNORE_FILE
    if not os.path.lexists(path):
        return [], []
    try:
        text = read_inside(root_real, Path(os.path.realpath(path)), allow_hidden=True)
    except RepositoryPathError as exc:
        return [], [ManifestError(SourceLocation(IGNORE_FILE), str(exc))]
    rules: list[_IgnoreRule] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        directories_only = line.endswith("/")
        pattern = line.rstrip("/").lstrip("/")
        if pattern:
            rules.append(_IgnoreRule(pattern, directories_only, "/" in pattern))
    return rules, []


def is_manifest_name(name: str) -> bool:
    return name.endswith(MANIFEST_SUFFIXES) or name.endswith(TEMPLATE_SUFFIX)


@dataclass(frozen=True)
class Discovered:
    """What :func:`discover` found under a directory."""

    manifests: list[ManifestFile]
    # Directories built as a whole (Kustomize directories), sorted by name: (name, real path).
    built: list[tuple[str, Path]]
    skipped: list[SkippedPath]
    errors: list[ManifestError]


def discover(
    root_real: Path,
    start: Path,
    *,
    refuse_dir: Callable[[Path, str, Callable[[str], bool]], str | None] | None = None,
    build_dir: Callable[[Path, str, Callable[[str], bool]], bool] | None = None,
) -> Discovered:
    """Every manifest under ``start`` (a real directory inside ``root_real``), sorted by name,
    and what was passed over, with the reason. Each directory below ``start`` is asked, given
    its real path, repository-relative name, and whether a file name is ignored: one
    ``build_dir`` says yes to is listed in ``built`` and not entered (Flux's rule for a
    Kustomize directory inside a plain folder); one ``refuse_dir`` has a reason for is an
    error, and not entered."""
    rules, errors = _ignore_rules(root_real)

    def ignored(file: str) -> bool:
        return _ignored(file, rules)

    found: list[ManifestFile] = []
    built: list[tuple[str, Path]] = []
    skipped: list[SkippedPath] = []
    seen_real: set[Path] = set()
    # (logical directory under root_real, its real path); iterative so a deep
    # tree cannot exhaust the stack.
    pending: list[tuple[Path, Path]] = [(start, start)]
    while pending:
        logical_dir, real_dir = pending.pop()
        if real_dir in seen_real:
            continue
        seen_real.add(real_dir)
        try:
            entries = sorted(os.scandir(real_dir), key=lambda entry: entry.name)
        except OSError as exc:
            name = relative_name(logical_dir, root_real)
            errors.append(ManifestError(SourceLocation(name), f"cannot list: {exc.strerror}"))
            continue
        subdirectories: list[tuple[Path, Path]] = []
        for entry in entries:
            logical = logical_dir / entry.name
            name = relative_name(logical, root_real)
            reason = _skip_reason(name, entry, rules)
            if reason is not None:
                skipped.append(SkippedPath(name, reason))
                continue
            real = Path(os.path.realpath(entry.path)) if entry.is_symlink() else Path(entry.path)
            if not is_inside(real, root_real):
                errors.append(
                    ManifestError(
                        SourceLocation(name),
                        "symlink points outside the repository; refusing to follow it "
                        f"(add it to {IGNORE_FILE} if it is not a manifest)",
                    )
                )
                continue
            if real.is_dir():
                if build_dir is not None and build_dir(real, name, ignored):
                    if real not in seen_real:  # reached twice through symlinks: built once
                        seen_real.add(real)
                        built.append((name, real))
                    continue
                refusal = refuse_dir(real, name, ignored) if refuse_dir is not None else None
                if refusal is not None:
                    errors.append(ManifestError(SourceLocation(name), refusal))
                    continue
                subdirectories.append((logical, real))
            elif not is_manifest_name(entry.name):
                skipped.append(SkippedPath(name, "not a manifest (.yaml, .yml or .j2)"))
            elif real not in seen_real:
                seen_real.add(real)
                found.append(ManifestFile(name, real, entry.name.endswith(TEMPLATE_SUFFIX)))
        # Reversed onto the stack so directories are entered in name order:
        # what a symlink makes reachable twice is read under its first name.
        pending.extend(reversed(subdirectories))
    found.sort(key=lambda manifest: manifest.name)
    built.sort()
    skipped.sort(key=lambda path: path.name)
    return Discovered(found, built, skipped, errors)


def _ignored(name: str, rules: list[_IgnoreRule]) -> bool:
    return any(rule.matches(name, is_dir=False) for rule in rules)


def _skip_reason(name: str, entry: os.DirEntry[str], rules: list[_IgnoreRule]) -> str | None:
    if name == IGNORE_FILE:
        return "lists the paths to skip"
    if entry.name.startswith("."):
        return "hidden (never read)"
    if entry.name.endswith(TEMPLATE_SUFFIX) and any(
        part.startswith("_") for part in name.split("/")
    ):
        return "a template partial (a '_' name or folder): read only when a template includes it"
    if name == VALUES_FILE:
        return "the values of the templates"
    if name == ENVIRONMENTS_DIR:
        return "the values of each environment (--env)"
    if not rules:
        return None
    try:
        is_dir = entry.is_dir()
    except OSError:
        is_dir = False
    rule = next((rule for rule in rules if rule.matches(name, is_dir=is_dir)), None)
    if rule is None:
        return None
    shown = rule.pattern + ("/" if rule.directories_only else "")
    return f"matches {shown!r} in {IGNORE_FILE}"
