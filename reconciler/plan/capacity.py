"""The capacity verdict: will the pods a change starts fit, and where will they go?

Runs the real scheduler's dry run (``reconciler.scheduler.plan``, the same filter and score
code that binds pods in the cluster) over the observed nodes, with the pods that keep
running counted and the pods the change stops already gone — the state after the rollout.
Pods that fit nowhere come back with the scheduler's own sentence ("0/3 nodes are
available: 3 Insufficient memory."). Host port clashes between pods are among those reasons;
NodePort clashes between Services are found here, since no pod carries them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from reconciler.plan.cluster import ObservedCluster
from reconciler.plan.model import NodeChanges, Unfit, UnfitGroup
from reconciler.plan.workload import WorkloadChanges
from reconciler.scheduler import plan, pod_info, pod_key
from schemas import KubeObject, ObjectKey, Service

__all__ = ["Placed", "group_unfit", "node_port_conflicts", "place", "surge_stalls"]


@dataclass(frozen=True)
class Placed:
    nodes: tuple[NodeChanges, ...]
    unschedulable: tuple[Unfit, ...]
    unfit_groups: tuple[UnfitGroup, ...] = ()


def place(observed: ObservedCluster, workload: WorkloadChanges) -> Placed:
    """Where the started pods go, which nodes lose which pods, and what does not fit."""
    stopping = {stop.key for stop in workload.stops}
    running = [
        pod_info(p)
        for p in observed.pods
        if p.spec.node_name and str(pod_key(p.namespace, p.name)) not in stopping
    ]
    result = plan(observed.nodes, workload.starts, running=running)
    starts: dict[str, list[str]] = defaultdict(list)
    stops: dict[str, list[str]] = defaultdict(list)
    for placement in result.placements:
        starts[placement.node].append(placement.pod)
    for pod in workload.starts:
        if pod.node_name is not None:  # named its node in Git: goes there, unplaced
            starts[pod.node_name].append(pod.key)
    for stop in workload.stops:
        stops[stop.node or "(unscheduled)"].append(stop.key)
    nodes = tuple(
        NodeChanges(
            node=name,
            start=tuple(sorted(starts.get(name, ()))),
            stop=tuple(sorted(stops.get(name, ()))),
        )
        for name in sorted(set(starts) | set(stops))
    )
    unfit = tuple(
        Unfit(pod=str(f.pod), message=f.message, owner=workload.owners.get(str(f.pod)))
        for f in result.failures
    )
    started = Counter(workload.owners.get(str(pod.key)) for pod in workload.starts)
    return Placed(nodes=nodes, unschedulable=unfit, unfit_groups=group_unfit(unfit, started))


def group_unfit(
    unfit: Iterable[Unfit], started: Mapping[ObjectKey | None, int]
) -> tuple[UnfitGroup, ...]:
    """One group per owner and reason, in owner order, the largest group of an owner first
    (a thousand replicas that do not fit make one line, not a thousand)."""
    counts = Counter((u.owner, u.message) for u in unfit)
    groups = [
        UnfitGroup(
            owner=owner, message=message, count=count, total=max(started.get(owner, 0), count)
        )
        for (owner, message), count in counts.items()
    ]
    return tuple(sorted(groups, key=lambda g: (g.owner is None, g.owner_name, -g.count, g.message)))


def surge_stalls(observed: ObservedCluster, workload: WorkloadChanges) -> tuple[str, ...]:
    """Rolling updates that cannot start: with maxUnavailable 0 nothing old stops before a
    surge pod runs, so if the first surge pods fit nowhere beside the old pods (a hostPort
    every node already binds, a full cluster) the rollout waits forever."""
    running = [pod_info(p) for p in observed.pods if p.spec.node_name]
    stalls: list[str] = []
    for rollout in workload.rollouts:
        if (
            rollout.strategy != "RollingUpdate"
            or rollout.max_unavailable > 0
            or rollout.action not in ("new-replicaset", "reuse")
            or len(rollout.steps) < 2
            or rollout.steps[0].old == 0
        ):
            continue
        first = rollout.steps[1].new - rollout.steps[0].new
        prefix = f"{rollout.deployment.namespace}/{rollout.replica_set}-new"
        surge = [p for p in workload.starts if p.key.startswith(prefix)][: max(first, 0)]
        result = plan(observed.nodes, surge, running=running)
        if result.failures:
            name = f"{rollout.deployment.namespace}/{rollout.deployment.name}"
            stalls.append(
                f"rollout of Deployment {name} would stall: maxUnavailable is 0 and its first "
                f"surge pod fits no node while the old pods run "
                f"({result.failures[0].message})"
            )
    return tuple(stalls)


def node_port_conflicts(objects: Iterable[KubeObject]) -> tuple[str, ...]:
    """Two Services asking for the same node port (and protocol)."""
    users: dict[tuple[int, str], list[str]] = defaultdict(list)
    for obj in objects:
        if isinstance(obj, Service):
            for port in obj.spec.ports:
                if port.node_port is not None:
                    users[(port.node_port, port.protocol)].append(
                        f"Service {obj.namespace}/{obj.name}"
                    )
    return tuple(
        f"nodePort {number}/{protocol} is requested by {_join(names)}"
        for (number, protocol), names in sorted(users.items())
        if len(names) > 1
    )


def _join(names: Sequence[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
