"""Server-side apply and field ownership: ``metadata.managedFields`` as Kubernetes keeps it.

Called by the REST handler for every write over HTTP. A PATCH with ``Content-Type:
application/apply-patch+yaml`` (``kubectl apply --server-side``, the clients' ``apply``) is
a server-side apply: :func:`server_side_apply` merges the applied configuration into the
live object, refuses (409, ``reason: Conflict``, one cause per field) to change a field
another manager owns unless ``force`` is set (then it takes the field over), removes the
fields this manager applied before and no longer applies (when no one else owns them), and
records the manager's fields as an ``Apply`` entry. Every other write (create, update,
merge/JSON/strategic patch) goes through :func:`track_update`: the fields it changed move to
its manager's ``Update`` entry. The handler then writes the result like any update, so
applying the same configuration twice writes nothing (same resourceVersion).

Fields are Kubernetes' ``FieldsV1`` paths: ``f:<name>`` for a field or map key,
``k:{"<mergeKey>":<value>}`` for an item of a list merged by key, ``v:<value>`` for an item
of a set of scalars; other lists are owned whole. Which lists merge, and by which key, is
the strategic merge patch's table (``_patch``), so both agree; kinds without one merge as
plain JSON. The server's own fields (``apiVersion``, ``kind``, name, namespace, uid,
resourceVersion, ..., ``managedFields``) and ``status`` are never owned.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from reconciler.api import Cause
from reconciler.api.server._patch import field_types, list_strategies
from reconciler.api.server._protobuf import message_for
from reconciler.api.server._protobuf_table import MESSAGES
from reconciler.api.server._status import HttpError

__all__ = [
    "APPLY_PATCH",
    "FieldPath",
    "default_manager",
    "field_paths",
    "fields_v1",
    "parse_apply",
    "path_string",
    "paths_from_fields_v1",
    "server_side_apply",
    "track_update",
]

APPLY_PATCH = "application/apply-patch+yaml"
#: One owned field: its ``FieldsV1`` path elements from the object's root.
FieldPath = tuple[str, ...]

_MAX_MANAGER = 128
# Structs Kubernetes marks ``+structType=atomic``: owned and replaced as a whole.
_ATOMIC_MESSAGES = frozenset({"k8s.io.apimachinery.pkg.apis.meta.v1.LabelSelector"})
# What the server sets or keeps: nobody owns it (Kubernetes' reset and stripped fields).
_UNOWNED: frozenset[FieldPath] = frozenset(
    {
        ("f:apiVersion",),
        ("f:kind",),
        ("f:status",),
        *(
            ("f:metadata", f"f:{name}")
            for name in (
                "name",
                "namespace",
                "generateName",
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
                "managedFields",
            )
        ),
    }
)


class _Item:
    """The value of a list item's own path: the item is owned, not compared by value."""


_ITEM = _Item()


# -- field paths ---------------------------------------------------------------------------


def _key_element(merge_key: str, value: Any) -> str:
    return "k:" + json.dumps({merge_key: value}, separators=(",", ":"))


def _list_kind(value: list[Any], strategy: str, merge_key: str) -> str:
    """``"map"`` (items merged by ``merge_key``), ``"set"`` (scalars merged as a set) or
    ``"atomic"`` (the list is one value)."""
    if "merge" not in strategy.split(","):
        return "atomic"
    if merge_key and all(isinstance(item, dict) and merge_key in item for item in value):
        return "map"
    if not merge_key and all(not isinstance(item, dict | list) for item in value):
        return "set"
    return "atomic"


def _message(type_: str) -> str | None:
    return type_ if type_ in MESSAGES else None


def _set_fields(
    value: Mapping[str, Any], message: str | None
) -> Iterator[tuple[str, Any, str, str, str]]:
    """Each field ``value`` (a struct of protobuf ``message``, None: not known) sets, with
    its type, its list strategy and its merge key."""
    types = field_types(message) if message else {}
    strategies = list_strategies(message) if message else {}
    for key, child in value.items():
        if child is None:
            continue
        type_, _repeated = types.get(key, ("", False))
        strategy, merge_key = strategies.get(key, ("", ""))
        yield key, child, type_, strategy, merge_key


def _struct_members(
    value: Mapping[str, Any], message: str | None, path: FieldPath, out: dict[FieldPath, Any]
) -> None:
    for key, child, type_, strategy, merge_key in _set_fields(value, message):
        _members(child, type_, strategy, merge_key, (*path, f"f:{key}"), out)


def _members(
    value: Any,
    type_: str,
    strategy: str,
    merge_key: str,
    path: FieldPath,
    out: dict[FieldPath, Any],
) -> None:
    if isinstance(value, list):
        kind = _list_kind(value, strategy, merge_key)
        if kind == "map":
            for item in value:
                item_path = (*path, _key_element(merge_key, item[merge_key]))
                out[item_path] = _ITEM
                _struct_members(item, _message(type_), item_path, out)
        elif kind == "set":
            for item in value:
                out[(*path, "v:" + json.dumps(item, separators=(",", ":")))] = item
        else:
            out[path] = value
        return
    if not isinstance(value, dict) or not value:
        out[path] = value
        return
    if type_.startswith("map:"):
        inner = type_[4:]
        for key, child in value.items():
            if child is not None:
                _members(child, inner, "", "", (*path, f"f:{key}"), out)
        return
    message = _message(type_)
    if message in _ATOMIC_MESSAGES:
        out[path] = value
        return
    _struct_members(value, message, path, out)


def field_paths(obj: Mapping[str, Any]) -> dict[FieldPath, Any]:
    """Every field ``obj`` sets that someone can own, with its value (a list item's own
    path maps to a marker: owning it means owning the item, whatever its fields hold)."""
    message = message_for(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    out: dict[FieldPath, Any] = {}
    _struct_members(obj, message, (), out)
    return {path: value for path, value in out.items() if not _unowned(path)}


def _unowned(path: FieldPath) -> bool:
    return path[:1] in _UNOWNED or path[:2] in _UNOWNED


def _changed(old: Mapping[FieldPath, Any], new: Mapping[FieldPath, Any]) -> set[FieldPath]:
    """The paths added, removed or given another value between ``old`` and ``new``."""
    return {
        path
        for path in old.keys() | new.keys()
        if path not in old or path not in new or (old[path] is not _ITEM and old[path] != new[path])
    }


def _covers(path: FieldPath, paths: Iterable[FieldPath]) -> bool:
    """Whether ``paths`` holds ``path`` or something under it. (Owning a list item, which
    everyone who sets a field of it does, says nothing about its other fields.)"""
    size = len(path)
    return any(p[:size] == path for p in paths)


# -- FieldsV1 ------------------------------------------------------------------------------


def fields_v1(paths: Iterable[FieldPath]) -> dict[str, Any]:
    """``paths`` as Kubernetes' ``FieldsV1`` tree: a path that is owned and has owned
    paths under it carries ``".": {}``."""
    root: dict[str, Any] = {}
    owned: list[FieldPath] = sorted(paths)
    for path in owned:
        node = root
        for element in path:
            node = node.setdefault(element, {})
    for path in owned:
        node = root
        for element in path:
            node = node[element]
        if node and "." not in node:
            node["."] = {}
    return root


def paths_from_fields_v1(tree: Any, prefix: FieldPath = ()) -> set[FieldPath]:
    """The owned paths of a ``FieldsV1`` tree (anything that is not one reads as empty)."""
    paths: set[FieldPath] = set()
    if not isinstance(tree, dict):
        return paths
    for element, child in tree.items():
        if element == ".":
            if prefix:
                paths.add(prefix)
            continue
        path = (*prefix, str(element))
        if isinstance(child, dict) and child:
            paths |= paths_from_fields_v1(child, path)
        else:
            paths.add(path)
    return paths


def path_string(path: FieldPath) -> str:
    """A path as Kubernetes prints it in a conflict: ``.spec.containers[name="web"].image``."""
    out = []
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            out.append(f".{rest}")
        elif kind == "k":
            try:
                keys = json.loads(rest)
            except ValueError:
                keys = {}
            pairs = ",".join(
                f"{k}={json.dumps(v)}" for k, v in (keys.items() if isinstance(keys, dict) else ())
            )
            out.append(f"[{pairs}]")
        elif kind == "v":
            out.append(f"[={rest}]")
        else:
            out.append(f"[{rest}]")
    return "".join(out)


# -- managedFields entries -----------------------------------------------------------------


@dataclass
class _Manager:
    """One ``managedFields`` entry being worked on."""

    entry: dict[str, Any]
    paths: set[FieldPath]

    @property
    def key(self) -> tuple[str, str, str]:
        return (
            str(self.entry.get("manager", "")),
            str(self.entry.get("operation", "")),
            str(self.entry.get("subresource", "")),
        )


def _managers(obj: Mapping[str, Any] | None) -> list[_Manager]:
    metadata = (obj or {}).get("metadata")
    entries = metadata.get("managedFields") if isinstance(metadata, dict) else None
    if not isinstance(entries, list):
        return []
    return [
        _Manager(entry=dict(entry), paths=paths_from_fields_v1(entry.get("fieldsV1")))
        for entry in entries
        if isinstance(entry, dict)
    ]


def _entries(
    managers: Sequence[_Manager],
    before: Mapping[tuple[str, str, str], set[FieldPath]],
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    """The ``managedFields`` list: entries that own something, with the time moved on only
    for those whose fields changed (so a write that changes nothing stays one)."""
    out = []
    for manager in managers:
        if not manager.paths:
            continue
        entry = dict(manager.entry)
        if before.get(manager.key) != manager.paths:
            entry["fieldsType"] = "FieldsV1"
            entry["fieldsV1"] = fields_v1(manager.paths)
            entry["time"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(entry)
    return out


def _entry_for(
    managers: list[_Manager],
    *,
    manager: str,
    operation: str,
    api_version: str,
    subresource: str | None,
) -> _Manager:
    key = (manager, operation, subresource or "")
    for existing in managers:
        if existing.key == key:
            existing.entry["apiVersion"] = api_version
            return existing
    entry: dict[str, Any] = {"manager": manager, "operation": operation, "apiVersion": api_version}
    if subresource:
        entry["subresource"] = subresource
    created = _Manager(entry=entry, paths=set())
    managers.append(created)
    return created


def default_manager(query_value: str | None, user_agent: str | None) -> str:
    """The field manager of a write: the ``fieldManager`` query parameter, or (as in
    Kubernetes) the client's User-Agent up to its first ``/``. A 422 for a name that is
    too long or not printable."""
    if query_value is not None:
        name = query_value
    else:
        name = (user_agent or "").split("/", 1)[0].strip() or "unknown"
        name = name[:_MAX_MANAGER]
    if not name or len(name) > _MAX_MANAGER or not name.isprintable():
        raise HttpError(
            422,
            f"fieldManager {name[:_MAX_MANAGER]!r}: must be 1 to {_MAX_MANAGER} printable "
            "characters",
            reason="Invalid",
        )
    return name


def track_update(
    current: Mapping[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    now: datetime,
    subresource: str | None = None,
) -> None:
    """Set ``new``'s ``metadata.managedFields`` for a write that is not an apply: the fields
    changed from ``current`` (None: a create) are now ``manager``'s (an ``Update`` entry)
    and no longer anyone else's. The entries come from ``new`` when the client sent them,
    else from ``current``."""
    metadata = new.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        return  # the handler's validation refuses it with a clear 422
    sent = metadata.get("managedFields")
    managers = _managers(new if isinstance(sent, list) and sent else current)
    before = {m.key: set(m.paths) for m in managers}
    old_paths = field_paths(current) if current is not None else {}
    new_paths = field_paths(new)
    changed = _changed(old_paths, new_paths)
    if changed:
        mine = _entry_for(
            managers,
            manager=manager,
            operation="Update",
            api_version=str(new.get("apiVersion", "")),
            subresource=subresource,
        )
        removed = {p for p in changed if p not in new_paths}
        for other in managers:
            other.paths -= changed
        mine.paths |= changed - removed
    entries = _entries(managers, before, now=now)
    if entries:
        metadata["managedFields"] = entries
    else:
        metadata.pop("managedFields", None)


# -- server-side apply ---------------------------------------------------------------------


def parse_apply(body: bytes) -> dict[str, Any]:
    """The applied configuration of an apply PATCH: one object in JSON or YAML (400 if not),
    naming its apiVersion and kind (422 if not)."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        try:
            # WHY CSafeLoader/SafeLoader and one document: the body is bounded by the server's
            # limit, and aliases only share nodes (no copies are built).
            document = yaml.safe_load(body.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"the apply patch is not valid YAML or JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise HttpError(400, "the apply patch must be one object (a mapping)")
    missing = [field for field in ("apiVersion", "kind") if not document.get(field)]
    if missing:
        raise HttpError(
            422,
            f"the apply patch is invalid: {', '.join(missing)} must be set",
            reason="Invalid",
            causes=tuple(Cause(field, "Required value") for field in missing),
        )
    return document


def _merge_struct(
    live: Mapping[str, Any], config: Mapping[str, Any], message: str | None
) -> dict[str, Any]:
    result = dict(live)
    for key, value, type_, strategy, merge_key in _set_fields(config, message):
        result[key] = _merge(live.get(key), value, type_, strategy, merge_key)
    return result


def _merge(live: Any, value: Any, type_: str, strategy: str, merge_key: str) -> Any:
    if isinstance(value, list):
        kind = _list_kind(value, strategy, merge_key)
        if (
            not isinstance(live, list)
            or kind == "atomic"
            or _list_kind(live, strategy, merge_key) != kind
        ):
            return copy.deepcopy(value)
        if kind == "set":
            return live + [item for item in value if item not in live]
        result = list(live)
        for item in value:
            at = next(
                (i for i, old in enumerate(result) if old.get(merge_key) == item[merge_key]), None
            )
            if at is None:
                result.append(copy.deepcopy(item))
            else:
                result[at] = _merge_struct(result[at], item, _message(type_))
        return result
    if not isinstance(value, dict) or not isinstance(live, dict):
        return copy.deepcopy(value)
    if type_.startswith("map:"):
        inner = type_[4:]
        merged = dict(live)
        for key, child in value.items():
            if child is not None:
                merged[key] = _merge(live.get(key), child, inner, "", "")
        return merged
    message = _message(type_)
    if message in _ATOMIC_MESSAGES:
        return copy.deepcopy(value)
    return _merge_struct(live, value, message)


def _remove(obj: dict[str, Any], path: FieldPath) -> None:
    """Remove the field or list item at ``path`` from ``obj`` (nothing if it is not there)."""
    node: Any = obj
    for depth, element in enumerate(path):
        last = depth == len(path) - 1
        kind, _, rest = element.partition(":")
        if kind == "f" and isinstance(node, dict):
            if last:
                node.pop(rest, None)
                return
            node = node.get(rest)
            continue
        if kind in ("k", "v") and isinstance(node, list):
            try:
                wanted = json.loads(rest)
            except ValueError:
                return
            at = next(
                (
                    i
                    for i, item in enumerate(node)
                    if (
                        kind == "k"
                        and isinstance(wanted, dict)
                        and isinstance(item, dict)
                        and all(item.get(k) == v for k, v in wanted.items())
                    )
                    or (kind == "v" and item == wanted)
                ),
                None,
            )
            if at is None:
                return
            if last:
                del node[at]
                return
            node = node[at]
            continue
        return


def server_side_apply(
    current: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    *,
    manager: str,
    force: bool,
    now: datetime,
    normalize: Callable[[dict[str, Any]], Mapping[str, Any]],
) -> dict[str, Any]:
    """The object after ``manager`` applies ``config`` to ``current`` (None: it does not
    exist yet), ``metadata.managedFields`` included. ``normalize`` turns a document into
    its stored form (defaults filled in, values in canonical form), so only real changes
    count as conflicts. Raises a 409 ``Conflict`` naming every field another manager owns
    with another value, unless ``force``, which takes them over."""
    config = {k: v for k, v in config.items() if k != "status"}
    applied = set(field_paths(config))
    api_version = str(config.get("apiVersion", ""))
    live = {k: copy.deepcopy(v) for k, v in (current or {}).items()}
    managers = _managers(current)
    before = {m.key: set(m.paths) for m in managers}
    message = message_for(api_version, str(config.get("kind", "")))
    merged = _merge_struct(live, config, message) if current is not None else copy.deepcopy(config)
    merged.pop("status", None)
    if current is not None and "status" in current:
        merged["status"] = copy.deepcopy(current["status"])
    mine = _entry_for(
        managers, manager=manager, operation="Apply", api_version=api_version, subresource=None
    )
    others = [m for m in managers if m is not mine and m.key[0] != manager]
    # Fields this manager applied before and leaves out now go, unless someone else owns
    # them (or something under them), or the new configuration sets something under them.
    for path in sorted(mine.paths - applied, key=len):  # a list item before its fields
        if any(_covers(path, m.paths) for m in others) or _covers(path, applied):
            continue
        _remove(merged, path)
    if current is not None:
        changed = _changed(
            field_paths(normalize(copy.deepcopy(live))),
            field_paths(normalize(copy.deepcopy(merged))),
        )
        conflicts = [
            (other, path) for other in others for path in sorted(other.paths & applied & changed)
        ]
        if conflicts and not force:
            raise _conflict_error(conflicts)
        for other, path in conflicts:
            other.paths.discard(path)
    mine.paths = applied
    metadata = merged.setdefault("metadata", {})
    if isinstance(metadata, dict):
        entries = _entries(managers, before, now=now)
        if entries:
            metadata["managedFields"] = entries
        else:
            metadata.pop("managedFields", None)
    return merged


def _conflict_error(conflicts: Sequence[tuple[_Manager, FieldPath]]) -> HttpError:
    """Kubernetes' answer to a conflicting apply: the count, then each manager's fields."""
    causes = [
        Cause(
            path_string(path),
            f'conflict with "{other.key[0]}"'
            + (f" using {other.entry['apiVersion']}" if other.entry.get("apiVersion") else ""),
            reason="FieldManagerConflict",
        )
        for other, path in conflicts
    ]
    if len(causes) == 1:
        summary = f"{causes[0].message}: {causes[0].field}"
    else:
        by_manager: dict[str, list[str]] = {}
        for cause in causes:
            by_manager.setdefault(
                cause.message.replace("conflict with", "conflicts with"), []
            ).append(cause.field)
        summary = "\n".join(
            f"{who}:\n" + "\n".join(f"- {field}" for field in fields)
            for who, fields in by_manager.items()
        )
    count = f"{len(causes)} conflict" + ("s" if len(causes) != 1 else "")
    return HttpError(409, f"Apply failed with {count}: {summary}", reason="Conflict", causes=causes)
