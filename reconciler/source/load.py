"""Turning a repository directory into validated objects: render → parse → validate, all or nothing.

Called by the sync loop for every commit it considers (on a checkout that
`reconciler.source`'s fetch side prepared) and by `capstan validate`,
`capstan render` and `capstan plan`. The result is either every object of
the repository, each with the place it was written, or `ManifestErrors` with
every problem of the whole repository — never a partial set.

Checks on top of the per-object schema (`schemas.parse_object`):
duplicates (same kind/namespace/name), and namespaced objects in a namespace
the repository does not define (`default` always exists). Namespaced objects
written without a namespace are put in `default` before validation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from reconciler.source._field_hints import unknown_field_message
from reconciler.source._fs import (
    ManifestFile,
    RepositoryPathError,
    discover,
    read_inside,
    resolve_inside,
)
from reconciler.source._renderjail import render_templates
from reconciler.source.errors import (
    ManifestError,
    ManifestErrors,
    SourceLocation,
    format_field_path,
)
from reconciler.source.render import RenderLimits
from reconciler.source.values import load_values
from reconciler.source.yamlpos import LoadBudget, YamlDocument, load_documents
from schemas import (
    SUPPORTED_KINDS,
    KubeObject,
    ObjectKey,
    UnsupportedKindError,
    model_for,
    parse_object,
)

__all__ = ["DEFAULT_NAMESPACE", "LoadedObject", "LoadedRepository", "load_repository"]

DEFAULT_NAMESPACE = "default"

# The order objects are listed (and, by the sync loop, applied) in: what
# others refer to comes first, as Helm's install order does.
_APPLY_ORDER = (
    "Namespace",
    "Node",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "Service",
    "Deployment",
    "ReplicaSet",
    "Pod",
)
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


@dataclass(frozen=True)
class _Parsed:
    loaded: LoadedObject
    name_at: SourceLocation
    namespace_at: SourceLocation


def load_repository(
    root: Path,
    *,
    env: str | None = None,
    subdir: str | None = None,
    render_limits: RenderLimits = RenderLimits(),  # noqa: B008 - frozen
) -> LoadedRepository:
    """Load, render and validate every manifest under `root` (or `root/subdir`).

    `env` picks `environments/<env>.yaml` to overlay on `values.yaml`.
    `subdir` limits which manifests are loaded (values and template includes
    still come from the whole repository); the part must be self-contained,
    namespaces included. Raises ManifestErrors listing every problem found;
    returns objects only when there is none. Reads nothing outside `root`
    and executes nothing. Templates are rendered in a child process within
    `render_limits`; YAML is read within the limits `yamlpos` names, for each
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

    files, problems = discover(root_real, start)
    errors.extend(problems)
    rendered: dict[str, str] = {}
    if values_loaded:
        templates = [manifest.name for manifest in files if manifest.template]
        rendered, problems = render_templates(
            root_real, templates, values=values, env=env, limits=render_limits
        )
        errors.extend(problems)

    loaded: list[_Parsed] = []
    for manifest in files:
        if budget.exhausted:
            break  # over the commit's limits: the error is reported, more cannot help
        text = _read(manifest, root_real=root_real, rendered=rendered, errors=errors)
        if text is None:
            continue
        documents, problems = load_documents(
            text, file=manifest.name, rendered=manifest.template, budget=budget
        )
        errors.extend(problems)
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
                    )
                )
            else:
                errors.extend(result)

    errors.extend(_duplicates(loaded))
    errors.extend(_undefined_namespaces(loaded))
    if errors:
        raise ManifestErrors(errors, root=root)
    return LoadedRepository(
        root=root,
        env=env,
        objects=sorted((parsed.loaded for parsed in loaded), key=_apply_order),
        files=[manifest.name for manifest in files],
        values=values,
    )


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


def _to_object(document: YamlDocument) -> LoadedObject | list[ManifestError]:
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
    except UnsupportedKindError:
        supported = ", ".join(f"{api} {name}" for api, name in SUPPORTED_KINDS)
        return [
            ManifestError(
                document.location(("kind",)),
                f"unsupported kind {kind!r} (apiVersion {api_version!r}); supported: {supported}",
                "kind",
            )
        ]
    if model.NAMESPACED:
        data = _with_default_namespace(data)
    try:
        obj = parse_object(data)
    except pydantic.ValidationError as exc:
        return [
            _validation_error(document, entry, model=model, secret=kind in _SECRET_KINDS)
            for entry in exc.errors(include_url=False)
        ]
    return LoadedObject(obj=obj, source=document.location())


def _header_problem(value: object) -> str | None:
    if value is None:
        return "field required"
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    return None


def _with_default_namespace(data: dict[str, Any]) -> dict[str, Any]:
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and metadata.get("namespace") in (None, ""):
        return {**data, "metadata": {**metadata, "namespace": DEFAULT_NAMESPACE}}
    return data


def _validation_error(
    document: YamlDocument, entry: Any, *, model: type[KubeObject], secret: bool
) -> ManifestError:
    loc: tuple[str | int, ...] = tuple(
        part if isinstance(part, int) else str(part) for part in entry.get("loc", ())
    )
    location, _found = document.locate(loc)
    message = _message(entry, loc=loc, model=model, secret=secret)
    return ManifestError(location, message, format_field_path(loc))


def _message(
    entry: Mapping[str, Any], *, loc: tuple[str | int, ...], model: type[KubeObject],
    secret: bool,
) -> str:
    kind = str(entry.get("type", ""))
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return unknown_field_message(model, loc)
    message = str(entry.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        message = message[0].lower() + message[1:]
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
                    f"duplicate {_describe_key(item.loaded.obj)}: also defined at "
                    f"{first.name_at}",
                    "metadata.name",
                )
            )
    return errors


def _undefined_namespaces(parsed: Sequence[_Parsed]) -> list[ManifestError]:
    objects = [item.loaded.obj for item in parsed]
    defined = {DEFAULT_NAMESPACE} | {obj.name for obj in objects if obj.kind == "Namespace"}
    errors: list[ManifestError] = []
    for item in parsed:
        obj = item.loaded.obj
        namespace = obj.namespace
        if not namespace or namespace in defined:
            continue
        errors.append(
            ManifestError(
                item.namespace_at,
                f"namespace {namespace!r} is not defined in the repository "
                "(add a Namespace manifest; only 'default' exists without one)",
                "metadata.namespace",
            )
        )
    return errors


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
    rank = _APPLY_ORDER.index(kind) if kind in _APPLY_ORDER else len(_APPLY_ORDER)
    return (rank, kind, item.obj.namespace, item.obj.name)
