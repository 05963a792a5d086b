"""Filters: may this pod run on this node, and if not, why (Kubernetes' words).

The placement core asks these questions of every node at once through
:class:`~reconciler.scheduler.state.ClusterState`; the functions here are the one-node
reference (what table tests and the property tests compare the vectorized path against) and
the failure message. The order is Kubernetes' filter-plugin order: a node that fails an earlier
filter is counted under that reason only; the resource filter reports every resource it lacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconciler.scheduler.affinity import node_affinity_matches
from reconciler.scheduler.nodeinfo import HostPort, NodeInfo, PodInfo
from schemas.node import Taint
from schemas.pod import Toleration

__all__ = [
    "REASON_CPU",
    "REASON_HOST_PORTS",
    "REASON_MEMORY",
    "REASON_NODE_SELECTOR",
    "REASON_NOT_READY",
    "REASON_TOO_MANY_PODS",
    "REASON_UNSCHEDULABLE",
    "NodeUsage",
    "filter_reasons",
    "selector_matches",
    "taint_reason",
    "unschedulable_message",
    "untolerated_taint",
]

REASON_NOT_READY = "node(s) were not ready"
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NODE_SELECTOR = "node(s) didn't match Pod's node selector"
REASON_HOST_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_TOO_MANY_PODS = "Too many pods"
REASON_CPU = "Insufficient cpu"
REASON_MEMORY = "Insufficient memory"


@dataclass(frozen=True, slots=True)
class NodeUsage:
    """What the pods placed on a node take from it."""

    cpu_milli: int = 0
    memory_bytes: int = 0
    pods: int = 0
    host_ports: tuple[HostPort, ...] = ()


def taint_reason(taint: Taint) -> str:
    return f"node(s) had untolerated taint {{{taint.key}: {taint.value or ''}}}"


def untolerated_taint(node: NodeInfo, tolerations: Iterable[Toleration]) -> Taint | None:
    """The first NoSchedule/NoExecute taint of the node that no toleration covers."""
    tolerations = tuple(tolerations)
    for taint in node.hard_taints:
        if not any(
            t.tolerates(key=taint.key, value=taint.value, effect=taint.effect) for t in tolerations
        ):
            return taint
    return None


def selector_matches(labels: Mapping[str, str], selector: Iterable[tuple[str, str]]) -> bool:
    return all(labels.get(key) == value for key, value in selector)


def filter_reasons(
    node: NodeInfo,
    pod: PodInfo,
    *,
    usage: NodeUsage = NodeUsage(),
) -> tuple[str, ...]:
    """Why ``pod`` cannot go to ``node`` already running ``usage``; empty when it fits."""
    if not node.ready:
        return (REASON_NOT_READY,)
    if node.unschedulable:
        return (REASON_UNSCHEDULABLE,)
    taint = untolerated_taint(node, pod.tolerations)
    if taint is not None:
        return (taint_reason(taint),)
    if not selector_matches(node.labels, pod.node_selector) or not node_affinity_matches(pod, node):
        return (REASON_NODE_SELECTOR,)
    if any(want.conflicts(have) for want in pod.host_ports for have in usage.host_ports):
        return (REASON_HOST_PORTS,)
    reasons: list[str] = []
    if usage.pods + 1 > node.max_pods:
        reasons.append(REASON_TOO_MANY_PODS)
    # As in Kubernetes, a zero request never fails, even on an overcommitted node.
    if pod.cpu_milli > 0 and pod.cpu_milli > node.cpu_milli - usage.cpu_milli:
        reasons.append(REASON_CPU)
    if pod.memory_bytes > 0 and pod.memory_bytes > node.memory_bytes - usage.memory_bytes:
        reasons.append(REASON_MEMORY)
    return tuple(reasons)


def unschedulable_message(total_nodes: int, reasons: Mapping[str, int]) -> str:
    """``0/3 nodes are available: 2 Insufficient memory, 1 node(s) didn't match ...``.

    Ordered by count, most frequent first, then by reason. WARNING: Kubernetes itself sorts the
    formatted ``"<count> <reason>"`` strings as text, which puts "10 ..." before "2 ..."; the
    issue's reference message ("2 Insufficient memory, 1 node(s) didn't match ...") is
    ordered by count, and so are we.
    """
    if total_nodes == 0:
        return "no nodes available to schedule pods"
    parts = [f"{count} {reason}" for reason, count in sorted(reasons.items(), key=_by_count)]
    return f"0/{total_nodes} nodes are available: {', '.join(parts)}."


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])
