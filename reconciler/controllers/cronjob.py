"""The cronjob controller: creates each CronJob's Jobs at the times its schedule names.

Watches CronJobs and Jobs (a Job's change wakes its controlling CronJob). On each reconcile it
reads the Jobs the CronJob owns, records which are still running in ``status.active``, deletes
finished ones beyond ``successfulJobsHistoryLimit``/``failedJobsHistoryLimit`` (oldest first;
the garbage collector takes their pods), and then, unless ``suspend``, looks for the latest
fire time it has not yet acted on: between ``status.lastScheduleTime`` (or the CronJob's
creation) and now, no further back than ``startingDeadlineSeconds``. That time is run at most
once — the Job is named ``<cronjob>-<minutes since the epoch>`` as Kubernetes names it, so a
second attempt finds it already there — subject to ``concurrencyPolicy``: Allow runs beside
active Jobs, Forbid waits for them (the run happens when they finish, if still within the
deadline), Replace deletes them first. Missed runs are not made up: only the latest counts.

Time is the controller clock read in ``spec.timeZone`` (UTC when unset); the next fire time
comes back as ``requeue_after``, so a ManualClock drives it in tests. Sits between Git (which
holds CronJobs) and the job controller (which runs the Jobs it creates).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any, ClassVar

from reconciler.api import AlreadyExists, NotFound
from reconciler.controllers._pods import child_manifest, controlled_by, owner_keys
from reconciler.controllers.job import delete_job, job_finished_at
from reconciler.controllers.runtime import Controller, ControllerContext, Result
from schemas import ObjectKey, ObjectMeta
from schemas.batch import CronJob, CronJobStatus, Job, ObjectReference
from schemas.cron import parse_cron, time_zone

__all__ = ["SCHEDULED_ANNOTATION", "CronJobController", "job_for_run"]

SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
# A requeue lands a little after the fire minute so that the clock has surely passed it.
_AFTER_FIRE_S = 0.5


def job_for_run(cronjob: CronJob, scheduled: datetime) -> dict[str, Any]:
    """The manifest of the Job ``cronjob`` runs for the fire time ``scheduled``."""
    template = cronjob.spec.job_template
    meta = ObjectMeta(
        name=job_name(cronjob, scheduled),
        namespace=cronjob.namespace,
        labels=dict(template.metadata.labels),
        annotations={
            **template.metadata.annotations,
            SCHEDULED_ANNOTATION: scheduled.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        },
        owner_references=[controlled_by(cronjob)],
    )
    return child_manifest("batch/v1", "Job", meta, template.spec)


def _reference(job: Job) -> ObjectReference:
    return ObjectReference(
        api_version="batch/v1",
        kind="Job",
        namespace=job.namespace,
        name=job.name,
        uid=job.metadata.uid,
        resource_version=job.metadata.resource_version,
    )


def _finished_at(job: Job) -> datetime:
    return (
        job_finished_at(job) or job.metadata.creation_timestamp or datetime.min.replace(tzinfo=UTC)
    )


class CronJobController(Controller):
    name: ClassVar[str] = "cronjob"
    workers: ClassVar[int] = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.cronjobs = self.watch_own(CronJob)
        self.jobs = self.watch(Job, lambda job: owner_keys(job, "CronJob"))

    def reconcile(self, key: ObjectKey) -> Result | None:
        cronjob = self.cronjobs.get(key.name, namespace=key.namespace)
        if cronjob is None or cronjob.metadata.deletion_timestamp is not None:
            self.forget_writes(key)
            return None
        self.await_own_writes(key)
        jobs = [
            j
            for j in self.jobs.by_index("owner", cronjob.metadata.uid or "")
            if j.metadata.deletion_timestamp is None
        ]
        active = [j for j in jobs if j.status is None or j.status.finished is None]
        prior = cronjob.status or CronJobStatus()
        last_success = prior.last_successful_time
        for job in jobs:
            if job.status is not None and job.status.finished == "Complete":
                done = _finished_at(job)
                last_success = max(last_success, done) if last_success else done
        self._trim_history(cronjob, jobs)

        zone = time_zone(cronjob.spec.time_zone) if cronjob.spec.time_zone else UTC
        now = datetime.fromtimestamp(self.clock.time(), tz=zone)
        last_schedule = prior.last_schedule_time
        requeue: float | None = None
        if not cronjob.spec.suspend:
            run, missed, requeue = self._due(cronjob, last_schedule, now, zone)
            if run is not None and self._may_start(cronjob, active, run):
                if missed > 1:
                    self.record_event(
                        cronjob,
                        reason="MissedSchedules",
                        message=f"{missed} fire times passed without a run; running only the "
                        f"latest ({run.isoformat()})",
                        warning=True,
                    )
                started = self._start(cronjob, run)
                if started is not None and all(j.name != started.name for j in active):
                    active.append(started)
                last_schedule = run
        status = CronJobStatus(
            active=[_reference(j) for j in sorted(active, key=lambda j: j.name)],
            last_schedule_time=last_schedule,
            last_successful_time=last_success,
        )
        if status != cronjob.status:
            try:
                written = self.api.update_status(cronjob.model_copy(update={"status": status}))
            except NotFound:
                return None
            self.note_write(key, self.cronjobs, int(written.metadata.resource_version or 0))
        return Result(requeue_after=requeue) if requeue is not None else None

    def _due(
        self, cronjob: CronJob, last_schedule: datetime | None, now: datetime, zone: tzinfo
    ) -> tuple[datetime | None, int, float | None]:
        """The fire time to act on now (if any), how many fire times are unacted on, and the
        seconds until the next one."""
        schedule = parse_cron(cronjob.spec.schedule)
        created = cronjob.metadata.creation_timestamp or now
        earliest = (last_schedule or created).astimezone(zone)
        run, missed = schedule.last_fire(earliest, now)
        deadline = cronjob.spec.starting_deadline_seconds
        if (
            run is not None
            and deadline is not None
            and run.timestamp() < now.timestamp() - deadline
        ):
            self.record_event(
                cronjob,
                reason="MissSchedule",
                message=f"Missed the run of {run.isoformat()}: more than "
                f"startingDeadlineSeconds ({deadline}) late",
                warning=True,
            )
            run = None
        upcoming = schedule.next_fire(now)
        requeue = upcoming.timestamp() - now.timestamp() + _AFTER_FIRE_S if upcoming else None
        return run, missed, requeue

    def _may_start(self, cronjob: CronJob, active: list[Job], run: datetime) -> bool:
        policy = cronjob.spec.concurrency_policy
        others = [j for j in active if j.name != job_name(cronjob, run)]
        if not others or policy == "Allow":
            return True
        if policy == "Forbid":
            self.record_event(
                cronjob,
                reason="JobAlreadyActive",
                message=f"Not starting the run of {run.isoformat()}: concurrencyPolicy Forbid "
                f"and {', '.join(j.name for j in others)} still active",
            )
            return False
        for job in others:  # Replace
            try:
                self.api.delete(Job, job.name, namespace=job.namespace)
            except NotFound:
                continue
            self.record_event(cronjob, reason="SuccessfulDelete", message=f"Deleted job {job.name}")
            active.remove(job)
        return True

    def _start(self, cronjob: CronJob, run: datetime) -> Job | None:
        try:
            created = self.api.create(job_for_run(cronjob, run))
        except AlreadyExists:
            return self.jobs.get(job_name(cronjob, run), namespace=cronjob.namespace)
        assert isinstance(created, Job)
        self.note_write(cronjob.key, self.jobs, int(created.metadata.resource_version or 0))
        self.record_event(cronjob, reason="SuccessfulCreate", message=f"Created job {created.name}")
        return created

    def _trim_history(self, cronjob: CronJob, jobs: list[Job]) -> None:
        for outcome, limit in (
            ("Complete", cronjob.spec.successful_jobs_history_limit),
            ("Failed", cronjob.spec.failed_jobs_history_limit),
        ):
            done = sorted(
                (j for j in jobs if j.status is not None and j.status.finished == outcome),
                key=_finished_at,
            )
            for job in done[: max(len(done) - limit, 0)]:
                if delete_job(self.api, job):
                    self.record_event(
                        cronjob, reason="SuccessfulDelete", message=f"Deleted job {job.name}"
                    )


def job_name(cronjob: CronJob, run: datetime) -> str:
    """The name of the Job for fire time ``run`` (``<cronjob>-<minutes since the epoch>``)."""
    return f"{cronjob.name}-{int(run.timestamp()) // 60}"
