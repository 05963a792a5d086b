"""What the workload controllers need to know about a pod: readiness, availability, ownership.

Shared by the replicaset controller (status counts, which pod to delete first), the
deployment controller (surge and availability arithmetic) and the batch and set controllers
(the manifests and owner references of what they create). Availability follows Kubernetes:
Ready for at least ``minReadySeconds`` by the controller's clock, counted from the Ready
condition's ``lastTransitionTime``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from reconciler.api import Api, NotFound
from reconciler.workloads.owners import controller_ref, deployment_keys_of_pod, owner_keys
from schemas import KubeModel, KubeObject, ObjectMeta, OwnerReference, Pod

__all__ = [
    "active",
    "child_manifest",
    "controlled_by",
    "controller_ref",
    "delete_pods",
    "deployment_keys_of_pod",
    "is_available",
    "is_ready",
    "owner_keys",
    "ready_since",
    "until_available",
]


def controlled_by(owner: KubeObject) -> OwnerReference:
    """The controller ownerReference a workload puts on what it creates."""
    return OwnerReference(
        api_version=owner.api_version,
        kind=owner.kind,
        name=owner.name,
        uid=owner.metadata.uid or "",
        controller=True,
        block_owner_deletion=True,
    )


def child_manifest(
    api_version: str, kind: str, meta: ObjectMeta, spec: KubeModel
) -> dict[str, Any]:
    """The manifest of an object a controller creates (a dict, so that ``generateName`` may
    leave the name to the API)."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": meta.model_dump(mode="json", by_alias=True, exclude_none=True),
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def delete_pods(api: Api, pods: Iterable[Pod]) -> int:
    """Delete ``pods`` (already gone ones are skipped); the highest revision written, for
    :meth:`~reconciler.controllers.runtime.Controller.note_write`."""
    revision = 0
    for pod in pods:
        try:
            deleted = api.delete(Pod, pod.name, namespace=pod.namespace)
        except NotFound:
            continue
        revision = max(revision, int(deleted.metadata.resource_version or 0))
    return revision


def active(pod: Pod) -> bool:
    """Counts toward a ReplicaSet's replicas: not being deleted, not finished."""
    phase = pod.status.phase if pod.status else "Pending"
    return pod.metadata.deletion_timestamp is None and phase not in ("Succeeded", "Failed")


def is_ready(pod: Pod) -> bool:
    return pod.status is not None and pod.status.ready


def ready_since(pod: Pod) -> datetime | None:
    if pod.status is None:
        return None
    condition = pod.status.condition("Ready")
    if condition is None or condition.status != "True":
        return None
    return condition.last_transition_time or pod.metadata.creation_timestamp


def until_available(pod: Pod, min_ready_seconds: int, now: float) -> float | None:
    """Seconds until the pod counts as available: 0 if it is, None if it is not even ready."""
    # Hot: called for every pod of a Deployment on each of its reconciles, so one plain loop.
    status = pod.status
    if status is None:
        return None
    for condition in status.conditions:
        if condition.type == "Ready":
            if condition.status != "True":
                return None
            if min_ready_seconds <= 0:
                return 0.0
            since = condition.last_transition_time or pod.metadata.creation_timestamp
            if since is None:
                return 0.0
            return max(since.timestamp() + min_ready_seconds - now, 0.0)
    return None


def is_available(pod: Pod, min_ready_seconds: int, now: float) -> bool:
    return until_available(pod, min_ready_seconds, now) == 0.0
