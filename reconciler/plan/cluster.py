"""The observed side of a plan: nodes, the pods bound to them, the ReplicaSets that exist.

A plan says which pods start and stop on which node, so it needs the cluster as it is: read
live (``--cluster``, through ``reconciler.api.Api`` or ``reconciler.client.Client``), from a saved
``capstan snapshot`` (``--snapshot``), or — with neither — simulated from the base commit: its
Node manifests are the fleet (capacity from ``spec.capacity``), and its workloads are placed
by the real scheduler's dry run (``reconciler.scheduler.plan``) as the cluster would have them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.plan.workload import desired_replicasets, expand_pods
from reconciler.scheduler import NodeInfo, node_info, plan, pod_info
from reconciler.snapshot import ClusterSnapshot, ObjectReader, take_snapshot
from schemas import KubeObject, Node, Pod, ReplicaSet

__all__ = ["UNKNOWN_CAPACITY_NOTE", "ObservedCluster", "from_base", "from_reader", "from_snapshot"]

# A Node manifest without spec.capacity says nothing about its size: plan then checks
# ports, selectors and taints on it, not resources.
_UNKNOWN_CPU_MILLI = 1 << 40
_UNKNOWN_MEMORY = 1 << 60
UNKNOWN_CAPACITY_NOTE = "no spec.capacity in Git and no observed status: resources not checked"


@dataclass(frozen=True)
class ObservedCluster:
    """``source`` says where the picture comes from (shown in the plan)."""

    source: str
    nodes: tuple[NodeInfo, ...]
    pods: tuple[Pod, ...]
    replicasets: tuple[ReplicaSet, ...]
    simulated: bool = False
    notes: tuple[str, ...] = ()


def from_snapshot(snapshot: ClusterSnapshot, *, label: str) -> ObservedCluster:
    return ObservedCluster(
        source=f"snapshot {label} (taken {snapshot.taken_at:%Y-%m-%d %H:%M:%S %Z})".rstrip(),
        nodes=tuple(node_info(n) for n in snapshot.nodes),
        pods=snapshot.pods,
        replicasets=snapshot.replicasets,
    )


def from_reader(reader: ObjectReader, *, label: str) -> ObservedCluster:
    snapshot = take_snapshot(reader)
    return ObservedCluster(
        source=f"cluster {label}",
        nodes=tuple(node_info(n) for n in snapshot.nodes),
        pods=snapshot.pods,
        replicasets=snapshot.replicasets,
    )


def from_base(
    objects: Sequence[KubeObject], *, label: str, reason: str | None = None
) -> ObservedCluster:
    """The cluster as the base commit would have made it (nothing observed; ``reason`` says
    why, in the plan's "Observed" line)."""
    nodes: list[NodeInfo] = []
    notes: list[str] = []
    for obj in objects:
        if isinstance(obj, Node):
            info = dataclasses.replace(node_info(obj), ready=True)
            if info.cpu_milli == 0 and info.memory_bytes == 0:
                info = dataclasses.replace(
                    info, cpu_milli=_UNKNOWN_CPU_MILLI, memory_bytes=_UNKNOWN_MEMORY
                )
                notes.append(f"node {obj.name}: {UNKNOWN_CAPACITY_NOTE}")
            nodes.append(info)
    replicasets = desired_replicasets(objects)
    pods = list(expand_pods(objects, replicasets))
    placed = plan(nodes, [pod_info(p) for p in pods])
    where = {str(placement.pod): placement.node for placement in placed.placements}
    bound = tuple(
        p.model_copy(update={"spec": p.spec.model_copy(update={"node_name": where[key]})})
        for p in pods
        if (key := f"{p.namespace}/{p.name}") in where
    )
    return ObservedCluster(
        source=f"base commit {label} (Node manifests in Git; no cluster observed"
        + (f": {reason})" if reason else ")"),
        nodes=tuple(nodes),
        pods=bound,
        replicasets=tuple(replicasets),
        simulated=True,
        notes=tuple(notes),
    )
