"""``events`` over HTTP: the ``v1 Event`` form of the API's event records, listed and watched.

Used by the REST handler for ``/api/v1[/namespaces/{ns}]/events`` (``kubectl get events
[--watch]``, ``describe``'s event section, the clients' event lists). Events are not manifest
objects: :mod:`reconciler.api._events` keeps them as records under ``/registry/events/``, one
key per (object, reason, message, type) whose repeats bump ``count``; here each stored record
becomes the Event Kubernetes would serve, and a store watch on that prefix becomes the watch
lines (ADDED for a new record, MODIFIED for a repeat, DELETED when it expires).
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.api import REGISTRY, EventRecord, event_kind
from reconciler.api.server._fieldselect import FieldSelector
from reconciler.store import Event, Store

__all__ = ["event_dict", "event_lines_from", "event_prefix", "initial_event_lines"]


def event_prefix(namespace: str | None) -> str:
    """The store prefix of the events of ``namespace`` (None: all namespaces)."""
    return f"{REGISTRY}events/{namespace}/" if namespace else f"{REGISTRY}events/"


def event_dict(record: EventRecord) -> dict[str, Any]:
    """The ``v1 Event`` JSON form of a record."""
    data: dict[str, Any] = record.model_dump(mode="json", by_alias=True, exclude_none=True)
    metadata = {"name": data.pop("name"), "namespace": data.pop("namespace")}
    if "resourceVersion" in data:
        metadata["resourceVersion"] = data.pop("resourceVersion")
    source = data.pop("source", None)
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "Event", "metadata": metadata, **data}
    if source is not None:
        out["source"] = {"component": source}
    return out


def _line(kind: str, value: bytes, revision: int, fields: FieldSelector | None) -> bytes | None:
    record = EventRecord.model_validate_json(value).model_copy(
        update={"resource_version": str(revision)}
    )
    obj = event_dict(record)
    if fields is not None and not fields.matches(obj):
        return None
    line = json.dumps({"type": kind, "object": obj}, separators=(",", ":"))
    return line.encode() + b"\n"


def initial_event_lines(
    store: Store, namespace: str | None, fields: FieldSelector | None
) -> tuple[list[bytes], int]:
    """ADDED lines for the current events and the revision to watch from."""
    result = store.range(event_prefix(namespace), prefix=True)
    lines = [_line("ADDED", kv.value, int(kv.mod_revision), fields) for kv in result.kvs]
    return [line for line in lines if line is not None], int(result.revision)


def event_lines_from(event: Event, fields: FieldSelector | None) -> bytes | None:
    """The watch line of one store event on the events prefix (None: filtered out)."""
    kind = event_kind(event)
    if kind == "DELETED":
        if event.prev_kv is None:
            return None
        return _line(kind, event.prev_kv.value, int(event.revision), fields)
    return _line(kind, event.kv.value, int(event.revision), fields)
