"""The replicaset controller: keeps the number of pods of each ReplicaSet at ``spec.replicas``.

Watches ReplicaSets and Pods (a pod event wakes its controlling ReplicaSet); creates pods from
the template (``<rs>-<5 random chars>``, controller ownerReference) and deletes surplus pods,
worst first: unscheduled, then not ready, then not yet available, then youngest. Writes status
counts from the pods it sees (ready = Ready condition True; available = ready for
``minReadySeconds``). Sits between the deployment controller (which sets ``spec.replicas``) and
the scheduler (which binds the pods it creates).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from reconciler.api import AlreadyExists, Conflict, Forbidden, NotFound
from reconciler.controllers._pods import (
    active,
    controlled_by,
    is_available,
    is_ready,
    owner_keys,
    ready_since,
    until_available,
)
from reconciler.controllers.runtime import Controller, ControllerContext, Result, TransientError
from schemas import (
    ObjectKey,
    ObjectMeta,
    Pod,
    ReplicaSet,
    ReplicaSetStatus,
)

__all__ = ["ReplicaSetController", "pod_from_template"]


def pod_from_template(rs: ReplicaSet) -> dict[str, Any]:
    """The manifest of a new pod of ``rs``. A dict, not a :class:`Pod`: the name is left to
    ``generateName`` (``<rs>-<5 random chars>``), which the API fills in."""
    template = rs.spec.template
    meta = ObjectMeta(
        name=None,
        generate_name=f"{rs.name}-",
        namespace=rs.namespace,
        labels=dict(template.metadata.labels),
        annotations=dict(template.metadata.annotations),
        owner_references=[controlled_by(rs)],
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta.model_dump(mode="json", by_alias=True, exclude_none=True),
        "spec": template.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


_Rank = tuple[int, int, int, float, float]


def _deletion_rank(pod: Pod, min_ready_seconds: int, now: float) -> _Rank:
    # Lowest rank is deleted first. The order matters: a pod no node has taken costs nothing
    # to drop, a not-ready pod serves nobody, and among serving pods the newest has the least
    # proven record (Kubernetes' ActivePods ordering, simplified).
    since = ready_since(pod)
    created = pod.metadata.creation_timestamp
    return (
        1 if pod.spec.node_name else 0,
        1 if is_ready(pod) else 0,
        1 if is_available(pod, min_ready_seconds, now) else 0,
        -(since.timestamp() if since else now),
        -(created.timestamp() if created else now),
    )


class ReplicaSetController(Controller):
    name: ClassVar[str] = "replicaset"
    workers: ClassVar[int] = 4

    def __init__(self, ctx: ControllerContext, *, burst: int = 500, write_threads: int = 8):
        super().__init__(ctx)
        self.replicasets = self.watch_own(ReplicaSet)
        self.pods = self.watch(Pod, lambda pod: owner_keys(pod, "ReplicaSet"))
        self._burst = burst
        self._pool = ThreadPoolExecutor(write_threads, thread_name_prefix="rs-writes")

    def stop(self) -> None:
        super().stop()
        self._pool.shutdown(wait=True)

    def reconcile(self, key: ObjectKey) -> Result | None:
        rs = self.replicasets.get(key.name, namespace=key.namespace)
        if rs is None or rs.metadata.deletion_timestamp is not None:
            self.forget_writes(key)
            return None
        self.await_own_writes(key)
        pods = [p for p in self.pods.by_index("owner", rs.metadata.uid or "") if active(p)]
        diff = len(pods) - rs.spec.replicas
        if diff < 0:
            self._create(rs, min(-diff, self._burst))
        elif diff > 0:
            now = self.clock.time()
            pods.sort(key=lambda p: _deletion_rank(p, rs.spec.min_ready_seconds, now))
            self._delete(key, pods[:diff])
            pods = pods[diff:]
        return self._sync_status(rs, pods)

    def _create(self, rs: ReplicaSet, count: int) -> None:
        template = pod_from_template(rs)
        refused: list[Forbidden] = []

        def create_one(_: int) -> int:
            try:
                return int(self.api.create(template).metadata.resource_version or 0)
            except AlreadyExists:
                return 0
            except Forbidden as exc:
                # The namespace's Pod Security level (tightened after this ReplicaSet was
                # admitted) or a terminating namespace: say so where users look, retry later.
                refused.append(exc)
                return 0

        revisions = list(self._pool.map(create_one, range(count)))
        self.note_write(rs.key, self.pods, max(revisions, default=0))
        if refused:
            self.api.record_event(
                rs,
                reason="FailedCreate",
                type="Warning",
                message=f"Error creating: {refused[0].message}",
                source="replicaset-controller",
            )
            raise TransientError(refused[0].message)

    def _delete(self, key: ObjectKey, victims: list[Pod]) -> None:
        def delete_one(pod: Pod) -> int:
            try:
                deleted = self.api.delete(Pod, pod.name, namespace=pod.namespace)
            except NotFound:
                return 0
            return int(deleted.metadata.resource_version or 0)

        revisions = list(self._pool.map(delete_one, victims))
        self.note_write(key, self.pods, max(revisions, default=0))

    def _sync_status(self, rs: ReplicaSet, pods: list[Pod]) -> Result | None:
        now = self.clock.time()
        min_ready = rs.spec.min_ready_seconds
        waits = [until_available(p, min_ready, now) for p in pods]
        labels = rs.spec.template.metadata.labels
        status = ReplicaSetStatus(
            replicas=len(pods),
            fully_labeled_replicas=sum(
                all(p.labels.get(k) == v for k, v in labels.items()) for p in pods
            ),
            ready_replicas=sum(is_ready(p) for p in pods),
            available_replicas=sum(w == 0.0 for w in waits),
            observed_generation=rs.metadata.generation,
            conditions=rs.status.conditions if rs.status else [],
        )
        if status != rs.status:
            try:
                self._write_status(rs, status)
            except NotFound:
                return None
        pending = [w for w in waits if w is not None and w > 0]
        return Result(requeue_after=min(pending)) if pending else None

    def _write_status(self, rs: ReplicaSet, status: ReplicaSetStatus) -> None:
        try:
            self.api.update_status(rs.model_copy(update={"status": status}))
        except Conflict:
            # Usually the deployment controller rescaled it since our cache read. The counts
            # come from the pods, not the spec, so they hold for the fresh copy too — unless
            # its generation moved, in which case that spec change's event brings us back.
            fresh = self.api.get(ReplicaSet, rs.name, namespace=rs.namespace)
            if fresh.metadata.generation == rs.metadata.generation:
                self.api.update_status(fresh.model_copy(update={"status": status}))
