"""Field selectors (``?fieldSelector=status.phase=Running,spec.nodeName!=n1``) for the fields
Kubernetes lets each kind be selected by.

Used by the REST handler on LIST and WATCH: ``kubectl get --field-selector``, ``kubectl
describe`` (a node's pods by ``spec.nodeName``, an object's events by ``involvedObject.*``)
and informers. A field Kubernetes does not offer for that kind is a 400 naming it, as
Kubernetes answers; a field it offers but an object leaves out compares as "".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.api.server._status import HttpError

__all__ = ["FieldSelector", "parse_field_selector"]

_COMMON = frozenset({"metadata.name", "metadata.namespace"})
#: Kubernetes' field labels per kind (besides metadata.name and metadata.namespace).
_FIELDS: Mapping[str, frozenset[str]] = {
    "Pod": frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    "Event": frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    "Node": frozenset({"spec.unschedulable"}),
    "Namespace": frozenset({"status.phase"}),
    "Secret": frozenset({"type"}),
    "ReplicaSet": frozenset({"status.replicas"}),
}
_MAX_CHARS = 4096


@dataclass(frozen=True)
class FieldSelector:
    """``(field, value, equal)`` terms, all of which must hold."""

    terms: tuple[tuple[str, str, bool], ...]

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((_field(obj, field) == value) == equal for field, value, equal in self.terms)

    def matches_bytes(self, value: bytes) -> bool:
        return self.matches(json.loads(value))


def _field(obj: Mapping[str, Any], path: str) -> str:
    if path == "source":  # an Event's source is {component: ...}; the label is the component
        path = "source.component"
    node: Any = obj
    for step in path.split("."):
        node = node.get(step) if isinstance(node, Mapping) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def _split(term: str) -> tuple[str, str, bool]:
    for op, equal in (("!=", False), ("==", True), ("=", True)):
        field, found, value = term.partition(op)
        if found:
            return field.strip(), value, equal
    raise HttpError(400, f"fieldSelector: {term!r} is not field=value or field!=value")


def parse_field_selector(text: str | None, *, kind: str) -> FieldSelector | None:
    """The selector of ``?fieldSelector=``, None when absent or empty."""
    if not text:
        return None
    if len(text) > _MAX_CHARS:
        raise HttpError(400, f"fieldSelector is longer than {_MAX_CHARS} characters")
    allowed = _COMMON | _FIELDS.get(kind, frozenset())
    terms = []
    for raw in text.split(","):
        term = raw.strip()
        if not term:
            continue
        field, value, equal = _split(term)
        if field not in allowed:
            raise HttpError(
                400,
                f"fieldSelector: field label not supported: {field} (for "
                f"{kind}: {', '.join(sorted(allowed))})",
            )
        terms.append((field, value.strip(), equal))
    return FieldSelector(tuple(terms)) if terms else None
