"""Per-object sync and health: is the live object what Git says, and is it working.

Read by ``capstan status`` and the API's app view: for each object of the live commit,
Synced/OutOfSync (its Git-owned fields against the live object) and
Healthy/Progressing/Degraded/Missing (Deployment and ReplicaSet rollout counts and
conditions, Job completion, Pod phase and container states). ``object_health`` is pure;
``app_health`` only adds the reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from reconciler.api import Api, NotFound
from reconciler.diff import FieldChange, diff_objects
from reconciler.sync.engine import managed_object
from schemas import Deployment, KubeObject, ObjectKey, Pod, ReplicaSet, model_for
from schemas.apps import DaemonSet, StatefulSet
from schemas.batch import Job

__all__ = ["Health", "ObjectStatus", "SyncStatus", "app_health", "object_health"]

SyncStatus = Literal["Synced", "OutOfSync"]
Health = Literal["Healthy", "Progressing", "Degraded", "Missing"]
# Waiting reasons that mean the container will not come up by itself.
_BROKEN_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class ObjectStatus:
    """One object of the app: sync status with the differing fields, and health."""

    key: ObjectKey
    sync: SyncStatus
    health: Health
    message: str = ""
    diff: tuple[FieldChange, ...] = ()


def object_health(obj: KubeObject) -> tuple[Health, str]:
    """Health of a live object from its status alone."""
    if isinstance(obj, Deployment):
        return _deployment_health(obj)
    if isinstance(obj, ReplicaSet):
        return _replicaset_health(obj)
    if isinstance(obj, Pod):
        return _pod_health(obj)
    if isinstance(obj, Job):
        return _job_health(obj)
    if isinstance(obj, DaemonSet):
        return _daemonset_health(obj)
    if isinstance(obj, StatefulSet):
        return _statefulset_health(obj)
    if obj.metadata.deletion_timestamp is not None:
        return "Progressing", "being deleted"
    return "Healthy", ""


def _deployment_health(obj: Deployment) -> tuple[Health, str]:
    status = obj.status
    want = obj.spec.replicas
    if status is None:
        return "Progressing", "waiting for the controller"
    for condition in status.conditions:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            return "Degraded", condition.message or "progress deadline exceeded"
    if status.observed_generation is None or status.observed_generation < (
        obj.metadata.generation or 0
    ):
        return "Progressing", "waiting for the controller to see the new spec"
    if status.updated_replicas < want:
        return "Progressing", f"{status.updated_replicas}/{want} replicas updated"
    if status.replicas > status.updated_replicas:
        return "Progressing", f"{status.replicas - status.updated_replicas} old replicas left"
    if status.available_replicas < want:
        return "Progressing", f"{status.available_replicas}/{want} replicas available"
    return "Healthy", f"{status.available_replicas}/{want} available"


def _replicaset_health(obj: ReplicaSet) -> tuple[Health, str]:
    status = obj.status
    want = obj.spec.replicas
    if status is None or status.ready_replicas < want:
        ready = status.ready_replicas if status else 0
        return "Progressing", f"{ready}/{want} ready"
    return "Healthy", f"{status.ready_replicas}/{want} ready"


def _job_health(obj: Job) -> tuple[Health, str]:
    status = obj.status
    if status is None:
        return "Progressing", "waiting for the controller"
    finished = status.finished
    condition = status.condition(finished) if finished else None
    if finished == "Failed":
        return "Degraded", (condition.message if condition else None) or "failed"
    if finished == "Complete":
        return "Healthy", f"completed ({status.succeeded} succeeded)"
    return "Progressing", f"{status.active} active, {status.succeeded} succeeded"


def _daemonset_health(obj: DaemonSet) -> tuple[Health, str]:
    status = obj.status
    if status is None or (status.observed_generation or 0) < (obj.metadata.generation or 0):
        return "Progressing", "waiting for the controller to see the new spec"
    want = status.desired_number_scheduled
    if status.updated_number_scheduled < want or status.number_available < want:
        return "Progressing", (
            f"{status.updated_number_scheduled}/{want} nodes updated, "
            f"{status.number_available} available"
        )
    return "Healthy", f"{status.number_available}/{want} nodes available"


def _statefulset_health(obj: StatefulSet) -> tuple[Health, str]:
    status = obj.status
    if status is None or (status.observed_generation or 0) < (obj.metadata.generation or 0):
        return "Progressing", "waiting for the controller to see the new spec"
    want = obj.spec.replicas
    if status.updated_replicas < want or status.ready_replicas < want or status.replicas > want:
        ready, updated = status.ready_replicas, status.updated_replicas
        return "Progressing", f"{ready}/{want} ready, {updated} updated"
    return "Healthy", f"{status.ready_replicas}/{want} ready"


def _pod_health(obj: Pod) -> tuple[Health, str]:
    status = obj.status
    if status is None:
        return "Progressing", "not scheduled yet"
    for container in status.container_statuses:
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason in _BROKEN_WAITING:
            return "Degraded", f"{container.name}: {waiting.reason}"
    if status.phase == "Failed":
        return "Degraded", status.message or status.reason or "failed"
    if status.phase == "Succeeded":
        return "Healthy", "completed"
    if status.phase == "Running" and status.ready:
        return "Healthy", "running and ready"
    return "Progressing", status.phase.lower()


def app_health(api: Api, objects: Iterable[KubeObject]) -> list[ObjectStatus]:
    """Sync and health of each desired object (as loaded from the live commit)."""
    out: list[ObjectStatus] = []
    for desired in objects:
        model = model_for(desired.api_version, desired.kind)
        try:
            live = api.get(model, desired.name, namespace=desired.namespace or None)
        except NotFound:
            out.append(ObjectStatus(desired.key, "OutOfSync", "Missing", "not in the cluster"))
            continue
        diff = diff_objects(live, managed_object(desired))
        health, message = object_health(live)
        out.append(
            ObjectStatus(desired.key, "OutOfSync" if diff else "Synced", health, message, diff)
        )
    return out
