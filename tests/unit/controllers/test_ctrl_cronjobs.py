"""The cronjob controller on a real store, driven by a ManualClock (it starts at
2027-01-15T08:00:00Z); the test plays the job controller by writing Job conditions."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.api import Api, ApiError, ManualClock, now_utc
from reconciler.controllers.cronjob import SCHEDULED_ANNOTATION, CronJobController
from schemas import Condition
from schemas.batch import CronJob, Job, JobStatus

START = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


def cronjob(name: str = "backup", *, schedule: str = "*/5 * * * *", **spec: object) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [{"name": "c", "image": "busybox"}],
                        }
                    }
                },
            },
            **spec,
        },
    }


def jobs(api: Api) -> list[Job]:
    return sorted(
        (j for j in api.list(Job).items if j.metadata.deletion_timestamp is None),
        key=lambda j: j.name,
    )


def run_name(name: str, at: datetime) -> str:
    return f"{name}-{int(at.timestamp()) // 60}"


def finish(api: Api, clock: ManualClock, name: str, outcome: str = "Complete") -> None:
    for _ in range(50):
        job = api.get(Job, name)
        condition = Condition(type=outcome, status="True", last_transition_time=now_utc(clock))
        try:
            api.update_status(job.model_copy(update={"status": JobStatus(conditions=[condition])}))
            return
        except ApiError:
            continue
    raise AssertionError(f"could not finish {name}")


def seen(api: Api) -> bool:
    """The controller has reconciled the CronJob at least once (it writes a status)."""
    return api.get(CronJob, "backup").status is not None


def test_fires_at_the_scheduled_minute(
    api: Api, clock: ManualClock, start_manager, wait_for
) -> None:
    start_manager([CronJobController])
    api.create(cronjob())
    wait_for(lambda: seen(api))
    assert jobs(api) == []
    clock.advance(5 * 60)
    wait_for(lambda: len(jobs(api)) == 1, what="the 08:05 run")
    (job,) = jobs(api)
    fired = datetime(2027, 1, 15, 8, 5, tzinfo=UTC)
    assert job.name == run_name("backup", fired)
    assert job.metadata.annotations[SCHEDULED_ANNOTATION] == "2027-01-15T08:05:00Z"
    assert job.labels == {"app": "backup"}
    assert job.metadata.owner_references[0].kind == "CronJob"
    assert job.spec.template.spec.restart_policy == "OnFailure"
    wait_for(lambda: api.get(CronJob, "backup").status.last_schedule_time == fired)
    status = api.get(CronJob, "backup").status
    assert [ref.name for ref in status.active] == [job.name]


def test_time_zone_decides_the_wall_clock(
    api: Api, clock: ManualClock, start_manager, wait_for
) -> None:
    start_manager([CronJobController])
    # 09:00 in Tokyo (UTC+9) is 00:00 UTC the next day: 16 hours after the start.
    api.create(cronjob(schedule="0 9 * * *", timeZone="Asia/Tokyo"))
    wait_for(lambda: seen(api))
    clock.advance(16 * 3600 - 60)
    clock.advance(60)
    wait_for(lambda: len(jobs(api)) == 1, what="the 09:00 JST run")
    assert jobs(api)[0].metadata.annotations[SCHEDULED_ANNOTATION] == "2027-01-16T00:00:00Z"


def test_forbid_waits_for_the_active_job(
    api: Api, clock: ManualClock, start_manager, wait_for
) -> None:
    start_manager([CronJobController])
    api.create(cronjob(schedule="* * * * *", concurrencyPolicy="Forbid"))
    wait_for(lambda: seen(api))
    clock.advance(60)
    wait_for(lambda: len(jobs(api)) == 1, what="the 08:01 run")
    clock.advance(60)
    backup = api.get(CronJob, "backup")
    wait_for(
        lambda: any(e.reason == "JobAlreadyActive" for e in api.list_events(involved=backup)),
        what="the 08:02 run held back",
    )
    assert [j.name for j in jobs(api)] == [run_name("backup", START.replace(minute=1))]
    finish(api, clock, jobs(api)[0].name)
    wait_for(lambda: len(jobs(api)) == 2, what="the 08:02 run once 08:01 finished")
    assert jobs(api)[1].name == run_name("backup", START.replace(minute=2))


def test_replace_deletes_the_active_job(
    api: Api, clock: ManualClock, start_manager, wait_for
) -> None:
    start_manager([CronJobController])
    api.create(cronjob(schedule="* * * * *", concurrencyPolicy="Replace"))
    wait_for(lambda: seen(api))
    clock.advance(60)
    wait_for(lambda: len(jobs(api)) == 1)
    clock.advance(60)
    second = run_name("backup", START.replace(minute=2))
    wait_for(lambda: [j.name for j in jobs(api)] == [second], what="08:01 replaced by 08:02")


def test_history_limits_keep_the_newest_finished_jobs(
    api: Api, clock: ManualClock, start_manager, wait_for
) -> None:
    start_manager([CronJobController])
    api.create(
        cronjob(schedule="* * * * *", successfulJobsHistoryLimit=1, failedJobsHistoryLimit=1)
    )
    wait_for(lambda: seen(api))
    names = []
    for minute, outcome in ((1, "Complete"), (2, "Failed"), (3, "Complete"), (4, "Failed")):
        clock.advance(60)
        name = run_name("backup", START.replace(minute=minute))
        wait_for(lambda n=name: n in [j.name for j in jobs(api)], what=name)
        finish(api, clock, name, outcome)
        names.append(name)
    wait_for(lambda: [j.name for j in jobs(api)] == names[2:], what="only the newest of each")
    last_success = api.get(CronJob, "backup").status.last_successful_time
    assert last_success == START.replace(minute=3)


def test_suspended_cronjob_starts_nothing_until_resumed(
    api: Api, clock: ManualClock, start_manager, wait_for
) -> None:
    start_manager([CronJobController])
    api.create(cronjob(schedule="* * * * *", suspend=True))
    wait_for(lambda: seen(api))
    clock.advance(90)
    live = api.get(CronJob, "backup")
    api.update(live.model_copy(update={"spec": live.spec.model_copy(update={"suspend": False})}))
    # Resumed at 08:01:30: the latest fire time (08:01) runs, once.
    wait_for(lambda: len(jobs(api)) == 1)
    assert jobs(api)[0].name == run_name("backup", START.replace(minute=1))


def test_starting_deadline_skips_a_run_that_is_too_late(
    api: Api, clock: ManualClock, start_manager, wait_for
) -> None:
    start_manager([CronJobController])
    api.create(cronjob(schedule="0 * * * *", startingDeadlineSeconds=60, suspend=True))
    wait_for(lambda: seen(api))
    clock.advance(3600 + 120)  # 09:02: the 09:00 run is two minutes late
    live = api.get(CronJob, "backup")
    api.update(live.model_copy(update={"spec": live.spec.model_copy(update={"suspend": False})}))
    wait_for(
        lambda: any(e.reason == "MissSchedule" for e in api.list_events(involved=live)),
        what="the 09:00 run given up",
    )
    assert jobs(api) == []
    clock.advance(3600 - 119)  # 10:00:01
    wait_for(lambda: len(jobs(api)) == 1, what="the 10:00 run")
    assert jobs(api)[0].name == run_name("backup", START.replace(hour=10))
