"""The three PATCH bodies Kubernetes takes, each turned into "the new object from the current
one": JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

Called by the REST handler for every PATCH (``kubectl patch``, ``label``, ``annotate``,
``apply``, ``edit``, ``rollout restart``, ``set image`` and the official clients' ``patch_*``);
the handler then checks the Git-is-truth guard and writes the result like a PUT. A strategic
merge patch merges the lists Kubernetes merges (containers by name, ports by containerPort,
env by name, volumes by name, conditions by type, ...: ``PATCH_STRATEGIES``, generated from
the upstream struct tags) and replaces the others; it honours the directives kubectl sends
(``$patch: replace|delete``, ``$retainKeys``, ``$deleteFromPrimitiveList/<field>``,
``$setElementOrder/<field>``, which only orders and is not needed to merge).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from reconciler.api.server._protobuf import message_for
from reconciler.api.server._protobuf_table import MESSAGES, PATCH_STRATEGIES
from reconciler.api.server._query import merge_patch
from reconciler.api.server._status import HttpError

__all__ = [
    "JSON_PATCH",
    "MERGE_PATCH",
    "PATCH_MEDIA_TYPES",
    "STRATEGIC_MERGE_PATCH",
    "Patch",
    "field_types",
    "json_patch",
    "list_strategies",
    "parse_patch",
    "strategic_merge",
]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
#: What a PATCH may send ("application/json" and none are read as a merge patch).
PATCH_MEDIA_TYPES = frozenset(
    {MERGE_PATCH, JSON_PATCH, STRATEGIC_MERGE_PATCH, "application/json", ""}
)


@dataclass(frozen=True)
class Patch:
    """A parsed PATCH body. ``pinned``: the patch names the resourceVersion it was made
    against, so a conflict is the caller's to resolve rather than retried. ``create``: the
    object to create when there is none (a server-side apply; None: a 404). ``owns_fields``:
    ``apply`` sets ``metadata.managedFields`` itself (a server-side apply), rather than the
    handler recording the change as an update."""

    apply: Callable[[dict[str, Any]], dict[str, Any]]
    pinned: bool
    create: Callable[[], dict[str, Any]] | None = None
    owns_fields: bool = False


def parse_patch(media_type: str, body: bytes) -> Patch:
    """The patch of a PATCH request with this Content-Type; a 400 for a body that is not
    one."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"the patch is not valid JSON: {exc}") from exc
    if media_type == JSON_PATCH:
        if not isinstance(document, list):
            raise HttpError(400, "a JSON patch (RFC 6902) is a list of operations")
        return Patch(apply=lambda current: json_patch(current, document), pinned=False)
    if not isinstance(document, dict):
        raise HttpError(400, "the patch must be a JSON object")
    metadata = document.get("metadata")
    pinned = isinstance(metadata, dict) and "resourceVersion" in metadata
    if media_type == STRATEGIC_MERGE_PATCH:
        return Patch(apply=lambda current: _strategic_root(current, document), pinned=pinned)
    return Patch(apply=lambda current: merge_patch(current, document), pinned=pinned)


# -- strategic merge patch -----------------------------------------------------------------


@cache
def field_types(message: str) -> dict[str, tuple[str, bool]]:
    """JSON name -> (type, repeated) of ``message``, embedded messages' fields included."""
    fields: dict[str, tuple[str, bool]] = {}
    for json_name, type_, repeated, _omit in MESSAGES.get(message, {}).values():
        if json_name:
            fields[json_name] = (type_, repeated)
        else:
            fields.update(field_types(type_))
    return fields


@cache
def list_strategies(message: str) -> dict[str, tuple[str, str]]:
    strategies = dict(PATCH_STRATEGIES.get(message, {}))
    for json_name, type_, _repeated, _omit in MESSAGES.get(message, {}).values():
        if not json_name:
            strategies.update(list_strategies(type_))
    return strategies


def _strategic_root(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    message = message_for(str(current.get("apiVersion", "")), str(current.get("kind", "")))
    merged = strategic_merge(current, patch, message)
    if not isinstance(merged, dict):
        raise HttpError(422, "a strategic merge patch cannot delete the whole object")
    return merged


def _is_directive(item: Any, value: str | None = None) -> bool:
    return (
        isinstance(item, dict) and "$patch" in item and (value is None or item["$patch"] == value)
    )


def strategic_merge(original: Any, patch: Any, message: str | None) -> Any:
    """``patch`` (a strategic merge patch of an object of protobuf ``message``, or None
    where the schema is not known: merged like a merge patch) applied to ``original``.
    None means "delete this" (``$patch: delete``)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive is not None:
        raise HttpError(422, f"unknown strategic merge patch directive $patch: {directive!r}")
    result = dict(original) if isinstance(original, dict) else {}
    fields = field_types(message) if message else {}
    strategies = list_strategies(message) if message else {}
    for key, value in patch.items():
        if key == "$retainKeys" or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.partition("/")[2]
            drop = value if isinstance(value, list) else []
            result[name] = [x for x in result.get(name) or [] if x not in drop]
            continue
        if value is None:
            result.pop(key, None)
            continue
        type_, repeated = fields.get(key, ("", False))
        child = type_ if type_ in MESSAGES else None
        strategy, merge_key = strategies.get(key, ("", ""))
        if repeated and isinstance(value, list) and "merge" in strategy.split(","):
            result[key] = _merge_list(result.get(key), value, child, merge_key)
        elif type_.startswith("map:") and isinstance(value, dict):
            inner = type_[4:] if type_[4:] in MESSAGES else None
            result[key] = _merge_map(result.get(key), value, inner)
        else:
            _put(result, key, value, child)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _put(result: dict[str, Any], key: str, value: Any, message: str | None) -> None:
    """``result[key]`` patched with ``value`` (None, or ``$patch: delete``, removes it)."""
    merged = None if value is None else strategic_merge(result.get(key), value, message)
    if merged is None:
        result.pop(key, None)
    else:
        result[key] = merged


def _merge_map(original: Any, patch: dict[str, Any], message: str | None) -> dict[str, Any]:
    result = dict(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        _put(result, key, value, message)
    return result


def _merge_list(original: Any, patch: list[Any], message: str | None, merge_key: str) -> list[Any]:
    if any(_is_directive(item, "replace") for item in patch):
        return [copy.deepcopy(item) for item in patch if not _is_directive(item)]
    result = list(original) if isinstance(original, list) else []
    if not merge_key:  # a set of scalars: the union
        return result + [item for item in patch if item not in result]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise HttpError(
                422,
                f"a strategic merge patch of this list needs objects that "
                f"have {merge_key!r}, got {json.dumps(item)[:100]}",
            )
        at = next(
            (
                i
                for i, old in enumerate(result)
                if isinstance(old, dict) and old.get(merge_key) == item[merge_key]
            ),
            None,
        )
        if _is_directive(item, "delete"):
            if at is not None:
                del result[at]
            continue
        merged = strategic_merge(result[at] if at is not None else {}, item, message)
        if at is None:
            result.append(merged)
        else:
            result[at] = merged
    return result


# -- JSON patch (RFC 6902) -----------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise HttpError(422, f"JSON patch: {path!r} is not a JSON pointer")
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]


def _parent(document: Any, tokens: list[str], path: str) -> tuple[Any, str]:
    node = document
    for token in tokens[:-1]:
        node = _child(node, token, path)
    return node, tokens[-1]


def _index(node: list[Any], step: str, path: str, *, append: bool = False) -> int:
    if append and step == "-":
        return len(node)
    if not step.isdigit() or int(step) > len(node) - (0 if append else 1):
        raise HttpError(422, f"JSON patch: {path}: no index {step}")
    return int(step)


def _child(node: Any, token: str, path: str) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list):
        return node[_index(node, token, path)]
    raise HttpError(422, f"JSON patch: {path}: {token!r} does not exist")


def _remove(document: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise HttpError(422, "JSON patch: cannot remove the whole object")
    parent, last = _parent(document, tokens, path)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, path))
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    raise HttpError(422, f"JSON patch: {path} does not exist")


def _add(document: Any, path: str, value: Any, *, replace: bool = False) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return copy.deepcopy(value)
    parent, last = _parent(document, tokens, path)
    if isinstance(parent, list):
        at = _index(parent, last, path, append=not replace)
        if replace:
            parent[at] = copy.deepcopy(value)
        else:
            parent.insert(at, copy.deepcopy(value))
    elif isinstance(parent, dict):
        if replace and last not in parent:
            raise HttpError(422, f"JSON patch: replace {path}: it does not exist")
        parent[last] = copy.deepcopy(value)
    else:
        raise HttpError(422, f"JSON patch: {path}: the parent is not an object or a list")
    return document


def json_patch(current: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
    """RFC 6902 ``operations`` applied to a copy of ``current``; all or nothing."""
    document: Any = copy.deepcopy(current)
    for operation in operations:
        if not isinstance(operation, dict):
            raise HttpError(422, "JSON patch: each operation must be an object")
        op, path = operation.get("op"), operation.get("path")
        if op in ("add", "replace", "test") and "value" not in operation:
            raise HttpError(422, f"JSON patch: {op} {path} needs a value")
        if op == "add":
            document = _add(document, str(path), operation["value"])
        elif op == "replace":
            document = _add(document, str(path), operation["value"], replace=True)
        elif op == "remove":
            _remove(document, str(path))
        elif op in ("move", "copy"):
            source = operation.get("from")
            tokens = _pointer(source)
            value = document
            for token in tokens:
                value = _child(value, token, str(source))
            if op == "move":
                _remove(document, str(source))
            document = _add(document, str(path), value)
        elif op == "test":
            value = document
            for token in _pointer(path):
                value = _child(value, token, str(path))
            if value != operation["value"]:
                raise HttpError(422, f"JSON patch: test {path} failed")
        else:
            raise HttpError(422, f"JSON patch: unknown op {op!r}")
    if not isinstance(document, dict):
        raise HttpError(422, "JSON patch: the result is not an object")
    return document
