"""Server-side printing: a ``meta.k8s.io/v1 Table`` of objects, so ``kubectl get`` shows what it
shows against Kubernetes.

Called by the REST handler when content negotiation (``_negotiation``) picked a Table for a
GET, LIST or WATCH; it turns the JSON the handler would have sent into a Table. The columns and
their cells are :mod:`reconciler.columns` (the same ones ``capstan get`` prints); columns of
priority 1 are the ``-o wide`` ones (kubectl hides them otherwise). Each row carries the
object's metadata (``PartialObjectMetadata``), the whole object with
``includeObject=Object``, or nothing with ``includeObject=None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from reconciler.api.server._status import HttpError
from reconciler.columns import Column, columns

__all__ = ["table", "table_row"]

Obj = Mapping[str, Any]

_INCLUDE = frozenset({"None", "Object", "Metadata"})


def _columns(kind: str) -> Sequence[Column]:
    return columns(kind, wide=True)


def _row_object(obj: Obj, include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return dict(obj)
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(obj.get("metadata") or {}),
    }


def _include(include: str | None) -> str:
    chosen = include or "Metadata"
    if chosen not in _INCLUDE:
        raise HttpError(400, f"includeObject={chosen!r}: must be one of {sorted(_INCLUDE)}")
    return chosen


def table_row(obj: Obj, *, kind: str, now: datetime, include: str | None) -> dict[str, Any]:
    """One ``TableRow`` of ``obj`` (a JSON object of ``kind``)."""
    row: dict[str, Any] = {"cells": [c.cell(obj, now) for c in _columns(kind)]}
    included = _row_object(obj, _include(include))
    if included is not None:
        row["object"] = included
    return row


def table(
    objects: Sequence[Obj],
    *,
    kind: str,
    now: datetime,
    include: str | None,
    metadata: Mapping[str, Any] | None = None,
    with_columns: bool = True,
) -> dict[str, Any]:
    """A ``Table`` of ``objects``; ``with_columns`` False leaves the column definitions out
    (a watch sends them in its first event only, as Kubernetes does)."""
    document: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(metadata or {}),
    }
    if with_columns:
        document["columnDefinitions"] = [c.definition() for c in _columns(kind)]
    document["rows"] = [table_row(o, kind=kind, now=now, include=include) for o in objects]
    return document
