"""Turning a repository directory into validated objects: render → parse → validate, all or nothing.

Called by the sync loop for every commit it considers (on a checkout that
``reconciler.source``'s fetch side prepared) and by ``capstan validate``,
``capstan render`` and ``capstan plan``. The result is either every object of
the repository, each with the place it was written, or ``ManifestErrors`` with
every problem of the whole repository — never a partial set.

What is read: the directory's kustomization, built by kustomize, when it has one; else its
plain manifests and templates, and, as Flux's kustomize-controller does for a path without
kustomization, each Kustomize directory below it built as a whole (``kustomize``).

Checks on top of the per-object schema (``schemas.parse_object``): duplicates
(same kind/namespace/name), two Services with the same ``clusterIP``, and the Pod
Security level of each pod spec's namespace (``schemas.podsecurity``: the Namespace
manifest's ``pod-security.kubernetes.io/enforce`` label, baseline without one; a refusal
names the label that admits it). An error on a line of a plain manifest that holds a
``{{ ... }}`` placeholder says the file is a template committed unrendered.
Namespaced objects written without a namespace are put in ``default`` before
validation; a field written as null is a field not set (as in Kubernetes), and
``status`` is dropped (it is reported, not desired). As Kubernetes' API server and kubectl
read a manifest, so does the loader: a mapping key written as a number or boolean (a
ConfigMap's ``404:``) is that text, ``metadata.selfLink`` (from ``kubectl get -o yaml``) is
dropped, and so is ``metadata.namespace`` on a cluster-scoped kind. A namespace that objects use
but no manifest defines (other than ``default``, ``kube-system``, ``kube-public``,
which always exist) is added as a Namespace object with a warning, as Argo CD's
``CreateNamespace=true`` does; the warning names the manifest to add to manage it
explicitly (such a namespace enforces the default level, baseline). A field kept but without
effect here (``spec.loadBalancerIP``) is a warning at its line, not an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from reconciler.source._field_hints import unknown_field_message
from reconciler.source._fs import (
    ManifestFile,
    RepositoryPathError,
    SkippedPath,
    discover,
    read_inside,
    relative_name,
    resolve_inside,
)
from reconciler.source._renderjail import render_templates
from reconciler.source._wording import plain_message
from reconciler.source.errors import (
    ManifestError,
    ManifestErrors,
    SourceLocation,
    format_field_path,
)
from reconciler.source.kustomize import (
    find_kustomization,
    is_kustomize_directory,
    layout_problem,
    local_bases,
    render_kustomization,
)
from reconciler.source.render import RenderLimits
from reconciler.source.values import load_values
from reconciler.source.yamlpos import LoadBudget, YamlDocument, load_documents
from schemas import (
    KUBERNETES_NAMESPACES,
    SUPPORTED_KINDS,
    KubeObject,
    Namespace,
    ObjectKey,
    ObjectMeta,
    Service,
    UnsupportedKindError,
    model_for,
    parse_object,
)
from schemas.podsecurity import (
    ENFORCE_LABEL,
    Violation,
    check_pod_spec,
    namespace_level,
    pod_spec_of,
)

__all__ = [
    "APPLY_ORDER",
    "DEFAULT_NAMESPACE",
    "LoadedObject",
    "LoadedRepository",
    "load_repository",
]

DEFAULT_NAMESPACE = "default"

# The order objects are listed (and, by the sync loop, applied) in: what
# others refer to comes first, as Helm's install order does.
APPLY_ORDER = (
    "Namespace",
    "Node",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Service",
    "IngressClass",
    "Ingress",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Pod",
    "Job",
    "CronJob",
)
# Each kustomize run has its own limits (kustomize.py); this bounds how many one commit makes.
MAX_KUSTOMIZE_BUILDS = 64
# Values of these kinds never appear in an error message.
_SECRET_KINDS = frozenset({"Secret"})
_MAX_INPUT_ECHO = 60


@dataclass(frozen=True)
class LoadedObject:
    """A validated object and the place its manifest starts."""

    obj: KubeObject
    source: SourceLocation


@dataclass(frozen=True)
class LoadedRepository:
    """Every object of a repository (sorted in apply order, then namespace, name)."""

    root: Path
    env: str | None
    objects: list[LoadedObject]
    files: list[str]
    values: Mapping[str, Any]
    # Not errors: the repository loads as it is (e.g. a namespace Capstan creates).
    warnings: tuple[ManifestError, ...] = ()
    # What was not read as a manifest, and why (`capstan validate -v`).
    skipped: tuple[SkippedPath, ...] = ()


@dataclass(frozen=True)
class _PodSecurityProblem:
    """A field some Pod Security level forbids, located before the node tree is dropped."""

    location: SourceLocation
    field_path: str
    violation: Violation


@dataclass(frozen=True)
class _Parsed:
    loaded: LoadedObject
    name_at: SourceLocation
    namespace_at: SourceLocation
    cluster_ip_at: SourceLocation | None = None
    pod_security: tuple[_PodSecurityProblem, ...] = ()
    notices: tuple[ManifestError, ...] = ()


def load_repository(
    root: Path,
    *,
    env: str | None = None,
    subdir: str | None = None,
    render_limits: RenderLimits = RenderLimits(),  # noqa: B008 - frozen
) -> LoadedRepository:
    """Load, render and validate every manifest under ``root`` (or ``root/subdir``).

    ``env`` picks ``environments/<env>.yaml`` to overlay on ``values.yaml``.
    ``subdir`` limits which manifests are loaded (values and template includes
    still come from the whole repository); the part must be self-contained,
    namespaces included. Raises ManifestErrors listing every problem found;
    returns objects only when there is none. Reads nothing outside ``root``
    and executes nothing. Templates are rendered in a child process within
    ``render_limits``; YAML is read within the limits ``yamlpos`` names, for each
    object and for the commit.
    """
    root = Path(root)
    root_real, start = _resolve_start(root, subdir=subdir)
    errors: list[ManifestError] = []
    budget = LoadBudget()
    values: dict[str, Any] = {}
    values_loaded = False
    try:
        values = load_values(root_real, env=env, budget=budget)
        values_loaded = True
    except ManifestErrors as exc:
        # Templates are not rendered without their values (every one would
        # fail for the same reason); plain manifests are still checked.
        errors.extend(exc.errors)

    kustomization = find_kustomization(start)
    chart = layout_problem(start, relative_name(start, root_real))
    files: list[ManifestFile] = []
    built: list[Path] = []
    skipped: list[SkippedPath] = []
    loaded: list[_Parsed] = []
    if kustomization is not None:
        loaded = _load_kustomization(root_real, start, errors, budget=budget)
        file_names = [relative_name(kustomization, root_real)]
    elif chart is not None:
        errors.append(ManifestError(SourceLocation(relative_name(start, root_real)), chart))
        file_names = []
    else:
        found = discover(
            root_real, start, refuse_dir=layout_problem, build_dir=is_kustomize_directory
        )
        files, skipped = found.manifests, found.skipped
        errors.extend(found.errors)
        built = [directory for _name, directory in found.built]
        kustomizations = [find_kustomization(directory) for directory in built]
        file_names = sorted(
            [manifest.name for manifest in files]
            + [relative_name(k, root_real) for k in kustomizations if k is not None]
        )
    rendered: dict[str, str] = {}
    if values_loaded:
        templates = [manifest.name for manifest in files if manifest.template]
        rendered, problems = render_templates(
            root_real, templates, values=values, env=env, limits=render_limits
        )
        errors.extend(problems)
    for manifest in files:
        if budget.exhausted:
            break  # over the commit's limits: the error is reported, more cannot help
        text = _read(manifest, root_real=root_real, rendered=rendered, errors=errors)
        if text is None:
            continue
        documents, problems = load_documents(
            text, file=manifest.name, rendered=manifest.template, budget=budget
        )
        file_errors = list(problems)
        # Node trees are several times the size of the objects: each file's
        # are dropped once its objects are validated, keeping only the two
        # positions the cross-object checks may report.
        for document in documents:
            result = _to_object(document)
            if isinstance(result, LoadedObject):
                loaded.append(
                    _Parsed(
                        result,
                        name_at=document.location(("metadata", "name")),
                        namespace_at=document.location(("metadata", "namespace")),
                        cluster_ip_at=document.location(("spec", "clusterIP"))
                        if isinstance(result.obj, Service)
                        else None,
                        pod_security=_pod_security_problems(document, result.obj),
                        notices=_field_notices(document, result.obj),
                    )
                )
            else:
                file_errors.extend(result)
        errors.extend(file_errors if manifest.template else _placeholders(file_errors, text))
    # Flux's rule for a folder without kustomization: a Kustomize directory below it is built
    # by kustomize, as a whole, beside the plain manifests.
    if len(built) > MAX_KUSTOMIZE_BUILDS:
        errors.append(
            ManifestError(
                SourceLocation(relative_name(start, root_real)),
                f"{len(built)} Kustomize directories below this folder: Capstan builds at most "
                f"{MAX_KUSTOMIZE_BUILDS} for one commit; point --path at one of them, or list "
                "the others' kustomization files in .capstanignore",
            )
        )
        built = []
    for directory in built:
        if budget.exhausted:
            break
        loaded.extend(_load_kustomization(root_real, directory, errors, budget=budget))

    errors.extend(_duplicates(loaded))
    errors.extend(_duplicate_cluster_ips(loaded))
    errors.extend(_pod_security(loaded))
    if errors:
        raise ManifestErrors(errors, root=root)
    namespaces, warnings = _implicit_namespaces(loaded)
    warnings.extend(_bases_built_alone(root_real, built))
    warnings.extend(notice for parsed in loaded for notice in parsed.notices)
    return LoadedRepository(
        root=root,
        env=env,
        objects=sorted([*(parsed.loaded for parsed in loaded), *namespaces], key=_apply_order),
        files=file_names,
        values=values,
        warnings=tuple(warnings),
        skipped=tuple(skipped),
    )


def _load_kustomization(
    root_real: Path, directory: Path, errors: list[ManifestError], *, budget: LoadBudget
) -> list[_Parsed]:
    """The objects kustomize builds from ``directory``, each placed in the file it came from
    (at the field's line there when the field is written in that file)."""
    try:
        output = render_kustomization(root_real, directory)
    except ManifestErrors as exc:
        errors.extend(exc.errors)
        return []
    built_from = relative_name(directory, root_real)
    documents, problems = load_documents(
        output.text, file=f"{built_from} (kustomize)", rendered=True, budget=budget
    )
    errors.extend(problems)
    sources = _OriginFiles(root_real)
    loaded: list[_Parsed] = []
    for document in documents:
        origin = _origin_of(document.data, output.origins)
        located = sources.document(origin, document.data) if origin else None
        result = _to_object(document, located=located)
        if isinstance(result, LoadedObject):
            at = located or document
            loaded.append(
                _Parsed(
                    result,
                    name_at=at.location(("metadata", "name")),
                    namespace_at=at.location(("metadata", "namespace")),
                    cluster_ip_at=at.location(("spec", "clusterIP"))
                    if isinstance(result.obj, Service)
                    else None,
                    pod_security=_pod_security_problems(at, result.obj),
                    notices=_field_notices(at, result.obj),
                )
            )
        else:
            errors.extend(result)
    return loaded


_PLACEHOLDER = re.compile(r"\{\{.*?\}\}")


def _placeholders(file_errors: list[ManifestError], text: str) -> list[ManifestError]:
    """``file_errors`` of a plain manifest, each one on a line with a ``{{ ... }}``
    placeholder said to be the template it is: the YAML or value error there only follows
    from a file committed unrendered."""
    lines = text.splitlines()
    out: list[ManifestError] = []
    for error in file_errors:
        line = error.location.line
        found = _PLACEHOLDER.search(lines[line - 1]) if line and line <= len(lines) else None
        if found is None:
            out.append(error)
            continue
        out.append(
            ManifestError(
                error.location,
                f"{found.group()!r} looks like a template placeholder (Helm, Go or Jinja): this "
                "file must be rendered before it is committed (helm template, or the tool it "
                "was written for), as kubectl needs it too; Capstan renders Jinja2 itself "
                "only in *.j2 files",
                error.field_path,
            )
        )
    return out


def _origin_of(data: object, origins: Mapping[tuple[str, str, str], str]) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
        return None
    metadata = data["metadata"]
    key = (
        str(data.get("kind", "")),
        str(metadata.get("namespace", "") or ""),
        str(metadata.get("name", "")),
    )
    return origins.get(key)


class _OriginFiles:
    """The source files kustomize read, parsed once each, to place errors at their lines."""

    def __init__(self, root_real: Path) -> None:
        self._root = root_real
        self._documents: dict[str, list[YamlDocument]] = {}

    def document(self, name: str, built: object) -> YamlDocument | None:
        """The document of file ``name`` that defines the same kind as ``built`` (by name, or
        by kustomize's rename: the only one of that kind in the file)."""
        if name not in self._documents:
            try:
                text = read_inside(self._root, resolve_inside(self._root, name))
            except RepositoryPathError:
                text = ""
            self._documents[name] = load_documents(text, file=name)[0]
        if not isinstance(built, dict):
            return None
        kind = built.get("kind")
        same_kind = [
            d
            for d in self._documents[name]
            if isinstance(d.data, dict) and d.data.get("kind") == kind
        ]
        built_name = (built.get("metadata") or {}).get("name")
        for candidate in same_kind:
            if (candidate.data.get("metadata") or {}).get("name") == built_name:
                return candidate
        return same_kind[0] if len(same_kind) == 1 else None


def _resolve_start(root: Path, *, subdir: str | None) -> tuple[Path, Path]:
    """The repository's real root, and the real directory to look for manifests in."""
    try:
        root_real = root.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        problem = ManifestError(SourceLocation("."), f"cannot open repository: {exc}")
        raise ManifestErrors([problem], root=root) from None
    if not root_real.is_dir():
        raise ManifestErrors([ManifestError(SourceLocation("."), "not a directory")], root=root)
    if subdir is None:
        return root_real, root_real
    try:
        start = resolve_inside(root_real, subdir)
    except RepositoryPathError as exc:
        raise ManifestErrors([ManifestError(SourceLocation(subdir), str(exc))], root=root) from None
    if not start.is_dir():
        raise ManifestErrors([ManifestError(SourceLocation(subdir), "not a directory")], root=root)
    return root_real, start


def _read(
    manifest: ManifestFile,
    *,
    root_real: Path,
    rendered: Mapping[str, str],
    errors: list[ManifestError],
) -> str | None:
    if manifest.template:
        # A template that did not render has its error reported already.
        return rendered.get(manifest.name)
    try:
        return read_inside(root_real, manifest.real_path)
    except RepositoryPathError as exc:
        errors.append(ManifestError(SourceLocation(manifest.name), str(exc)))
        return None


def _to_object(
    document: YamlDocument, *, located: YamlDocument | None = None
) -> LoadedObject | list[ManifestError]:
    """The object of ``document``; errors are placed in ``located`` (the source a build step
    read it from) where it has the field, else in ``document``."""
    data = document.data
    if not isinstance(data, dict):
        return [
            ManifestError(
                document.location(),
                f"a manifest is a mapping with apiVersion and kind, not {_describe_type(data)}",
            )
        ]
    header_errors = [
        ManifestError(document.location((field,) if field in data else ()), message, field)
        for field in ("apiVersion", "kind")
        if (message := _header_problem(data.get(field))) is not None
    ]
    if header_errors:
        return header_errors
    api_version: str = data["apiVersion"]
    kind: str = data["kind"]
    try:
        model = model_for(api_version, kind)
    except UnsupportedKindError as exc:
        supported = ", ".join(f"{api} {name}" for api, name in SUPPORTED_KINDS)
        return [
            ManifestError(
                document.location(("kind",)),
                f"unsupported kind {kind!r} (apiVersion {api_version!r}); "
                + (exc.replacement or f"supported: {supported}"),
                "kind",
            )
        ]
    # Status is what the cluster reports, never desired state: exported objects carry
    # `status: {}` and Kubernetes ignores it on create, so the loader does too.
    data = _without_nulls({key: value for key, value in data.items() if key != "status"})
    data = _with_string_keys(_without_server_metadata(data, namespaced=model.NAMESPACED))
    if model.NAMESPACED:
        data = _with_default_namespace(data)
    data = _with_generated_name(data)
    try:
        obj = parse_object(data)
    except pydantic.ValidationError as exc:
        return [
            _validation_error(
                document, entry, model=model, secret=kind in _SECRET_KINDS, located=located
            )
            for entry in exc.errors(include_url=False)
        ]
    return LoadedObject(obj=obj, source=(located or document).location())


def _header_problem(value: object) -> str | None:
    if value is None:
        return "field required"
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    return None


def _without_nulls(value: Any) -> Any:
    """``value`` with every mapping entry whose value is null left out.

    As in Kubernetes, a field set to null is a field not set: Helm output carries
    ``annotations: null`` and ``resources: null``. List items are kept (a null item is an error).
    """
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _with_string_keys(value: Any) -> Any:
    """``value`` with every mapping key that YAML read as a number, boolean or null turned
    into text, as kubectl's YAML-to-JSON step (sigs.k8s.io/yaml) turns it."""
    if isinstance(value, dict):
        return {_key_text(key): _with_string_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_string_keys(item) for item in value]
    return value


def _key_text(key: Any) -> Any:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return str(key)
    return key


def _without_server_metadata(data: dict[str, Any], *, namespaced: bool) -> dict[str, Any]:
    """``data`` without ``metadata.selfLink`` (deprecated and read-only; the API server
    writes none since Kubernetes v1.24) and, for a cluster-scoped kind, without
    ``metadata.namespace``, which Kubernetes' ``rest.BeforeCreate`` clears there too."""
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        return data
    dropped = {"selfLink"} if namespaced else {"selfLink", "namespace"}
    if not dropped & metadata.keys():
        return data
    return {**data, "metadata": {k: v for k, v in metadata.items() if k not in dropped}}


# Kubernetes' alphabet for generateName suffixes (no vowels, no look-alikes).
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _with_generated_name(data: dict[str, Any]) -> dict[str, Any]:
    """``metadata.generateName`` without a name (Argo CD hook Jobs) gets the name Kubernetes
    would generate, ``<generateName><5 chars>``, with the chars taken from a hash of the
    document: the same manifest keeps its name from commit to commit, so it is applied once,
    and an edited one is a new object (a hook Job runs again when its manifest changes)."""
    metadata = data.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("name"):
        return data
    prefix = metadata.get("generateName")
    if not isinstance(prefix, str) or not prefix:
        return data
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).digest()
    suffix = "".join(_NAME_SUFFIX_ALPHABET[b % len(_NAME_SUFFIX_ALPHABET)] for b in digest[:5])
    return {**data, "metadata": {**metadata, "name": prefix[:58] + suffix}}


def _with_default_namespace(data: dict[str, Any]) -> dict[str, Any]:
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and metadata.get("namespace") in (None, ""):
        return {**data, "metadata": {**metadata, "namespace": DEFAULT_NAMESPACE}}
    return data


def _validation_error(
    document: YamlDocument,
    entry: Any,
    *,
    model: type[KubeObject],
    secret: bool,
    located: YamlDocument | None = None,
) -> ManifestError:
    loc: tuple[str | int, ...] = tuple(
        part if isinstance(part, int) else str(part) for part in entry.get("loc", ())
    )
    location, found = document.locate(loc)
    if located is not None:
        # The source file wins where it writes at least as much of the path as the build.
        source, source_found = located.locate(loc)
        if source_found >= found:
            location = source
    message = _message(entry, loc=loc, model=model, secret=secret)
    return ManifestError(location, message, format_field_path(loc))


def _message(
    entry: Mapping[str, Any],
    *,
    loc: tuple[str | int, ...],
    model: type[KubeObject],
    secret: bool,
) -> str:
    kind = str(entry.get("type", ""))
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return unknown_field_message(model, loc)
    message = plain_message(entry)
    value = entry.get("input")
    # Pydantic's own type errors do not say what they got; the schema's rule
    # errors already quote the value (and Secret values are never echoed).
    echo = kind.endswith(("_type", "_parsing")) or kind in ("literal_error", "enum")
    if echo and not secret and isinstance(value, str | int | float | bool):
        shown = repr(value)
        if len(shown) <= _MAX_INPUT_ECHO:
            message += f" (got {shown})"
    return message


def _duplicates(parsed: Sequence[_Parsed]) -> list[ManifestError]:
    first_seen: dict[ObjectKey, _Parsed] = {}
    errors: list[ManifestError] = []
    for item in parsed:
        first = first_seen.setdefault(item.loaded.obj.key, item)
        if first is not item:
            errors.append(
                ManifestError(
                    item.name_at,
                    f"duplicate {_describe_key(item.loaded.obj)}: also defined at {first.name_at}",
                    "metadata.name",
                )
            )
    return errors


def _duplicate_cluster_ips(parsed: Sequence[_Parsed]) -> list[ManifestError]:
    # The API server refuses an address another Service holds; two in one commit would
    # pass validation and then fail half-way through the sync.
    first_seen: dict[str, _Parsed] = {}
    errors: list[ManifestError] = []
    for item in parsed:
        obj = item.loaded.obj
        if not isinstance(obj, Service) or item.cluster_ip_at is None:
            continue
        # "None" is no address: any number of headless Services may say it.
        if obj.spec.cluster_ip in (None, "", "None"):
            continue
        first = first_seen.setdefault(obj.spec.cluster_ip, item)
        if first is not item:
            errors.append(
                ManifestError(
                    item.cluster_ip_at,
                    f"clusterIP {obj.spec.cluster_ip} is also the clusterIP of "
                    f"{_describe_key(first.loaded.obj)} at {first.cluster_ip_at}; two Services "
                    "cannot share an address",
                    "spec.clusterIP",
                )
            )
    return errors


def _bases_built_alone(root_real: Path, built: Sequence[Path]) -> list[ManifestError]:
    """A warning for each Kustomize directory built on its own that another one built beside
    it also builds on (a root holding ``base/`` and ``overlays/prod/``): Flux deploys both, and
    so does Capstan, but a user pointing at the root usually meant the overlay."""
    real = {Path(os.path.realpath(directory)): directory for directory in built}
    warnings: list[ManifestError] = []
    for directory in built:
        for base in sorted(local_bases(directory) & real.keys()):
            kustomization = find_kustomization(real[base])
            overlay = relative_name(directory, root_real)
            warnings.append(
                ManifestError(
                    SourceLocation(
                        relative_name(kustomization or real[base], root_real), line=1, column=1
                    ),
                    f"{relative_name(real[base], root_real)} is built as a folder of its own "
                    f"and also as a base of {overlay}, so both are deployed (as Flux deploys "
                    f"them); to deploy only the overlay, point --path at {overlay}, or name "
                    f"this kustomization file in .capstanignore",
                )
            )
    return warnings


#: Why ``spec.loadBalancerIP`` changes nothing on Capstan (a warning, not an error: Kubernetes
#: itself says an implementation that cannot honour it ignores it).
LOAD_BALANCER_IP_IGNORED = (
    "ignored: Capstan's ServiceLB serves a LoadBalancer Service on every node's own address "
    "(listed in status.loadBalancer.ingress) and cannot give it another one; Kubernetes "
    "deprecated the field in v1.24 and lets a load balancer that does not support it ignore it"
)


def _field_notices(document: YamlDocument, obj: KubeObject) -> tuple[ManifestError, ...]:
    """Warnings for fields an object keeps but that change nothing here, at their line."""
    if isinstance(obj, Service) and obj.spec.load_balancer_ip:
        return (
            ManifestError(
                document.location(("spec", "loadBalancerIP")),
                LOAD_BALANCER_IP_IGNORED,
                "spec.loadBalancerIP",
            ),
        )
    return ()


def _implicit_namespaces(
    parsed: Sequence[_Parsed],
) -> tuple[list[LoadedObject], list[ManifestError]]:
    """A Namespace for each namespace used but not defined, and a warning for each.

    Each is placed where the first object using it names it, so ``capstan status`` and the
    warning point at a line of the repository.
    """
    objects = [item.loaded.obj for item in parsed]
    defined = {*KUBERNETES_NAMESPACES} | {obj.name for obj in objects if obj.kind == "Namespace"}
    created: list[LoadedObject] = []
    warnings: list[ManifestError] = []
    for item in parsed:
        namespace = item.loaded.obj.namespace
        if not namespace or namespace in defined:
            continue
        defined.add(namespace)
        created.append(
            LoadedObject(
                obj=Namespace(metadata=ObjectMeta(name=namespace)), source=item.namespace_at
            )
        )
        warnings.append(
            ManifestError(
                item.namespace_at,
                f"namespace {namespace!r} is not defined in the repository; Capstan creates it "
                "(as Argo CD does with CreateNamespace=true) and deletes it when no manifest "
                f"uses it. To manage it yourself, add namespaces/{namespace}.yaml with: "
                f"apiVersion: v1, kind: Namespace, metadata: {{name: {namespace}}}",
                "metadata.namespace",
            )
        )
    return created, warnings


def _pod_security_problems(
    document: YamlDocument, obj: KubeObject
) -> tuple[_PodSecurityProblem, ...]:
    """What the strictest level would refuse in ``obj``; which of it applies is decided once
    every Namespace of the repository is known."""
    held = pod_spec_of(obj)
    if held is None:
        return ()
    path, spec = held
    return tuple(
        _PodSecurityProblem(
            location=document.location((*path, *violation.loc)),
            field_path=format_field_path((*path, *violation.loc)),
            violation=violation,
        )
        for violation in check_pod_spec(spec, level="restricted")
    )


def _pod_security(parsed: Sequence[_Parsed]) -> list[ManifestError]:
    namespaces = {
        item.loaded.obj.name: item.loaded for item in parsed if item.loaded.obj.kind == "Namespace"
    }
    errors: list[ManifestError] = []
    for item in parsed:
        if not item.pod_security:
            continue
        namespace = item.loaded.obj.namespace
        defined = namespaces.get(namespace)
        level = namespace_level(defined.obj.metadata.labels if defined else None)
        errors.extend(
            ManifestError(
                problem.location,
                f'{problem.violation.message(level)}; namespace "{namespace}" enforces {level}'
                + _admit_hint(namespace, defined, problem.violation),
                problem.field_path,
            )
            for problem in item.pod_security
            if level == "restricted"
            or (level == "baseline" and problem.violation.level == "baseline")
        )
    return errors


def _admit_hint(namespace: str, defined: LoadedObject | None, violation: Violation) -> str:
    """The one label that admits ``violation``, and where to write it."""
    needed = "privileged" if violation.level == "baseline" else "baseline"
    label = f"{ENFORCE_LABEL}: {needed}"
    if defined is not None:
        return f'; to admit it, give Namespace "{namespace}" ({defined.source}) the label {label}'
    return (
        f'; to admit it, add namespaces/{namespace}.yaml: a Namespace "{namespace}" '
        f"labelled {label}"
    )


def _describe_key(obj: KubeObject) -> str:
    name = f"{obj.namespace}/{obj.name}" if obj.namespace else obj.name
    return f"{obj.kind} {name}"


def _describe_type(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def _apply_order(item: LoadedObject) -> tuple[int, str, str, str]:
    kind = item.obj.kind
    rank = APPLY_ORDER.index(kind) if kind in APPLY_ORDER else len(APPLY_ORDER)
    return (rank, kind, item.obj.namespace, item.obj.name)
