"""Field-level diffs of objects, and what a comparison of desired against live leaves out.

Pure functions used by the sync engine (``reconciler.sync``: is this object in sync, and what
changes) and by ``capstan plan`` (show each change as fields). An object is compared in its
*Git-owned* form (``comparable``): spec-like fields, labels and annotations; never what the
server or controllers set (uid, resourceVersion, generation, creationTimestamp, finalizers,
ownerReferences, status, Capstan's own bookkeeping annotations). Secret values never leave
this module unmasked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from schemas import KubeObject
from schemas.sealed import (
    DIGESTS_ANNOTATION,
    ENCRYPTED_ANNOTATION,
    ENCRYPTED_VALUE,
    ciphertext_digest,
)

__all__ = [
    "COMMIT_ANNOTATION",
    "DRIFT_ANNOTATION",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "MASK",
    "OVERRIDE_HEADER",
    "PRUNE_ANNOTATION",
    "SEALED_MASK",
    "SOURCE_ANNOTATION",
    "FieldChange",
    "comparable",
    "diff_objects",
    "diff_values",
    "fill_server_defaults",
    "is_ignored_annotation",
]

MANAGED_BY_LABEL = "capstan.io/managed-by"
MANAGED_BY_VALUE = "capstan"
SOURCE_ANNOTATION = "capstan.io/source"
COMMIT_ANNOTATION = "capstan.io/commit"
PRUNE_ANNOTATION = "capstan.io/prune"
# The API server refuses writes to objects with MANAGED_BY_LABEL unless the request carries
# this header (value "drift"), and marks what it let through with DRIFT_ANNOTATION, which
# Git does not have, so the object shows as out of sync. The client sends the same header.
OVERRIDE_HEADER = "X-Capstan-Override"
DRIFT_ANNOTATION = "capstan.io/drift"
MASK = "***"
#: How a sealed (age) value shows in a diff: never the value, never its ciphertext.
SEALED_MASK = "encrypted"
_SEALED = "age:"

# Bookkeeping written by the sync itself: it changes with every commit or line shift and
# says nothing about the object, so it never makes an object out of sync by itself.
_BOOKKEEPING_ANNOTATIONS = frozenset({SOURCE_ANNOTATION, COMMIT_ANNOTATION})
# Annotations controllers write on objects that also come from Git (the Deployment
# controller's revision counter): Git does not own them, a sync must neither see nor drop them.
_CONTROLLER_ANNOTATION_PREFIXES = ("deployment.kubernetes.io/",)
_SECRET_FIELDS = ("data", "stringData")
# Taints with this prefix are set by controllers (Kubernetes reserves it for the system).
_CONTROLLER_TAINT_PREFIX = "node.kubernetes.io/"

# Fields the server or a controller fills in when Git leaves them empty (Kubernetes'
# defaulting of allocated values): a Pod's node once scheduled, a Service's allocated
# cluster IP and node ports. Paths use "*" for every list element.
_SERVER_FILLED: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "Pod": (("spec", "nodeName"),),
    "Service": (("spec", "clusterIP"), ("spec", "ports", "*", "nodePort")),
}

ChangeType = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class FieldChange:
    """One field that differs. ``path`` is Kubernetes-style (``spec.template.spec.
    containers[name=web].image``); absent values are None with ``type`` saying which side."""

    path: str
    type: ChangeType
    before: Any = None
    after: Any = None


def is_ignored_annotation(key: str) -> bool:
    return key in _BOOKKEEPING_ANNOTATIONS or key.startswith(_CONTROLLER_ANNOTATION_PREFIXES)


def comparable(obj: KubeObject | Mapping[str, Any]) -> dict[str, Any]:
    """The part of an object Git owns, as plain data. The model's defaults are already in
    (both sides are validated models), so a field Git leaves out compares as its default."""
    data = obj.to_dict() if isinstance(obj, KubeObject) else dict(obj)
    meta = data.get("metadata") or {}
    out: dict[str, Any] = {k: v for k, v in data.items() if k not in ("metadata", "status")}
    labels = dict(meta.get("labels") or {})
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if not is_ignored_annotation(k)
    }
    out["metadata"] = {"labels": labels, "annotations": annotations}
    if out.get("kind") == "Secret":
        _compare_sealed(out, annotations)
    return out


def _compare_sealed(out: dict[str, Any], annotations: dict[str, Any]) -> None:
    # A sealed Secret (Git) and the opened one the sync stored compare by ciphertext digest,
    # so a plan without the key still says which keys change (docs/secrets.md).
    if annotations.get(ENCRYPTED_ANNOTATION) is not None:
        values = {**(out.get("data") or {}), **(out.get("stringData") or {})}
        digests = {key: ciphertext_digest(str(value)) for key, value in values.items()}
    elif DIGESTS_ANNOTATION in annotations:
        try:
            digests = dict(json.loads(str(annotations.pop(DIGESTS_ANNOTATION))))
        except (ValueError, TypeError):
            digests = {}
        annotations[ENCRYPTED_ANNOTATION] = ENCRYPTED_VALUE
    else:
        return
    out["data"] = {key: f"{_SEALED}{digest}" for key, digest in digests.items()}
    out.pop("stringData", None)


def fill_server_defaults(desired: dict[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """``desired`` (a ``to_dict``/``comparable`` form) with the server-filled fields Git leaves
    empty taken from ``live``, so an allocated value is neither a difference nor overwritten."""
    kind = str(desired.get("kind", ""))
    for path in _SERVER_FILLED.get(kind, ()):
        _copy_missing(desired, live, path)
    if kind == "Node":
        _keep_controller_taints(desired, live)
    return desired


def _keep_controller_taints(desired: dict[str, Any], live: Mapping[str, Any]) -> None:
    # The node controller taints an unreachable node (`node.kubernetes.io/unreachable`) in
    # spec.taints, which Git also declares. Those taints are the controller's: a sync that
    # removed them would fight it on every resync while the node is away.
    live_taints = (live.get("spec") or {}).get("taints") or []
    spec = desired.get("spec")
    if not isinstance(spec, dict):
        return
    mine = list(spec.get("taints") or [])
    keys = {(t.get("key"), t.get("effect")) for t in mine if isinstance(t, Mapping)}
    kept = [
        t
        for t in live_taints
        if isinstance(t, Mapping)
        and str(t.get("key", "")).startswith(_CONTROLLER_TAINT_PREFIX)
        and (t.get("key"), t.get("effect")) not in keys
    ]
    if kept:
        spec["taints"] = mine + [dict(t) for t in kept]


def _copy_missing(target: Any, source: Any, path: Sequence[str]) -> None:
    if not path or not isinstance(target, dict) or not isinstance(source, Mapping):
        return
    head, rest = path[0], path[1:]
    if head == "*":
        return
    if not rest:
        if target.get(head) is None and source.get(head) is not None:
            target[head] = source[head]
        return
    if rest[0] == "*":
        items, live_items = target.get(head), source.get(head)
        if isinstance(items, list) and isinstance(live_items, list):
            for mine, theirs in zip(items, live_items, strict=False):
                _copy_missing(mine, theirs, rest[1:])
        return
    _copy_missing(target.get(head), source.get(head), rest)


def diff_objects(
    before: KubeObject | Mapping[str, Any] | None,
    after: KubeObject | Mapping[str, Any] | None,
) -> tuple[FieldChange, ...]:
    """Field changes from ``before`` to ``after`` in their comparable form (either may be
    None: a create or a delete). Secret values are masked."""
    old = comparable(before) if before is not None else {}
    new = comparable(after) if after is not None else {}
    if before is not None and after is not None:
        new = fill_server_defaults(new, old)
    kind = str((new or old).get("kind", ""))
    changes = diff_values(old, new)
    if kind == "Secret":
        changes = [_masked(change) for change in changes]
    return tuple(changes)


def diff_values(before: Any, after: Any, path: str = "") -> list[FieldChange]:
    """Every leaf-level difference between two JSON-like values. Lists of named items
    (containers, ports, env) are matched by name, so inserting one shows as one change."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        changes: list[FieldChange] = []
        for key in sorted(set(before) | set(after), key=str):
            sub = _join(path, str(key))
            if key not in after:
                changes.append(FieldChange(sub, "removed", before=before[key]))
            elif key not in before:
                changes.append(FieldChange(sub, "added", after=after[key]))
            else:
                changes.extend(diff_values(before[key], after[key], sub))
        return changes
    if isinstance(before, list) and isinstance(after, list):
        return _diff_lists(before, after, path)
    if before != after:
        return [FieldChange(path, "changed", before=before, after=after)]
    return []


def _diff_lists(before: list[Any], after: list[Any], path: str) -> list[FieldChange]:
    old_names, new_names = _names(before), _names(after)
    if old_names is not None and new_names is not None:
        changes: list[FieldChange] = []
        old_by, new_by = (
            dict(zip(old_names, before, strict=True)),
            dict(zip(new_names, after, strict=True)),
        )
        for name in [*old_names, *(n for n in new_names if n not in old_by)]:
            sub = f"{path}[name={name}]"
            if name not in new_by:
                changes.append(FieldChange(sub, "removed", before=old_by[name]))
            elif name not in old_by:
                changes.append(FieldChange(sub, "added", after=new_by[name]))
            else:
                changes.extend(diff_values(old_by[name], new_by[name], sub))
        if not changes and old_names != new_names:
            changes.append(FieldChange(path, "changed", before=before, after=after))
        return changes
    changes = []
    for index in range(max(len(before), len(after))):
        sub = f"{path}[{index}]"
        if index >= len(after):
            changes.append(FieldChange(sub, "removed", before=before[index]))
        elif index >= len(before):
            changes.append(FieldChange(sub, "added", after=after[index]))
        else:
            changes.extend(diff_values(before[index], after[index], sub))
    return changes


def _names(items: list[Any]) -> list[str] | None:
    names = [item.get("name") for item in items if isinstance(item, Mapping)]
    if len(names) != len(items) or not all(isinstance(n, str) for n in names):
        return None
    if len(set(names)) != len(names):
        return None
    return [str(n) for n in names]


def _join(path: str, key: str) -> str:
    if key and all(ch.isalnum() or ch in "_-" for ch in key):
        return f"{path}.{key}" if path else key
    return f'{path}["{key}"]'


def _masked(change: FieldChange) -> FieldChange:
    top = change.path.split(".", 1)[0].split("[", 1)[0]
    if top not in _SECRET_FIELDS:
        return change
    after = _mask_value(change.after)
    if change.type == "changed" and after == SEALED_MASK:
        after = f"{SEALED_MASK} (changed)"
    return FieldChange(change.path, change.type, before=_mask_value(change.before), after=after)


def _mask_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {key: _mask_value(item) for key, item in value.items()}
    if isinstance(value, str) and value.startswith(_SEALED):
        return SEALED_MASK
    return MASK
