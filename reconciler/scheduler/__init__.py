"""The scheduler: binds each unscheduled pod to a node (filter, score, bind).

Offers the pure placement core — plain data (:class:`NodeInfo`, :class:`PodInfo`, built from
API objects by :func:`node_info` / :func:`pod_info`), the incremental :class:`ClusterState`,
:func:`select_node` for one pod and :func:`plan` for a dry run over many (``capstan plan``) —
and :class:`Scheduler`, the controller on top (keyed by pod, highest priority first): pod and
node watches through ``reconciler.api`` feed the state, each pending pod is placed, assumed
and bound.
"""

from reconciler.scheduler.bind import SCHEDULER_NAME, Scheduler
from reconciler.scheduler.filters import (
    REASON_CPU,
    REASON_HOST_PORTS,
    REASON_MEMORY,
    REASON_NODE_SELECTOR,
    REASON_NOT_READY,
    REASON_TOO_MANY_PODS,
    REASON_UNSCHEDULABLE,
    NodeUsage,
    filter_reasons,
    taint_reason,
    unschedulable_message,
)
from reconciler.scheduler.nodeinfo import (
    HostPort,
    NodeInfo,
    NodeName,
    PodInfo,
    PodKey,
    node_info,
    pod_info,
    pod_key,
)
from reconciler.scheduler.placement import (
    Placement,
    PlanResult,
    Unschedulable,
    plan,
    select_node,
)
from reconciler.scheduler.scores import MAX_NODE_SCORE, ScoreWeights, least_allocated, spread
from reconciler.scheduler.state import ClusterState, PlacedPod

__all__ = [
    "MAX_NODE_SCORE",
    "REASON_CPU",
    "REASON_HOST_PORTS",
    "REASON_MEMORY",
    "REASON_NODE_SELECTOR",
    "REASON_NOT_READY",
    "REASON_TOO_MANY_PODS",
    "REASON_UNSCHEDULABLE",
    "SCHEDULER_NAME",
    "ClusterState",
    "HostPort",
    "NodeInfo",
    "NodeName",
    "NodeUsage",
    "PlacedPod",
    "Placement",
    "PlanResult",
    "PodInfo",
    "PodKey",
    "Scheduler",
    "ScoreWeights",
    "Unschedulable",
    "filter_reasons",
    "least_allocated",
    "node_info",
    "plan",
    "pod_info",
    "pod_key",
    "select_node",
    "spread",
    "taint_reason",
    "unschedulable_message",
]
