"""The job controller: runs each Job's pods to completion, within its limits.

Watches Jobs and Pods (a pod event wakes its controlling Job). From the pods a Job owns it
counts succeeded (phase Succeeded), failed (phase Failed, plus container restarts under
``restartPolicy: OnFailure``, as Kubernetes counts them) and active ones, and then converges:

- done when ``completions`` pods succeeded (or, with completions unset, when one did and none
  is running) → condition Complete, ``completionTime``;
- failed when failures exceed ``backoffLimit`` (reason BackoffLimitExceeded) or the Job has run
  ``activeDeadlineSeconds`` since its ``startTime`` (DeadlineExceeded) → condition Failed, and
  its running pods are deleted;
- otherwise keeps ``min(parallelism, completions left)`` pods active (none while suspended).

Finished pods are kept (their logs stay readable and their phases are the counts); a finished
Job with ``ttlSecondsAfterFinished`` is deleted that long after it finished, and the garbage
collector takes its pods. Time comes from the controller clock; deadlines and TTLs come back as
``requeue_after``. Sits between the cronjob controller or Git (which create Jobs) and the
scheduler (which binds the pods it creates).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from reconciler.api import AlreadyExists, Api, Conflict, NotFound, now_utc
from reconciler.controllers._pods import (
    child_manifest,
    controlled_by,
    delete_pods,
    is_ready,
    owner_keys,
)
from reconciler.controllers.runtime import Controller, ControllerContext, Result
from schemas import Condition, Container, EnvVar, ObjectKey, ObjectMeta, Pod
from schemas.batch import Job, JobStatus

__all__ = [
    "COMPLETION_INDEX",
    "JOB_NAME_LABEL",
    "JobController",
    "compress_indexes",
    "delete_job",
    "job_finished_at",
    "job_pod_manifest",
]

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
#: An Indexed Job's pod index, as label and annotation (Kubernetes' names).
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
_UID_LABEL = "batch.kubernetes.io/controller-uid"


def job_pod_manifest(job: Job, index: int | None = None) -> dict[str, Any]:
    """The manifest of a new pod of ``job`` (``<job>-<5 random chars>``, labelled with the
    Job's name and uid as Kubernetes labels them, so ``-l job-name=...`` finds them). With
    ``index`` (an Indexed Job): ``<job>-<index>-<5 chars>``, the index in the label and
    annotation ``batch.kubernetes.io/job-completion-index``, in ``JOB_COMPLETION_INDEX`` of
    every container, and the hostname ``<job>-<index>``, as Kubernetes makes them."""
    template = job.spec.template
    labels = {
        **template.metadata.labels,
        JOB_NAME_LABEL: job.name,
        "job-name": job.name,
        _UID_LABEL: job.metadata.uid or "",
        "controller-uid": job.metadata.uid or "",
    }
    annotations = dict(template.metadata.annotations)
    spec = template.spec
    prefix = f"{job.name}-"
    if index is not None:
        labels[COMPLETION_INDEX] = annotations[COMPLETION_INDEX] = str(index)
        prefix = f"{job.name}-{index}-"
        variable = EnvVar(name="JOB_COMPLETION_INDEX", value=str(index))
        spec = spec.model_copy(
            update={
                "containers": [_with_env(c, variable) for c in spec.containers],
                "init_containers": [_with_env(c, variable) for c in spec.init_containers],
                "hostname": spec.hostname or f"{job.name}-{index}",
            }
        )
    meta = ObjectMeta(
        generate_name=prefix,
        namespace=job.namespace,
        labels=labels,
        annotations=annotations,
        owner_references=[controlled_by(job)],
    )
    return child_manifest("v1", "Pod", meta, spec)


def _with_env(container: Container, variable: EnvVar) -> Container:
    env = [e for e in container.env if e.name != variable.name]
    return container.model_copy(update={"env": [*env, variable]})


def _index(pod: Pod) -> int | None:
    value = pod.metadata.annotations.get(COMPLETION_INDEX)
    return int(value) if value is not None and value.isdigit() else None


def compress_indexes(indexes: Iterable[int]) -> str | None:
    """Kubernetes' ``completedIndexes`` form: sorted ranges, ``"0-2,4"``; None when empty."""
    ranges: list[list[int]] = []
    for index in sorted(set(indexes)):
        if ranges and index == ranges[-1][1] + 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in ranges]
    return ",".join(parts) or None


def job_finished_at(job: Job) -> datetime | None:
    """When a finished Job finished (its terminal condition's transition, else its
    ``completionTime``); None while it runs. Read by the TTL here and the cronjob history."""
    status = job.status
    if status is None or status.finished is None:
        return None
    condition = status.condition(status.finished)
    return (condition.last_transition_time if condition else None) or status.completion_time


def delete_job(api: Api, job: Job) -> bool:
    """Delete ``job`` as it was read (its ``resourceVersion``); False when it is already gone
    or changed since, which the next reconcile looks at afresh."""
    try:
        api.delete(
            Job, job.name, namespace=job.namespace, resource_version=job.metadata.resource_version
        )
    except (NotFound, Conflict):
        return False
    return True


def _phase(pod: Pod) -> str:
    return pod.status.phase if pod.status else "Pending"


def _restarts(pod: Pod) -> int:
    return sum(s.restart_count for s in pod.status.container_statuses) if pod.status else 0


class JobController(Controller):
    name: ClassVar[str] = "job"
    workers: ClassVar[int] = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.jobs = self.watch_own(Job)
        self.pods = self.watch(Pod, lambda pod: owner_keys(pod, "Job"))

    def reconcile(self, key: ObjectKey) -> Result | None:
        job = self.jobs.get(key.name, namespace=key.namespace)
        if job is None or job.metadata.deletion_timestamp is not None:
            self.forget_writes(key)
            return None
        self.await_own_writes(key)
        pods = self.pods.by_index("owner", job.metadata.uid or "")
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        running = [p for p in live if _phase(p) not in ("Succeeded", "Failed")]
        indexed = job.spec.completion_mode == "Indexed"
        done_indexes = {
            i for p in pods if _phase(p) == "Succeeded" and (i := _index(p)) is not None
        }
        if indexed:
            done_indexes |= _parse_indexes((job.status or JobStatus()).completed_indexes)
        # An Indexed Job counts each index once, however many of its pods succeeded.
        succeeded = len(done_indexes) if indexed else sum(_phase(p) == "Succeeded" for p in pods)
        failed = sum(_phase(p) == "Failed" for p in pods)
        if job.spec.template.spec.restart_policy == "OnFailure":
            failed += sum(_restarts(p) for p in pods)
        prior = job.status or JobStatus()
        # A deleted finished pod must not lower the counts (Kubernetes keeps them with
        # finalizers; here the status is the record).
        succeeded = max(succeeded, prior.succeeded)
        failed = max(failed, prior.failed)
        now = self.clock.time()
        now_dt = now_utc(self.clock)
        start = prior.start_time
        if start is None and not job.spec.suspend:
            start = now_dt

        finished = prior.finished
        conditions = list(prior.conditions)
        completion_time = prior.completion_time
        requeue: float | None = None
        if finished is None:
            outcome = self._outcome(
                job, succeeded=succeeded, failed=failed, running=len(running), start=start, now=now
            )
            if outcome is not None:
                type_, reason, message = outcome
                finished = type_
                conditions = [c for c in conditions if c.type != type_]
                conditions.append(
                    Condition(
                        type=type_,
                        status="True",
                        reason=reason,
                        message=message,
                        last_transition_time=now_dt,
                        last_probe_time=now_dt,
                    )
                )
                if type_ == "Complete":
                    completion_time = now_dt
                self.record_event(job, reason=reason, message=message, warning=type_ == "Failed")
        if finished is None:
            if indexed:
                running = self._scale_indexed(job, running, done=done_indexes)
            else:
                running = self._scale(job, running, succeeded=succeeded)
            if job.spec.active_deadline_seconds is not None and start is not None:
                requeue = max(start.timestamp() + job.spec.active_deadline_seconds - now, 0.0)
        status = JobStatus(
            active=0 if finished == "Failed" else len(running),
            succeeded=succeeded,
            failed=failed,
            ready=0 if finished == "Failed" else sum(is_ready(p) for p in running),
            start_time=start,
            completion_time=completion_time,
            conditions=conditions,
            completed_indexes=compress_indexes(done_indexes) if indexed else None,
        )
        # The order matters: the status is the record of the counts, so it is written before
        # a failed Job's pods are deleted — otherwise a lost status write would be followed by
        # a reconcile that no longer sees the failures and starts the Job over.
        if status != job.status:
            job = self._write_status(job, status)
            if job is None:
                return None
        if finished == "Failed":
            self._delete(key, running)
        if finished is not None:
            return self._expire(job)
        return Result(requeue_after=requeue) if requeue is not None else None

    def _write_status(self, job: Job, status: JobStatus) -> Job | None:
        try:
            written = self.api.update_status(job.model_copy(update={"status": status}))
        except NotFound:
            return None
        except Conflict:
            fresh = self.api.get(Job, job.name, namespace=job.namespace)
            written = self.api.update_status(fresh.model_copy(update={"status": status}))
        self.note_write(job.key, self.jobs, int(written.metadata.resource_version or 0))
        return written

    @staticmethod
    def _outcome(
        job: Job, *, succeeded: int, failed: int, running: int, start: Any, now: float
    ) -> tuple[Literal["Complete", "Failed"], str, str] | None:
        """(condition type, reason, message) when the Job has just finished, else None."""
        wanted = job.spec.wanted_completions
        if wanted is not None and succeeded >= wanted:
            return "Complete", "Completed", f"{succeeded}/{wanted} pods succeeded"
        if wanted is None and succeeded > 0 and running == 0:
            return "Complete", "Completed", f"{succeeded} pods succeeded"
        if failed > job.spec.backoff_limit:
            return (
                "Failed",
                "BackoffLimitExceeded",
                f"Job has reached the specified backoff limit ({failed} failures, "
                f"backoffLimit {job.spec.backoff_limit})",
            )
        deadline = job.spec.active_deadline_seconds
        if deadline is not None and start is not None and now >= start.timestamp() + deadline:
            return (
                "Failed",
                "DeadlineExceeded",
                f"Job was active longer than specified deadline ({deadline}s)",
            )
        return None

    def _scale(self, job: Job, running: list[Pod], *, succeeded: int) -> list[Pod]:
        wanted = job.spec.wanted_completions
        if job.spec.suspend:
            target = 0
        elif wanted is None:
            target = 0 if succeeded > 0 else job.spec.wanted_parallelism
        else:
            target = min(job.spec.wanted_parallelism, max(wanted - succeeded, 0))
        if len(running) < target:
            self._create(job, target - len(running))
        elif len(running) > target:
            # Pods no node has taken yet are the cheapest to drop.
            running = sorted(running, key=lambda p: (p.spec.node_name is not None, p.name))
            surplus = len(running) - target
            self._delete(job.key, running[:surplus])
            running = running[surplus:]
        return running

    def _scale_indexed(self, job: Job, running: list[Pod], *, done: set[int]) -> list[Pod]:
        """Pods for the lowest indexes neither done nor running, up to parallelism."""
        completions = job.spec.completions or 0
        busy = {i for p in running if (i := _index(p)) is not None}
        pending = [i for i in range(completions) if i not in done and i not in busy]
        room = 0 if job.spec.suspend else job.spec.wanted_parallelism - len(running)
        if room > 0 and pending:
            self._create(job, indexes=pending[:room])
        elif room < 0:
            running = sorted(running, key=lambda p: (p.spec.node_name is not None, p.name))
            self._delete(job.key, running[:-room])
            running = running[-room:]
        return running

    def _create(self, job: Job, count: int = 0, *, indexes: Sequence[int] = ()) -> None:
        manifests = [job_pod_manifest(job, index) for index in indexes] or [
            job_pod_manifest(job)
        ] * count
        revision = 0
        for manifest in manifests:
            try:
                pod = self.api.create(manifest)
            except AlreadyExists:
                continue
            revision = max(revision, int(pod.metadata.resource_version or 0))
            self.record_event(job, reason="SuccessfulCreate", message=f"Created pod: {pod.name}")
        self.note_write(job.key, self.pods, revision)

    def _delete(self, key: ObjectKey, victims: list[Pod]) -> None:
        self.note_write(key, self.pods, delete_pods(self.api, victims))

    def _expire(self, job: Job) -> Result | None:
        """Delete a finished Job once ``ttlSecondsAfterFinished`` has passed."""
        ttl = job.spec.ttl_seconds_after_finished
        finished_at = job_finished_at(job)
        if ttl is None or finished_at is None:
            return None
        left = (finished_at + timedelta(seconds=ttl)).timestamp() - self.clock.time()
        if left > 0:
            return Result(requeue_after=left)
        delete_job(self.api, job)
        return None


def _parse_indexes(text: str | None) -> set[int]:
    """The indexes of a ``completedIndexes`` string (``"0-2,4"``)."""
    found: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        found.update(range(int(low), int(high or low) + 1))
    return found
