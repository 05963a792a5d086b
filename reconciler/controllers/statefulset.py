"""The statefulset controller: pods with stable names and storage, started and stopped in order.

Watches StatefulSets and Pods (a pod event wakes its controlling StatefulSet). Pod ``i`` is
named ``<set>-<i>`` (from ``ordinals.start``), has hostname ``<set>-<i>``, and for each
``volumeClaimTemplates`` entry ``t`` mounts the PersistentVolumeClaim ``<t>-<set>-<i>``, which
the controller creates before the pod and never replaces: a pod made again (after a crash, a
delete or a rollout) gets the same claim, and the scheduler places it on the node the claim is
bound to (``reconciler.scheduler``), so it finds its data again.

``podManagementPolicy: OrderedReady`` creates pod ``i`` only once every pod below it is Ready,
and removes surplus pods from the highest ordinal down, one per pass; ``Parallel`` creates and
removes them all at once. ``updateStrategy: RollingUpdate`` replaces pods of an older template
from the highest ordinal down to ``partition``, one at a time and only while every pod is
Ready; ``OnDelete`` waits for someone to delete them. Claims carry no owner unless
``persistentVolumeClaimRetentionPolicy`` says Delete: ``whenDeleted: Delete`` makes the
StatefulSet their owner (the garbage collector takes them with it), ``whenScaled: Delete``
deletes the claims of ordinals scaled away. Sits between Git and the scheduler.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from reconciler.api import AlreadyExists, Conflict, NotFound
from reconciler.controllers._pods import (
    child_manifest,
    controlled_by,
    delete_pods,
    is_ready,
    owner_keys,
    until_available,
)
from reconciler.controllers.runtime import Controller, ControllerContext, Result
from reconciler.workloads.deployment import pod_template_hash
from reconciler.workloads.sets import REVISION_LABEL, claim_name
from schemas import ObjectKey, ObjectMeta, Pod
from schemas._validation import dns1123_label_problem
from schemas.apps import StatefulSet, StatefulSetStatus
from schemas.pod import PersistentVolumeClaimVolumeSource, Volume
from schemas.storage import PersistentVolumeClaim

__all__ = ["POD_NAME_LABEL", "REVISION_LABEL", "StatefulSetController", "claim_name"]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def _ordinal(sts: StatefulSet, pod: Pod) -> int | None:
    match = re.fullmatch(rf"{re.escape(sts.name)}-(\d+)", pod.name)
    return int(match.group(1)) if match else None


def _claims(sts: StatefulSet, ordinal: int) -> list[dict[str, Any]]:
    """The manifests of pod ``ordinal``'s claims."""
    owned = sts.spec.persistent_volume_claim_retention_policy.when_deleted == "Delete"
    manifests = []
    for template in sts.spec.volume_claim_templates:
        meta = ObjectMeta(
            name=claim_name(template.metadata.name or "", sts, ordinal),
            namespace=sts.namespace,
            labels={**sts.spec.selector.match_labels, **template.metadata.labels},
            annotations=dict(template.metadata.annotations),
            owner_references=[controlled_by(sts)] if owned else [],
        )
        manifests.append(child_manifest("v1", "PersistentVolumeClaim", meta, template.spec))
    return manifests


def _pod(sts: StatefulSet, ordinal: int, template_hash: str) -> dict[str, Any]:
    template = sts.spec.template
    name = f"{sts.name}-{ordinal}"
    meta = ObjectMeta(
        name=name,
        namespace=sts.namespace,
        labels={
            **template.metadata.labels,
            POD_NAME_LABEL: name,
            _INDEX_LABEL: str(ordinal),
            REVISION_LABEL: template_hash,
        },
        annotations=dict(template.metadata.annotations),
        owner_references=[controlled_by(sts)],
    )
    # A claim template replaces a template volume of the same name (Kubernetes' updateStorage).
    claims = {t.metadata.name for t in sts.spec.volume_claim_templates}
    volumes = [v for v in template.spec.volumes if v.name not in claims] + [
        Volume(
            name=t.metadata.name or "",
            persistent_volume_claim=PersistentVolumeClaimVolumeSource(
                claim_name=claim_name(t.metadata.name or "", sts, ordinal)
            ),
        )
        for t in sts.spec.volume_claim_templates
    ]
    # subdomain = serviceName, as Kubernetes sets it: with the headless Service, each pod is
    # reachable as <set>-<i>.<serviceName>.<namespace> (the endpoints carry the hostname).
    service_name = sts.spec.service_name
    subdomain = template.spec.subdomain or (
        service_name
        if service_name is not None and dns1123_label_problem(service_name) is None
        else None
    )
    spec = template.spec.model_copy(
        update={
            "volumes": volumes,
            "hostname": template.spec.hostname or name,
            "subdomain": subdomain,
        }
    )
    return child_manifest("v1", "Pod", meta, spec)


class StatefulSetController(Controller):
    name: ClassVar[str] = "statefulset"
    workers: ClassVar[int] = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.statefulsets = self.watch_own(StatefulSet)
        self.pods = self.watch(Pod, lambda pod: owner_keys(pod, "StatefulSet"))

    def reconcile(self, key: ObjectKey) -> Result | None:
        sts = self.statefulsets.get(key.name, namespace=key.namespace)
        if sts is None or sts.metadata.deletion_timestamp is not None:
            self.forget_writes(key)
            return None
        self.await_own_writes(key)
        current_hash = pod_template_hash(sts.spec.template)
        first = sts.spec.first_ordinal
        wanted = range(first, first + sts.spec.replicas)
        by_ordinal: dict[int, Pod] = {}
        for owned in self.pods.by_index("owner", sts.metadata.uid or ""):
            index = _ordinal(sts, owned)
            if index is not None:
                by_ordinal[index] = owned
        ordered = sts.spec.pod_management_policy == "OrderedReady"
        now = self.clock.time()
        min_ready = sts.spec.min_ready_seconds

        # Surplus first, from the highest ordinal down (one per pass when ordered).
        surplus = sorted((o for o in by_ordinal if o not in wanted), reverse=True)
        terminating = any(p.metadata.deletion_timestamp is not None for p in by_ordinal.values())
        victims = [by_ordinal[o] for o in surplus]
        if ordered and victims:
            victims = [] if terminating else victims[:1]
        self._delete(key, victims)
        for victim in victims:
            self._drop_scaled_claims(sts, _ordinal(sts, victim))
        busy = ordered and bool(surplus)

        # Then the wanted ordinals, lowest first.
        for ordinal in wanted:
            pod = by_ordinal.get(ordinal)
            if pod is None:
                if busy:
                    break
                self._create(sts, ordinal, current_hash)
                if ordered:
                    busy = True
                continue
            if pod.metadata.deletion_timestamp is not None:
                busy = busy or ordered
                continue
            if pod.status is not None and pod.status.phase in ("Failed", "Succeeded"):
                self._delete(key, [pod])  # made again on the next pass, same name and claims
                busy = busy or ordered
                continue
            if ordered and not is_ready(pod):
                busy = True

        live = [by_ordinal[o] for o in wanted if o in by_ordinal]
        if (
            sts.spec.update_strategy.type == "RollingUpdate"
            and not busy
            and len(live) == len(wanted)
            and all(is_ready(p) and p.metadata.deletion_timestamp is None for p in live)
        ):
            stale = [
                p
                for p in live
                if p.labels.get(REVISION_LABEL) != current_hash
                and (_ordinal(sts, p) or 0) >= sts.spec.partition
            ]
            if stale:
                self._delete(key, [max(stale, key=lambda p: _ordinal(sts, p) or 0)])

        waits = [until_available(p, min_ready, now) for p in live]
        status = StatefulSetStatus(
            observed_generation=sts.metadata.generation,
            replicas=len(live),
            ready_replicas=sum(is_ready(p) for p in live),
            current_replicas=sum(p.labels.get(REVISION_LABEL) == current_hash for p in live),
            updated_replicas=sum(p.labels.get(REVISION_LABEL) == current_hash for p in live),
            available_replicas=sum(w == 0.0 for w in waits),
            current_revision=f"{sts.name}-{current_hash}",
            update_revision=f"{sts.name}-{current_hash}",
            conditions=sts.status.conditions if sts.status else [],
        )
        if status != sts.status:
            try:
                written = self.api.update_status(sts.model_copy(update={"status": status}))
            except NotFound:
                return None
            except Conflict:
                fresh = self.api.get(StatefulSet, sts.name, namespace=sts.namespace)
                written = self.api.update_status(fresh.model_copy(update={"status": status}))
            self.note_write(key, self.statefulsets, int(written.metadata.resource_version or 0))
        pending = [w for w in waits if w is not None and w > 0]
        return Result(requeue_after=min(pending)) if pending else None

    def _create(self, sts: StatefulSet, ordinal: int, template_hash: str) -> None:
        # The order matters: the claims exist before the pod, so the agent never starts it
        # on a volume that is not yet a claim.
        for claim in _claims(sts, ordinal):
            try:
                self.api.create(claim)
            except AlreadyExists:
                continue  # kept from an earlier pod of this ordinal: that is the point
            self.record_event(
                sts,
                reason="SuccessfulCreate",
                message=f"create Claim {claim['metadata']['name']} Pod {sts.name}-{ordinal}",
            )
        try:
            pod = self.api.create(_pod(sts, ordinal, template_hash))
        except AlreadyExists:
            return
        self.note_write(sts.key, self.pods, int(pod.metadata.resource_version or 0))
        self.record_event(sts, reason="SuccessfulCreate", message=f"create Pod {pod.name}")

    def _delete(self, key: ObjectKey, victims: list[Pod]) -> None:
        if victims:
            self.note_write(key, self.pods, delete_pods(self.api, victims))

    def _drop_scaled_claims(self, sts: StatefulSet, ordinal: int | None) -> None:
        if ordinal is None or sts.spec.persistent_volume_claim_retention_policy.when_scaled != (
            "Delete"
        ):
            return
        for template in sts.spec.volume_claim_templates:
            try:
                self.api.delete(
                    PersistentVolumeClaim,
                    claim_name(template.metadata.name or "", sts, ordinal),
                    namespace=sts.namespace,
                )
            except NotFound:
                continue
