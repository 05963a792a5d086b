"""batch/v1 Job and CronJob.

A Job from Git (or one a CronJob made) is turned by the job controller into pods that run to
completion (``restartPolicy`` Never or OnFailure); a CronJob by the cronjob controller into
Jobs at the times its ``schedule`` names, in its ``timeZone``. ``completionMode: Indexed``
gives each pod an index (``JOB_COMPLETION_INDEX``) and completes when every index succeeded.
Fields Capstan does not implement are refused with the reason (``podFailurePolicy``,
``backoffLimitPerIndex``) rather than silently ignored.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from schemas._validation import NonNegativeInt, PositiveInt, Problems
from schemas.cron import CronError, parse_cron, time_zone
from schemas.meta import (
    Condition,
    KubeModel,
    KubeObject,
    LabelSelector,
    ObjectMeta,
    ObjectReference,
    Timestamp,
)
from schemas.pod import PodTemplateSpec

__all__ = [
    "CronJob",
    "CronJobSpec",
    "CronJobStatus",
    "Job",
    "JobSpec",
    "JobStatus",
    "JobTemplateSpec",
    "ObjectReference",
]


class JobSpec(KubeModel):
    """What a Job runs and when it is done. ``completions`` unset means "done when one pod
    succeeds" (the work-queue pattern); ``parallelism`` caps the pods running at once."""

    parallelism: NonNegativeInt | None = None
    completions: NonNegativeInt | None = None
    backoff_limit: NonNegativeInt = 6
    active_deadline_seconds: PositiveInt | None = None
    ttl_seconds_after_finished: NonNegativeInt | None = None
    suspend: bool = False
    completion_mode: Literal["NonIndexed", "Indexed"] = "NonIndexed"
    manual_selector: bool | None = None
    selector: LabelSelector | None = None
    template: PodTemplateSpec
    # Accepted so manifests validate, refused below when set: nothing here can honour them.
    pod_failure_policy: dict[str, Any] | None = None
    backoff_limit_per_index: NonNegativeInt | None = None
    max_failed_indexes: NonNegativeInt | None = None
    pod_replacement_policy: Literal["TerminatingOrFailed", "Failed"] | None = None

    @model_validator(mode="after")
    def _check(self) -> JobSpec:
        problems = Problems("JobSpec")
        policy = self.template.spec.restart_policy
        if policy == "Always":
            problems.add(
                ("template", "spec", "restartPolicy"),
                "restart_policy",
                "must be Never or OnFailure in a Job (a pod that always restarts never completes)",
                policy,
            )
        if self.selector is not None and not self.selector.matches(self.template.metadata.labels):
            problems.add(
                ("template", "metadata", "labels"),
                "selector_mismatch",
                "selector does not match template labels",
                dict(self.template.metadata.labels),
            )
        if self.completion_mode == "Indexed" and self.completions is None:
            problems.add(
                ("completions",),
                "missing",
                "is required when completionMode is Indexed",
            )
        for field, value in (
            ("podFailurePolicy", self.pod_failure_policy),
            ("backoffLimitPerIndex", self.backoff_limit_per_index),
            ("maxFailedIndexes", self.max_failed_indexes),
        ):
            if value is not None:
                problems.add(
                    (field,),
                    "not_supported",
                    f"{field} is not supported by Capstan; failures count against backoffLimit",
                    value,
                )
        problems.raise_if_any()
        return self

    @property
    def wanted_completions(self) -> int | None:
        """``completions`` as Kubernetes defaults it: 1 when neither it nor parallelism is
        set, None (any one success completes) when only parallelism is."""
        if self.completions is None and self.parallelism is None:
            return 1
        return self.completions

    @property
    def wanted_parallelism(self) -> int:
        return 1 if self.parallelism is None else self.parallelism


class JobStatus(KubeModel):
    active: NonNegativeInt = 0
    succeeded: NonNegativeInt = 0
    failed: NonNegativeInt = 0
    ready: NonNegativeInt = 0
    start_time: Timestamp | None = None
    completion_time: Timestamp | None = None
    conditions: list[Condition] = Field(default_factory=list)
    # Indexed Jobs: the indexes whose pod succeeded, as Kubernetes writes them ("0-2,4").
    completed_indexes: str | None = None

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def finished(self) -> Literal["Complete", "Failed"] | None:
        """Which terminal condition holds, if any."""
        for type_ in ("Complete", "Failed"):
            condition = self.condition(type_)
            if condition is not None and condition.status == "True":
                return type_
        return None


class Job(KubeObject):
    NAMESPACED: ClassVar[bool] = True

    api_version: Literal["batch/v1"] = "batch/v1"
    kind: Literal["Job"] = "Job"
    spec: JobSpec
    status: JobStatus | None = None


class JobTemplateSpec(KubeModel):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: JobSpec


class CronJobSpec(KubeModel):
    schedule: str
    time_zone: str | None = None
    starting_deadline_seconds: NonNegativeInt | None = None
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    suspend: bool = False
    job_template: JobTemplateSpec
    successful_jobs_history_limit: NonNegativeInt = 3
    failed_jobs_history_limit: NonNegativeInt = 1

    @model_validator(mode="after")
    def _check(self) -> CronJobSpec:
        problems = Problems("CronJobSpec")
        if "TZ=" in self.schedule:
            problems.add(
                ("schedule",),
                "cron_schedule",
                "CRON_TZ/TZ in the schedule is not allowed; use spec.timeZone",
                self.schedule,
            )
        else:
            try:
                parse_cron(self.schedule)
            except CronError as exc:
                problems.add(("schedule",), "cron_schedule", str(exc), self.schedule)
        if self.time_zone is not None:
            try:
                time_zone(self.time_zone)
            except CronError as exc:
                problems.add(("timeZone",), "time_zone", str(exc), self.time_zone)
        problems.raise_if_any()
        return self


class CronJobStatus(KubeModel):
    active: list[ObjectReference] = Field(default_factory=list)
    last_schedule_time: Timestamp | None = None
    last_successful_time: Timestamp | None = None


class CronJob(KubeObject):
    NAMESPACED: ClassVar[bool] = True

    api_version: Literal["batch/v1"] = "batch/v1"
    kind: Literal["CronJob"] = "CronJob"
    spec: CronJobSpec
    status: CronJobStatus | None = None
