"""Putting a plan together: two sides, the observed cluster → a ``Plan`` (data, no output).

The object diff is the sync engine's own (``reconciler.sync.plan_sync``, pure), run with the
base as if it were live: what it reports is what a sync of the head would write after the
base. Workloads and capacity come from ``workload`` and ``capacity``; without an observed
cluster, the base commit stands in for it (``cluster.from_base``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from reconciler.diff import MANAGED_BY_LABEL, MASK, comparable
from reconciler.plan.capacity import node_port_conflicts, place, surge_stalls
from reconciler.plan.cluster import ObservedCluster, from_base
from reconciler.plan.kinds import predict_kinds
from reconciler.plan.model import (
    Capacity,
    DiffAction,
    NodeChanges,
    ObjectDiff,
    Plan,
    SideSummary,
    WorkloadView,
)
from reconciler.plan.sides import Side, Sides
from reconciler.plan.workload import predict
from reconciler.source import LoadedObject
from reconciler.sync import managed_object, plan_sync
from schemas import KubeObject

__all__ = ["build_plan", "object_document"]

_ACTIONS: dict[str, DiffAction] = {"create": "add", "update": "change", "delete": "remove"}


def _summary(side: Side) -> SideSummary:
    return SideSummary(
        label=side.label,
        commit=side.commit,
        objects=len(side.objects),
        author=side.author,
        subject=side.subject,
    )


def object_document(obj: KubeObject) -> dict[str, Any]:
    """The part of ``obj`` Git owns, for showing; Secret values masked."""
    doc = comparable(obj)
    doc["metadata"]["labels"].pop(MANAGED_BY_LABEL, None)
    doc["metadata"] = {
        "name": obj.name,
        **({"namespace": obj.namespace} if obj.namespace else {}),
        **{k: v for k, v in doc["metadata"].items() if v},
    }
    if obj.kind == "Secret":
        for field in ("data", "stringData"):
            if isinstance(doc.get(field), dict):
                doc[field] = {key: MASK for key in doc[field]}
    return doc


def build_plan(
    sides: Sides, observed: ObservedCluster | None = None, *, no_cluster: str | None = None
) -> Plan:
    """The plan of ``sides`` against ``observed``; without one, against the base commit
    (``no_cluster`` says why none was observed)."""
    started = time.perf_counter()
    base, head = sides.base, sides.head
    base_objects = [o.obj for o in base.objects]
    if observed is None:
        observed = from_base(base_objects, label=base.label, reason=no_cluster)
    if not head.valid:
        return Plan(
            base=_summary(base),
            head=_summary(head),
            changes=(),
            unchanged=0,
            rollouts=(),
            nodes=(),
            capacity=Capacity(observed=observed.source, nodes_total=len(observed.nodes)),
            errors=head.errors,
            base_errors=base.errors,
            load_strategy=sides.strategy,
        )
    head_objects = [o.obj for o in head.objects]
    # Most objects of a large repository are the same on both sides — with the incremental
    # load, the very same parsed object. Equal models need no field diff.
    base_by = {o.obj.key: o.obj for o in base.objects}
    same = {
        o.obj.key
        for o in head.objects
        if (b := base_by.get(o.obj.key)) is not None and (b is o.obj or b == o.obj)
    }
    changes, unchanged = _diff(
        [o for o in base.objects if o.obj.key not in same],
        [o for o in head.objects if o.obj.key not in same],
    )
    unchanged += len(same)
    workload = predict(
        [o for o in base_objects if o.key not in same],
        [o for o in head_objects if o.key not in same],
        pods=observed.pods,
        replicasets=observed.replicasets,
    )
    kinds = predict_kinds(
        [o for o in base_objects if o.key not in same],
        [o for o in head_objects if o.key not in same],
        pods=observed.pods,
        nodes=observed.nodes,
    )
    workload = dataclasses.replace(
        workload,
        starts=workload.starts + kinds.starts,
        stops=workload.stops + kinds.stops,
        owners={**workload.owners, **kinds.owners},
    )
    placed = place(observed, workload)
    nodes = _with_daemons(placed.nodes, kinds.views)
    capacity = Capacity(
        observed=observed.source,
        nodes_total=len(observed.nodes),
        unschedulable=placed.unschedulable,
        unfit_groups=placed.unfit_groups,
        conflicts=node_port_conflicts(head_objects) + surge_stalls(observed, workload),
        notes=observed.notes,
    )
    return Plan(
        base=_summary(base),
        head=_summary(head),
        changes=changes,
        unchanged=unchanged,
        rollouts=workload.rollouts,
        nodes=nodes,
        capacity=capacity,
        workloads=kinds.views,
        base_errors=base.errors,
        load_strategy=sides.strategy,
        timings={"build_s": time.perf_counter() - started},
    )


def _with_daemons(
    nodes: tuple[NodeChanges, ...], views: Sequence[WorkloadView]
) -> tuple[NodeChanges, ...]:
    """The scheduler's node changes plus the DaemonSet pods, which their controller binds to
    each node itself (``ns/daemonset@node`` in a view's starts)."""
    extra: dict[str, list[str]] = {}
    for view in views:
        if view.key.kind == "DaemonSet":
            for start in view.starts:
                pod, node = start.rsplit("@", 1)
                extra.setdefault(node, []).append(f"{pod} (daemon)")
    if not extra:
        return nodes
    by_node = {n.node: n for n in nodes}
    for node, pods in extra.items():
        current = by_node.get(node, NodeChanges(node))
        by_node[node] = dataclasses.replace(current, start=current.start + tuple(pods))
    return tuple(by_node[name] for name in sorted(by_node))


def _diff(
    base: Sequence[LoadedObject], head: Sequence[LoadedObject]
) -> tuple[tuple[ObjectDiff, ...], int]:
    live = [managed_object(o.obj, source=o.source.display()) for o in base]
    sources = {o.obj.key: o.source.display() for o in head}
    sync_plan = plan_sync(
        [o.obj for o in head], live, prune=True, allow_empty=True, sources=sources
    )
    base_by = {o.obj.key: o.obj for o in base}
    head_by = {o.obj.key: o.obj for o in head}
    diffs: list[ObjectDiff] = []
    for change in sync_plan.changes:
        action = _ACTIONS[change.action]
        document = None
        if action == "add":
            document = object_document(head_by[change.key])
        elif action == "remove":
            document = object_document(base_by[change.key])
        fields = change.fields if action == "change" else ()
        diffs.append(ObjectDiff(action, change.key, change.source, fields, document))
    return tuple(diffs), sync_plan.unchanged
