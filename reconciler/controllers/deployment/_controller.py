"""The deployment controller's loop: watches, the ReplicaSet writes, history and status.

The strategies it calls live beside it (``rolling.py``, ``recreate.py``); the package
docstring says what the controller does as a whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from reconciler.api import AlreadyExists, Conflict, NotFound, now_utc
from reconciler.controllers._pods import (
    active,
    controlled_by,
    controller_ref,
    deployment_keys_of_pod,
    owner_keys,
)
from reconciler.controllers.deployment._view import Counts, PodView
from reconciler.controllers.deployment.recreate import recreate
from reconciler.controllers.deployment.rolling import rolling_update
from reconciler.controllers.runtime import Controller, ControllerContext, Result, TransientError
from reconciler.workloads.deployment import (
    HASH_LABEL,
    REVISION_ANNOTATION,
    pod_template_hash,
    revision_of,
    template_doc,
)
from schemas import (
    Condition,
    Deployment,
    DeploymentStatus,
    LabelSelector,
    ObjectKey,
    ObjectMeta,
    Pod,
    ReplicaSet,
    ReplicaSetSpec,
    resolve_int_or_percent,
)

__all__ = [
    "HASH_LABEL",
    "REVISION_ANNOTATION",
    "DeploymentController",
    "pod_template_hash",
    "revision_of",
]


def _hash(d: Deployment) -> str:
    return pod_template_hash(d.spec.template, d.status.collision_count if d.status else None)


#: Deployment annotations a ReplicaSet does not take over (Kubernetes' annotationsToSkip),
#: besides Capstan's own (``capstan.io/...``: the commit and source of the Deployment).
_NOT_COPIED = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


def _copied_annotations(d: Deployment) -> dict[str, str]:
    """The Deployment's annotations its new ReplicaSet carries too (``kubernetes.io/
    change-cause`` among them: ``kubectl rollout history`` reads it from the ReplicaSets)."""
    return {
        k: v
        for k, v in d.metadata.annotations.items()
        if k not in _NOT_COPIED and not k.startswith("capstan.io/")
    }


class DeploymentController(Controller):
    name: ClassVar[str] = "deployment"
    workers: ClassVar[int] = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.deployments = self.watch_own(Deployment)
        self.replicasets = self.watch(ReplicaSet, lambda rs: owner_keys(rs, "Deployment"))
        self.pods = self.watch(Pod, lambda pod: deployment_keys_of_pod(self.replicasets, pod))

    # -- reconcile ---------------------------------------------------------------------------

    def reconcile(self, key: ObjectKey) -> Result | None:
        d = self.deployments.get(key.name, namespace=key.namespace)
        if d is None or d.metadata.deletion_timestamp is not None:
            self.forget_writes(key)
            return None
        self.await_own_writes(key)
        owned = self.replicasets.by_index("owner", d.metadata.uid or "")
        want = template_doc(d.spec.template)
        new_rs = next((rs for rs in owned if template_doc(rs.spec.template) == want), None)
        old = sorted((rs for rs in owned if rs is not new_rs), key=revision_of)
        view = PodView(
            {
                rs.metadata.uid or "": [
                    p for p in self.pods.by_index("owner", rs.metadata.uid or "") if active(p)
                ]
                for rs in owned
            },
            d.spec.min_ready_seconds,
            self.clock.time(),
        )
        if d.spec.paused:
            scaled = self._scale_paused(d, new_rs, old)
            return self._sync_status(d, new_rs, old, view, progressed=scaled)
        if d.spec.strategy.type == "Recreate":
            progressed = recreate(self, d, new_rs, old, view)
        else:
            progressed = rolling_update(self, d, new_rs, old, view)
        if not progressed:
            self._cleanup(d, old, view)
        current = self._current_new(d, new_rs)
        return self._sync_status(d, current, old, view, progressed=progressed)

    def _current_new(self, d: Deployment, new_rs: ReplicaSet | None) -> ReplicaSet | None:
        if new_rs is not None:
            return self.replicasets.get(new_rs.name, namespace=new_rs.namespace) or new_rs
        hashed = f"{d.name}-{_hash(d)}"
        return self.replicasets.get(hashed, namespace=d.namespace)

    # -- paused ------------------------------------------------------------------------------

    def _scale_paused(
        self, d: Deployment, new_rs: ReplicaSet | None, old: list[ReplicaSet]
    ) -> bool:
        """A paused Deployment does not roll, but a replica change still applies: spread over
        the ReplicaSets that have replicas, in proportion, the rounding going to the newest
        (Kubernetes' proportional scaling)."""
        sets = [*([new_rs] if new_rs else []), *old]
        active = [rs for rs in sets if rs.spec.replicas > 0]
        total = sum(rs.spec.replicas for rs in active)
        target = d.spec.replicas
        if total == target:
            return False
        if not active:
            if not sets:
                return False
            self.scale(d, new_rs or old[-1], target)
            return True
        shares = {rs.metadata.uid: rs.spec.replicas * target // total for rs in active}
        newest = max(active, key=revision_of)
        shares[newest.metadata.uid] += target - sum(shares.values())
        for rs in active:
            if shares[rs.metadata.uid] != rs.spec.replicas:
                self.scale(d, rs, shares[rs.metadata.uid])
        return True

    # -- ReplicaSet writes -------------------------------------------------------------------

    def ensure_new(
        self, d: Deployment, new_rs: ReplicaSet | None, old: list[ReplicaSet], *, replicas: int
    ) -> ReplicaSet:
        """The new ReplicaSet, created if missing; a reused one gets the next revision."""
        max_old = max((revision_of(rs) for rs in old), default=0)
        next_revision = max_old + 1
        copied = _copied_annotations(d)
        if new_rs is not None:
            updates: dict[str, Any] = {}
            annotations = {**new_rs.metadata.annotations, **copied}
            if revision_of(new_rs) <= max_old:
                annotations[REVISION_ANNOTATION] = str(next_revision)
            if annotations != new_rs.metadata.annotations:
                updates["metadata"] = new_rs.metadata.model_copy(
                    update={"annotations": annotations}
                )
            if new_rs.spec.min_ready_seconds != d.spec.min_ready_seconds:
                updates["spec"] = new_rs.spec.model_copy(
                    update={"min_ready_seconds": d.spec.min_ready_seconds}
                )
            if updates:
                new_rs = self._write(d, self.api.update(new_rs.model_copy(update=updates)))
            self._annotate_deployment(d, revision_of(new_rs))
            return new_rs
        template_hash = _hash(d)
        labels = {**d.spec.template.metadata.labels, HASH_LABEL: template_hash}
        template = d.spec.template.model_copy(
            update={"metadata": d.spec.template.metadata.model_copy(update={"labels": labels})}
        )
        selector = LabelSelector(
            match_labels={**d.spec.selector.match_labels, HASH_LABEL: template_hash},
            match_expressions=d.spec.selector.match_expressions,
        )
        rs = ReplicaSet(
            metadata=ObjectMeta(
                name=f"{d.name}-{template_hash}",
                namespace=d.namespace,
                labels=labels,
                annotations={**copied, REVISION_ANNOTATION: str(next_revision)},
                owner_references=[controlled_by(d)],
            ),
            spec=ReplicaSetSpec(
                replicas=replicas,
                min_ready_seconds=d.spec.min_ready_seconds,
                selector=selector,
                template=template,
            ),
        )
        try:
            created = self._write(d, self.api.create(rs))
        except AlreadyExists as exc:
            existing = self.api.get(ReplicaSet, rs.name, namespace=rs.namespace)
            owner = controller_ref(existing)
            if owner is not None and owner.uid == d.metadata.uid:
                # Ours; the cache had not caught up. The next reconcile finds it there.
                raise TransientError(f"replicaset {rs.name} is not in the cache yet") from exc
            # Someone else's object holds the name: rehash with a bumped collision count.
            status = d.status or DeploymentStatus()
            self.api.update_status(
                d.model_copy(
                    update={
                        "status": status.model_copy(
                            update={"collision_count": (status.collision_count or 0) + 1}
                        )
                    }
                )
            )
            raise TransientError(f"replicaset name {rs.name} is taken; rehashing", delay=0) from exc
        self.record_event(
            d, reason="ScalingReplicaSet", message=f"Scaled up replica set {rs.name} to {replicas}"
        )
        self._annotate_deployment(d, next_revision)
        return created

    def scale(self, d: Deployment, rs: ReplicaSet, replicas: int) -> ReplicaSet:
        direction = "up" if replicas > rs.spec.replicas else "down"
        scaled = self._write(
            d,
            self.api.update(
                rs.model_copy(update={"spec": rs.spec.model_copy(update={"replicas": replicas})})
            ),
        )
        self.record_event(
            d,
            reason="ScalingReplicaSet",
            message=f"Scaled {direction} replica set {rs.name} to {replicas}",
        )
        return scaled

    def _write(self, d: Deployment, rs: ReplicaSet) -> ReplicaSet:
        self.note_write(d.key, self.replicasets, int(rs.metadata.resource_version or 0))
        return rs

    def _annotate_deployment(self, d: Deployment, revision: int) -> None:
        if d.metadata.annotations.get(REVISION_ANNOTATION) == str(revision):
            return
        annotations = {**d.metadata.annotations, REVISION_ANNOTATION: str(revision)}
        self.api.update(
            d.model_copy(
                update={"metadata": d.metadata.model_copy(update={"annotations": annotations})}
            )
        )

    def _cleanup(self, d: Deployment, old: list[ReplicaSet], view: PodView) -> None:
        """Delete the oldest fully scaled-down ReplicaSets beyond revisionHistoryLimit."""
        idle = [
            rs
            for rs in old
            if rs.spec.replicas == 0
            and (rs.status is None or rs.status.replicas == 0)
            and view.count([rs]) == 0
        ]
        surplus = len(idle) - d.spec.revision_history_limit
        for rs in sorted(idle, key=revision_of)[: max(surplus, 0)]:
            try:
                self.api.delete(
                    ReplicaSet,
                    rs.name,
                    namespace=rs.namespace,
                    resource_version=rs.metadata.resource_version,
                )
            except NotFound:
                continue

    # -- status ------------------------------------------------------------------------------

    def _sync_status(
        self,
        d: Deployment,
        new_rs: ReplicaSet | None,
        old: list[ReplicaSet],
        view: PodView,
        *,
        progressed: bool,
    ) -> Result | None:
        every = [*([new_rs] if new_rs else []), *old]
        counts = Counts(
            replicas=view.count(every),
            updated=view.count([new_rs]) if new_rs else 0,
            ready=view.ready(every),
            available=view.available(every),
        )
        replicas = d.spec.replicas
        rolling = d.spec.strategy.rolling_update
        max_unavailable = (
            resolve_int_or_percent(rolling.max_unavailable, replicas, round_up=False)
            if rolling
            else 0
        )
        now = now_utc(self.clock)
        previous = d.status or DeploymentStatus()
        conditions = {c.type: c for c in previous.conditions}
        available_ok = counts.available >= replicas - max_unavailable
        conditions["Available"] = _condition(
            conditions.get("Available"),
            "True" if available_ok else "False",
            "MinimumReplicasAvailable" if available_ok else "MinimumReplicasUnavailable",
            "Deployment has minimum availability."
            if available_ok
            else "Deployment does not have minimum availability.",
            now,
        )
        complete = (
            new_rs is not None
            and counts.updated == replicas
            and counts.replicas == replicas
            and counts.available == replicas
            and (new_rs.spec.replicas == replicas)
        )
        moved = progressed or (
            counts
            != Counts(
                previous.replicas,
                previous.updated_replicas,
                previous.ready_replicas,
                previous.available_replicas,
            )
        )
        requeue: float | None = None
        prior = conditions.get("Progressing")
        if d.spec.paused:
            conditions["Progressing"] = _condition(
                prior, "Unknown", "DeploymentPaused", "Deployment is paused.", now
            )
        elif complete:
            name = new_rs.name if new_rs else ""
            conditions["Progressing"] = _condition(
                prior,
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{name}" has successfully progressed.',
                now,
            )
        elif (
            moved
            or prior is None
            or prior.reason == "NewReplicaSetAvailable"
            or (previous.observed_generation != d.metadata.generation)
        ):
            name = new_rs.name if new_rs else f"{d.name}-{_hash(d)}"
            conditions["Progressing"] = _condition(
                prior,
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{name}" is progressing.',
                now,
                touch=True,
            )
            requeue = float(d.spec.progress_deadline_seconds)
        elif prior.reason != "ProgressDeadlineExceeded":
            last = prior.last_update_time or prior.last_transition_time or now
            waited = now.timestamp() - last.timestamp()
            if waited > d.spec.progress_deadline_seconds:
                conditions["Progressing"] = _condition(
                    prior,
                    "False",
                    "ProgressDeadlineExceeded",
                    f'Deployment "{d.name}" has exceeded its progress deadline.',
                    now,
                )
                self.record_event(
                    d,
                    reason="ProgressDeadlineExceeded",
                    message=f'Deployment "{d.name}" has exceeded its progress deadline.',
                    warning=True,
                )
            else:
                requeue = d.spec.progress_deadline_seconds - waited + 0.001
        status = DeploymentStatus(
            observed_generation=d.metadata.generation,
            replicas=counts.replicas,
            updated_replicas=counts.updated,
            ready_replicas=counts.ready,
            available_replicas=counts.available,
            unavailable_replicas=max(replicas - counts.available, 0),
            collision_count=previous.collision_count,
            conditions=[conditions[t] for t in ("Available", "Progressing") if t in conditions]
            + [c for c in previous.conditions if c.type not in ("Available", "Progressing")],
        )
        if status != d.status:
            try:
                self.api.update_status(d.model_copy(update={"status": status}))
            except Conflict:
                # Our own revision annotation, or a spec change: the status we computed holds
                # for the fresh copy only if it has the same generation.
                fresh = self.api.get(Deployment, d.name, namespace=d.namespace)
                if fresh.metadata.generation == d.metadata.generation:
                    self.api.update_status(fresh.model_copy(update={"status": status}))
        return Result(requeue_after=requeue) if requeue is not None else None


def _condition(
    prior: Condition | None,
    status: str,
    reason: str,
    message: str,
    now: datetime,
    *,
    touch: bool = False,
) -> Condition:
    """A condition whose times move as Kubernetes' do: lastTransitionTime when the status
    flips, lastUpdateTime when the reason changes or progress is reported (``touch``)."""
    if prior is not None and prior.status == status and prior.reason == reason and not touch:
        return prior.model_copy(update={"message": message})
    transition = prior.last_transition_time if prior is not None and prior.status == status else now
    return Condition(
        type=prior.type if prior is not None else _type_for(reason),
        status=status,  # type: ignore[arg-type]
        reason=reason,
        message=message,
        last_transition_time=transition,
        last_update_time=now,
    )


def _type_for(reason: str) -> str:
    return "Available" if reason.startswith("Minimum") else "Progressing"
