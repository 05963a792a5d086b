"""The live scheduler: watch pods and nodes, place each pending pod, assume it, bind it.

A :class:`~reconciler.controllers.runtime.Controller` keyed by pod over the pure core
(``placement.select_node`` on a ``ClusterState``), run by the controller manager. Data flow::

    Pod/Node informers ──► ClusterState (bound pods, nodes)   pending pod keys ──► work queue
    work queue (by priority) ──► reconcile: select_node ──► assume ──► bind pool ──► Api.bind
                         └──► Unschedulable: PodScheduled=False + Event, parked

Like kube-scheduler, a chosen pod is *assumed* on its node before the bind write returns, so
the next pod already sees it; binds run on a small thread pool (the store group-commits
concurrent writers); a failed bind *forgets* the pod and retries it with backoff. A pod that
fits nowhere is *parked*: it is tried again when the cluster changes in a way that could help
(a node added or changed, a placed pod deleted or finished) and, as a safety net, after
``unschedulable_retry_s`` — never in a hot loop. Its own status write does not wake it.
Pods go by priority (``spec.priority``, else the value of their ``priorityClassName``'s
PriorityClass, else the globalDefault class's, else 0): the work queue hands out the
highest-priority ready pod first, and a pod that fits nowhere preempts — deletes, with an
Event ``Preempted`` — the fewest lower-priority pods of one node that make room (unless its
preemptionPolicy is Never); it is placed once they are gone.
A pod that mounts a PersistentVolumeClaim bound to a node may only go to that node; a claim
not yet bound is bound to the node its first pod is bound to.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor

from reconciler.api import ApiError, Conflict, NotFound, now_utc
from reconciler.controllers.runtime import Controller, ControllerContext, InformerEvent, Result
from reconciler.scheduler.nodeinfo import (
    HOSTNAME_LABEL,
    NodeName,
    PodInfo,
    PodKey,
    node_info,
    pod_info,
    pod_key,
)
from reconciler.scheduler.placement import Placement, Unschedulable, select_node
from reconciler.scheduler.scores import ScoreWeights
from reconciler.scheduler.state import ClusterState, PlacedPod
from schemas import Node, ObjectKey, Pod, PriorityClass
from schemas.meta import Condition
from schemas.pod import PodStatus
from schemas.storage import (
    BOUND_NODE_ANNOTATION,
    PersistentVolumeClaim,
    PersistentVolumeClaimStatus,
)

__all__ = ["SCHEDULER_NAME", "Scheduler"]

_log = logging.getLogger(__name__)

SCHEDULER_NAME = "capstan-scheduler"
_TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


class Scheduler(Controller):
    """Binds every pod without ``spec.nodeName`` to a node. A controller keyed by pod: its
    work queue hands out the highest-priority pod first; one worker places (placement reads
    and assumes under one lock, as kube-scheduler's single scheduling cycle), binds run on a
    pool of their own."""

    name = "scheduler"
    workers = 1
    # Parked pods come back on their own timer (``unschedulable_retry_s``) and on cluster
    # changes; bound pods need nothing: no periodic resync.
    resync_period_s = None

    def __init__(
        self,
        ctx: ControllerContext,
        *,
        rng: random.Random | None = None,
        weights: ScoreWeights = ScoreWeights(),  # noqa: B008 - frozen, shared safely
        bind_workers: int = 8,
        unschedulable_retry_s: float = 60.0,
    ) -> None:
        super().__init__(ctx, queue_order=self._queue_order)
        self.state = ClusterState()
        self._rng = rng
        self._weights = weights
        self._retry_s = unschedulable_retry_s
        # Guards state and _parked: informer threads, the worker and bind threads all touch them.
        self._lock = threading.Lock()
        self._parked: set[ObjectKey] = set()
        # Threads start lazily, on the first bind.
        self._binds = ThreadPoolExecutor(bind_workers, thread_name_prefix="scheduler-bind")
        # Pods preempting, and the pods they are waiting on to be gone (guarded by _lock).
        self._preempting: dict[ObjectKey, frozenset[PodKey]] = {}
        self.claims = ctx.informers.informer(PersistentVolumeClaim)
        self.priority_classes = ctx.informers.informer(PriorityClass)
        self.nodes = self.watch_events(Node, self._on_node)
        self.pods = self.watch_events(Pod, self._on_pod)

    # --- lifecycle and the reconcile contract -------------------------------------------------

    def stop(self) -> None:
        super().stop()
        self._binds.shutdown(wait=True)

    def reconcile(self, key: ObjectKey) -> Result | None:
        """Place the pod ``key`` names and start its bind; a pod that fits nowhere is parked
        and looked at again after ``unschedulable_retry_s`` (or sooner, on a cluster change).
        While a bind of the pod is in flight its failures count on (the bind forgets them
        when it succeeds), so a bind that keeps failing backs off further each time."""
        outcome = self.schedule(key)
        if isinstance(outcome, Unschedulable):
            return Result(requeue_after=self._retry_s)
        with self._lock:
            placed = self.state.placed(pod_key(key.namespace, key.name))
        return Result(forget=placed is None or not placed.assumed)

    def _queue_order(self, key: ObjectKey) -> tuple[int, str, str, str]:
        pod = self.pods.get(key.name, namespace=key.namespace)
        if pod is None:
            return (0, "", key.namespace or "", key.name)
        created = pod.metadata.creation_timestamp
        return (-self._priority(pod), str(created or ""), key.namespace or "", key.name)

    # --- priority: spec.priority, else its PriorityClass --------------------------------

    def _priority(self, pod: Pod) -> int:
        """The pod's priority as Kubernetes' Priority admission resolves it."""
        if pod.spec.priority is not None:
            return pod.spec.priority
        name = pod.spec.priority_class_name
        if name:
            found = self.priority_classes.get(name)
            return found.value if found is not None else 0
        defaults = [c.value for c in self.priority_classes.list() if c.global_default]
        return max(defaults, default=0)

    def _info(self, pod: Pod) -> PodInfo:
        policy = pod.spec.preemption_policy
        if policy is None and pod.spec.priority_class_name:
            found = self.priority_classes.get(pod.spec.priority_class_name)
            policy = found.preemption_policy if found is not None else None
        return dataclasses.replace(
            pod_info(pod), priority=self._priority(pod), preempts=policy != "Never"
        )

    # --- events: keep the state current, wake pods -----------------------------------------

    def _on_node(self, event: InformerEvent[Node]) -> None:
        with self._lock:
            if event.type == "DELETED":
                self.state.remove_node(node_info(event.object).name)
                return
            if self.state.upsert_node(node_info(event.object)):
                self._unpark_locked()

    def _on_pod(self, event: InformerEvent[Pod]) -> None:
        pod = event.object
        key = pod_key(pod.namespace, pod.name)
        if event.type == "DELETED":
            with self._lock:
                freed = self.state.placed(key) is not None
                self.state.remove_pod(key)
                self._parked.discard(pod.key)
                if freed:
                    self._unpark_locked()
            return
        if pod.spec.node_name:
            finished = pod.status is not None and pod.status.phase in _TERMINAL_PHASES
            node = NodeName(pod.spec.node_name)
            with self._lock:
                if finished:
                    if self.state.placed(key) is not None:
                        self.state.remove_pod(key)
                        self._unpark_locked()
                elif not self.state.confirm(key, node):
                    self.state.add_pod(self._info(pod))
            return
        if pod.metadata.deletion_timestamp is not None:
            return
        with self._lock:
            # Our own PodScheduled=False write comes back as an update: it must not wake
            # the pod, or an unschedulable pod would spin.
            if pod.key in self._parked and event.old is not None and event.old.spec == pod.spec:
                return
        self.queue.add(pod.key)

    def _unpark_locked(self) -> None:
        # All at once: the loop then takes them by priority.
        self.queue.add_all(self._parked)
        self._parked.clear()

    # --- one pod ---------------------------------------------------------------------------

    def schedule(self, key: ObjectKey) -> Placement | Unschedulable | None:
        """Place the pod ``key`` names (read from the cache now); None when there is nothing
        to do (gone, bound, terminating, or its bind already in flight)."""
        pod = self.pods.get(key.name, namespace=key.namespace)
        if (
            pod is None
            or pod.spec.node_name
            or pod.metadata.deletion_timestamp is not None
            or (pod.status is not None and pod.status.phase in _TERMINAL_PHASES)
        ):
            return None
        info = self._info(pod)
        pinned = self._claim_node(pod)
        if pinned is not None:
            # A claim's data lives on one node: the pod may only go there.
            info = dataclasses.replace(
                info, node_selector=(*info.node_selector, (HOSTNAME_LABEL, pinned))
            )
        with self._lock:
            if self.state.placed(info.key) is not None:
                return None
            outcome = select_node(self.state, info, rng=self._rng, weights=self._weights)
            victims: tuple[str, list[PlacedPod]] | None = None
            if isinstance(outcome, Placement):
                self.state.assume(info, outcome.node)
                self._parked.discard(key)
                self._preempting.pop(key, None)
            else:
                self._parked.add(key)
                victims = self._choose_victims_locked(key, info)
        if isinstance(outcome, Placement):
            self._binds.submit(self._bind, pod, outcome.node)
        else:
            self._binds.submit(self._report_unschedulable, pod, outcome)
            if victims is not None:
                self._binds.submit(self._preempt, pod, *victims)
        return outcome

    # --- preemption --------------------------------------------------------------------------

    def _choose_victims_locked(
        self, key: ObjectKey, info: PodInfo
    ) -> tuple[str, list[PlacedPod]] | None:
        if not info.preempts:
            return None
        waiting = self._preempting.get(key)
        if waiting and any(self.state.placed(victim) is not None for victim in waiting):
            return None  # its earlier victims are still terminating: room is on the way
        found = self.state.preemption_victims(info)
        if found is None:
            self._preempting.pop(key, None)
            return None
        node, victims = found
        self._preempting[key] = frozenset(v.pod.key for v in victims)
        return node, victims

    def _preempt(self, preemptor: Pod, node: str, victims: list[PlacedPod]) -> None:
        """Delete ``victims`` (gracefully, as an eviction) so ``preemptor`` fits on ``node``."""
        for victim in victims:
            namespace, name = victim.pod.key.split("/", 1)
            message = (
                f"Preempted by pod {preemptor.namespace}/{preemptor.name} "
                f"(priority {self._priority(preemptor)}) on node {node}"
            )
            try:
                current = self.api.get(Pod, name, namespace=namespace)
                self.api.record_event(
                    current, reason="Preempted", message=message, source=SCHEDULER_NAME
                )
                self.api.delete(Pod, name, namespace=namespace)
            except NotFound:
                continue
            except ApiError as exc:
                _log.warning("scheduler: preempting %s/%s: %s", namespace, name, exc)

    def _bind(self, pod: Pod, node: str) -> None:
        key = pod_key(pod.namespace, pod.name)
        try:
            self.api.bind(pod, node)
        except NotFound:
            with self._lock:
                self.state.forget(key)
        except Conflict as exc:
            # Bound by someone else, or changing under us: forget, and look again once the
            # cache has caught up (a bound pod is then simply skipped).
            _log.info("scheduler: bind %s to %s: %s", pod.key, node, exc)
            with self._lock:
                self.state.forget(key)
            self.queue.retry_after(pod.key, self.queue.backoff(pod.key))
        except ApiError as exc:
            delay = self.queue.backoff(pod.key)
            _log.warning(
                "scheduler: bind %s to %s failed: %s (retry in %.3fs)", pod.key, node, exc, delay
            )
            with self._lock:
                self.state.forget(key)
            self.queue.retry_after(pod.key, delay)
        else:
            self.queue.forget(pod.key)
            self._bind_claims(pod, node)

    # --- PersistentVolumeClaims: bound to the node of their first pod ----------------------

    def _claim_names(self, pod: Pod) -> list[str]:
        return [
            v.persistent_volume_claim.claim_name
            for v in pod.spec.volumes
            if v.persistent_volume_claim is not None
        ]

    def _claim_node(self, pod: Pod) -> str | None:
        """The node a claim of ``pod`` is bound to (the first one found), if any."""
        for name in self._claim_names(pod):
            claim = self.claims.get(name, namespace=pod.namespace)
            if claim is not None and claim.bound_node:
                return claim.bound_node
        return None

    def _bind_claims(self, pod: Pod, node: str) -> None:
        """Record ``node`` on each claim of ``pod`` not bound yet (its Docker volume is made
        there when the pod starts)."""
        for name in self._claim_names(pod):
            for _attempt in range(5):
                try:
                    self._bind_claim(name, pod.namespace, node)
                    break
                except Conflict:
                    continue  # written meanwhile (its status, labels): read it again
                except ApiError as exc:
                    _log.warning(
                        "scheduler: binding claim %s/%s to %s: %s", pod.namespace, name, node, exc
                    )
                    break

    def _bind_claim(self, name: str, namespace: str, node: str) -> None:
        claim = self.api.get(PersistentVolumeClaim, name, namespace=namespace)
        if claim.bound_node:
            return
        annotations = {**claim.metadata.annotations, BOUND_NODE_ANNOTATION: node}
        meta = claim.metadata.model_copy(update={"annotations": annotations})
        volume = claim.spec.volume_name or f"{node}/{claim.name}"
        spec = claim.spec.model_copy(update={"volume_name": volume})
        bound = self.api.update(claim.model_copy(update={"metadata": meta, "spec": spec}))
        status = (bound.status or PersistentVolumeClaimStatus()).model_copy(
            update={"phase": "Bound", "access_modes": bound.spec.access_modes}
        )
        self.api.update_status(bound.model_copy(update={"status": status}))

    def _report_unschedulable(self, pod: Pod, outcome: Unschedulable) -> None:
        message = outcome.message
        status = pod.status or PodStatus()
        old = status.condition("PodScheduled")
        if old is None or (old.status, old.reason, old.message) != (
            "False",
            "Unschedulable",
            message,
        ):
            since = (
                old.last_transition_time
                if old is not None and old.status == "False"
                else now_utc(self.clock)
            )
            condition = Condition(
                type="PodScheduled",
                status="False",
                reason="Unschedulable",
                message=message,
                last_transition_time=since,
            )
            conditions = [c for c in status.conditions if c.type != "PodScheduled"]
            updated = status.model_copy(update={"conditions": [*conditions, condition]})
            try:
                self.api.update_status(pod.model_copy(update={"status": updated}))
            except (Conflict, NotFound):
                return  # changed or gone: the next attempt reads it again
            except ApiError as exc:
                _log.warning("scheduler: status of %s: %s", pod.key, exc)
                return
        try:
            self.api.record_event(
                pod,
                reason="FailedScheduling",
                message=message,
                type="Warning",
                source=SCHEDULER_NAME,
            )
        except ApiError as exc:
            _log.warning("scheduler: event for %s: %s", pod.key, exc)
