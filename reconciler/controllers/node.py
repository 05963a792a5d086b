"""The node controller: notices dead nodes by their heartbeat lease and moves their pods away.

Each node's agent (or hollow node) renews a lease through the API. This controller compares
the lease's ``renew_time`` with its own clock — Kubernetes' node lifecycle controller, cut down:

- lease older than ``grace_period_s`` (default 40 s): the node's ``Ready`` condition becomes
  ``Unknown`` (reason ``NodeStatusUnknown``), it gets the taint
  ``node.kubernetes.io/unreachable:NoExecute`` (the scheduler keeps new pods off it), and its
  pods' ``Ready`` conditions turn ``False`` (so Endpoints drop them at once);
- ``eviction_timeout_s`` (default 300 s) after it went Unknown, its pods are deleted — their
  ReplicaSets make replacements, which the scheduler puts elsewhere. A pod that tolerates the
  unreachable taint stays (for its ``tolerationSeconds``, when given);
- when the lease is renewed again the node turns ``Ready`` and loses the taint;
- pods bound to a Node that no longer exists (its manifest left Git) are deleted, as
  Kubernetes' pod garbage collector does, so their ReplicaSets replace them on live nodes —
  after ``orphan_grace_s`` (default 40 s) of the node missing from the API itself, not only
  from this controller's cache: a cache that lags a new Node must never cost its pods.

Leases are not watched: each node is re-examined when its lease would next go stale
(``requeue_after``), and on every Node event. :func:`assess` is the decision as a pure
function of the node, its lease time and the clock; ``reconcile`` reads, assesses, writes.

WARNING: the taint lives in ``spec.taints`` (as in Kubernetes), which Git also declares; the
sync from Git must keep taints with the ``node.kubernetes.io/`` prefix that it did not write.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from reconciler.api import ApiError, NotFound, now_utc
from reconciler.controllers.runtime import Controller, ControllerContext, Result
from schemas import Node, ObjectKey, Pod
from schemas.meta import Condition
from schemas.node import NodeStatus, Taint
from schemas.pod import PodStatus

__all__ = [
    "DEFAULT_EVICTION_TIMEOUT_S",
    "DEFAULT_GRACE_PERIOD_S",
    "DEFAULT_ORPHAN_GRACE_S",
    "UNREACHABLE_TAINT",
    "NodeAssessment",
    "NodeController",
    "assess",
    "eviction_deadline",
]

DEFAULT_GRACE_PERIOD_S = 40.0
DEFAULT_EVICTION_TIMEOUT_S = 300.0
DEFAULT_ORPHAN_GRACE_S = 40.0
UNREACHABLE_TAINT = Taint(key="node.kubernetes.io/unreachable", effect="NoExecute")
_UNKNOWN_REASON = "NodeStatusUnknown"
_UNKNOWN_MESSAGE = "Capstan agent stopped posting node status (heartbeat lease expired)."
_RENEWED_REASON = "NodeLeaseRenewed"
# Look a hair after the instant a lease goes stale, so the comparison has flipped by then.
_EPSILON_S = 0.001


@dataclass(frozen=True, slots=True)
class NodeAssessment:
    """What the lease says about a node at ``now``."""

    stale: bool
    """The lease (or, never renewed, the node's creation) is older than the grace period."""
    unknown_since: float | None
    """When the node went Unknown (its Ready transition time), if it is Unknown already."""
    recheck_after: float
    """Seconds until the verdict could change without a Node event (the lease going stale)."""


def _ready(node: Node) -> Condition | None:
    return node.status.condition("Ready") if node.status is not None else None


def _has_unreachable_taint(node: Node) -> bool:
    return any(
        t.key == UNREACHABLE_TAINT.key and t.effect == UNREACHABLE_TAINT.effect
        for t in node.spec.taints
    )


def assess(
    node: Node, *, renewed_at: float | None, now: float, grace_period_s: float
) -> NodeAssessment:
    """The verdict for ``node`` whose lease was last renewed at ``renewed_at`` (epoch s)."""
    created = node.metadata.creation_timestamp
    last = renewed_at if renewed_at is not None else (created.timestamp() if created else now)
    stale = now - last > grace_period_s
    ready = _ready(node)
    unknown_since = None
    if ready is not None and ready.status == "Unknown" and ready.reason == _UNKNOWN_REASON:
        stamp = ready.last_transition_time
        unknown_since = stamp.timestamp() if stamp is not None else now
    recheck = max(last + grace_period_s - now, 0.0) + _EPSILON_S
    return NodeAssessment(stale=stale, unknown_since=unknown_since, recheck_after=recheck)


def eviction_deadline(pod: Pod, *, unknown_since: float, eviction_timeout_s: float) -> float | None:
    """When a pod on an unreachable node is deleted; None if it tolerates that forever."""
    for toleration in pod.spec.tolerations:
        if toleration.tolerates(
            key=UNREACHABLE_TAINT.key, value=None, effect=UNREACHABLE_TAINT.effect
        ):
            if toleration.toleration_seconds is None:
                return None
            return unknown_since + max(toleration.toleration_seconds, 0)
    return unknown_since + eviction_timeout_s


class NodeController(Controller):
    name: ClassVar[str] = "node"
    workers: ClassVar[int] = 2
    resync_period_s: ClassVar[float | None] = 30.0

    def __init__(
        self,
        ctx: ControllerContext,
        *,
        grace_period_s: float = DEFAULT_GRACE_PERIOD_S,
        eviction_timeout_s: float = DEFAULT_EVICTION_TIMEOUT_S,
        orphan_grace_s: float = DEFAULT_ORPHAN_GRACE_S,
    ) -> None:
        super().__init__(ctx)
        self.grace_period_s = grace_period_s
        self.eviction_timeout_s = eviction_timeout_s
        self.orphan_grace_s = orphan_grace_s
        # When each missing node was first seen missing. Memory only: after a restart the
        # grace starts again, which only delays a collection.
        self._missing_since: dict[str, float] = {}
        self.nodes = self.watch_own(Node)
        # A pod event matters only when its node is gone (orphaned pods are collected); for
        # live nodes the verdict depends on the lease alone, read through the "node" index.
        self.pods = self.watch(Pod, self._orphaned_node)

    def _orphaned_node(self, pod: Pod) -> Iterable[ObjectKey]:
        node_name = pod.spec.node_name
        if node_name and self.nodes.get(node_name) is None:
            return (ObjectKey("Node", "", node_name),)
        return ()

    def reconcile(self, key: ObjectKey) -> Result | None:
        node = self.nodes.get(key.name)
        if node is None:
            return self._reconcile_missing(key.name)
        self._missing_since.pop(key.name, None)
        lease = self.api.get_node_lease(node.name)
        now = self.clock.time()
        verdict = assess(
            node,
            renewed_at=lease.renew_time.timestamp() if lease is not None else None,
            now=now,
            grace_period_s=self.grace_period_s,
        )
        if not verdict.stale:
            self._mark_reachable(node)
            return Result(requeue_after=verdict.recheck_after)
        if verdict.unknown_since is None:
            node = self._mark_unknown(node)
            unknown_since = now
        else:
            unknown_since = verdict.unknown_since
        if not _has_unreachable_taint(node):
            taints = [*node.spec.taints, UNREACHABLE_TAINT]
            self.api.update(
                node.model_copy(update={"spec": node.spec.model_copy(update={"taints": taints})})
            )
        next_eviction = self._handle_pods(node.name, unknown_since=unknown_since, now=now)
        # Keep looking: the lease may come back, and pending evictions fall due.
        recheck = min(self.grace_period_s, self.eviction_timeout_s) / 4
        if next_eviction is not None:
            recheck = min(recheck, max(next_eviction - now, 0.0) + _EPSILON_S)
        return Result(requeue_after=recheck)

    # --- writes ----------------------------------------------------------------------------

    def _mark_unknown(self, node: Node) -> Node:
        status = node.status or NodeStatus()
        condition = Condition(
            type="Ready",
            status="Unknown",
            reason=_UNKNOWN_REASON,
            message=_UNKNOWN_MESSAGE,
            last_transition_time=now_utc(self.clock),
        )
        others = [c for c in status.conditions if c.type != "Ready"]
        updated = status.model_copy(update={"conditions": [*others, condition]})
        return self.api.update_status(node.model_copy(update={"status": updated}))

    def _mark_reachable(self, node: Node) -> None:
        ready = _ready(node)
        if ready is not None and ready.status == "Unknown" and ready.reason == _UNKNOWN_REASON:
            status = node.status or NodeStatus()
            condition = Condition(
                type="Ready",
                status="True",
                reason=_RENEWED_REASON,
                message="node heartbeat lease renewed",
                last_transition_time=now_utc(self.clock),
            )
            others = [c for c in status.conditions if c.type != "Ready"]
            updated = status.model_copy(update={"conditions": [*others, condition]})
            node = self.api.update_status(node.model_copy(update={"status": updated}))
        if _has_unreachable_taint(node):
            taints = [
                t
                for t in node.spec.taints
                if (t.key, t.effect) != (UNREACHABLE_TAINT.key, UNREACHABLE_TAINT.effect)
            ]
            self.api.update(
                node.model_copy(update={"spec": node.spec.model_copy(update={"taints": taints})})
            )

    def _handle_pods(self, node_name: str, *, unknown_since: float, now: float) -> float | None:
        """Mark the node's pods not ready; delete those past their deadline. Returns the next
        deadline still to come."""
        upcoming: list[float] = []
        for pod in self._pods_on(node_name):
            if pod.metadata.deletion_timestamp is not None:
                continue
            deadline = eviction_deadline(
                pod, unknown_since=unknown_since, eviction_timeout_s=self.eviction_timeout_s
            )
            if deadline is not None and now >= deadline:
                self._evict(pod, node_name)
                continue
            if deadline is not None:
                upcoming.append(deadline)
            self._mark_pod_not_ready(pod)
        return min(upcoming, default=None)

    def _node_exists(self, node_name: str) -> bool:
        """Asked of the API, not the cache: only a Node gone from the store orphans its pods."""
        try:
            self.api.get(Node, node_name)
        except NotFound:
            return False
        return True

    def _reconcile_missing(self, node_name: str) -> Result | None:
        if not list(self._pods_on(node_name)):
            self._missing_since.pop(node_name, None)
            return None
        if self._node_exists(node_name):
            return None  # the cache is behind; the Node's own event brings us back
        now = self.clock.time()
        since = self._missing_since.setdefault(node_name, now)
        if now - since < self.orphan_grace_s:
            return Result(requeue_after=since + self.orphan_grace_s - now + _EPSILON_S)
        self._collect_orphans(node_name)
        self._missing_since.pop(node_name, None)
        return None

    def _collect_orphans(self, node_name: str) -> None:
        """Delete the pods still bound to a node that no longer exists."""
        for pod in list(self._pods_on(node_name)):
            try:
                self.api.delete(Pod, pod.name, namespace=pod.namespace)
            except NotFound:
                continue
            try:
                self.api.record_event(
                    pod,
                    reason="PodGarbageCollected",
                    message=f"Deleting pod {pod.namespace}/{pod.name}: its node {node_name} "
                    "no longer exists",
                    type="Warning",
                    source="node-controller",
                )
            except ApiError:
                continue

    def _pods_on(self, node_name: str) -> Iterable[Pod]:
        return self.pods.by_index("node", node_name)

    def _evict(self, pod: Pod, node_name: str) -> None:
        try:
            self.api.delete(Pod, pod.name, namespace=pod.namespace)
        except NotFound:
            return
        try:
            self.api.record_event(
                pod,
                reason="NodeControllerEviction",
                message=f"Deleting pod {pod.namespace}/{pod.name} from unreachable node "
                f"{node_name}",
                type="Warning",
                source="node-controller",
            )
        except ApiError:
            # The eviction happened; a lost event must not make the reconcile retry it.
            return

    def _mark_pod_not_ready(self, pod: Pod) -> None:
        status = pod.status or PodStatus()
        ready = status.condition("Ready")
        if ready is None or ready.status != "True":
            return
        condition = ready.model_copy(
            update={
                "status": "False",
                "reason": "NodeUnreachable",
                "message": "the pod's node stopped posting status",
                "last_transition_time": now_utc(self.clock),
            }
        )
        others = [c for c in status.conditions if c.type != "Ready"]
        updated = status.model_copy(update={"conditions": [*others, condition]})
        try:
            self.api.update_status(pod.model_copy(update={"status": updated}))
        except NotFound:
            return
