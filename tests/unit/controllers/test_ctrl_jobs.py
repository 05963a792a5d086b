"""The job controller on a real store with the real controller manager; the test plays the
kubelet by writing pod phases (the Docker version is tests/e2e/test_workloads.py)."""

from __future__ import annotations

from reconciler.api import Api, ApiError, ManualClock, NotFound
from reconciler.controllers.gc import GarbageCollector
from reconciler.controllers.job import (
    COMPLETION_INDEX,
    JOB_NAME_LABEL,
    JobController,
    compress_indexes,
)
from schemas import ContainerState, ContainerStateRunning, ContainerStatus, Pod, PodStatus
from schemas.batch import Job


def job(name: str = "migrate", *, policy: str = "Never", **spec: object) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "restartPolicy": policy,
                    "containers": [{"name": "c", "image": "busybox"}],
                },
            },
            **spec,
        },
    }


def pods_of(api: Api, name: str, *, phase: str | None = None) -> list[Pod]:
    pods = api.list(Pod, label_selector={JOB_NAME_LABEL: name}).items
    return [
        p for p in pods if phase is None or (p.status.phase if p.status else "Pending") == phase
    ]


def running(api: Api, name: str) -> list[Pod]:
    return [
        p
        for p in pods_of(api, name)
        if p.metadata.deletion_timestamp is None
        and (p.status.phase if p.status else "Pending") in ("Pending", "Running")
    ]


def finish(api: Api, pod: Pod, phase: str, *, restarts: int = 0) -> None:
    """What a kubelet reports when the pod's container exits (or restarted, under OnFailure)."""
    statuses = [
        ContainerStatus(
            name="c",
            image="busybox",
            restart_count=restarts,
            state=ContainerState(running=ContainerStateRunning()),
        )
    ]
    for _ in range(50):
        try:
            fresh = api.get(Pod, pod.name)
            api.update_status(
                fresh.model_copy(
                    update={"status": PodStatus(phase=phase, container_statuses=statuses)}
                )
            )  # type: ignore[arg-type]
            return
        except ApiError:
            continue
    raise AssertionError(f"could not finish {pod.name}")


def status(api: Api, name: str):
    return api.get(Job, name).status


def test_completions_with_parallelism_run_to_complete(api: Api, start_manager, wait_for) -> None:
    start_manager([JobController])
    api.create(job(completions=3, parallelism=2))
    wait_for(lambda: len(running(api, "migrate")) == 2, what="two pods at once")
    first = running(api, "migrate")
    assert all(p.labels["app"] == "migrate" and p.name.startswith("migrate-") for p in first)
    assert all(p.metadata.owner_references[0].kind == "Job" for p in first)
    for pod in first:
        finish(api, pod, "Succeeded")
    # Two done, one left: exactly one more pod, never more than completions.
    wait_for(
        lambda: (
            len(running(api, "migrate")) == 1 and (s := status(api, "migrate")) and s.succeeded == 2
        ),
        what="the third pod",
    )
    assert len(pods_of(api, "migrate")) == 3
    finish(api, running(api, "migrate")[0], "Succeeded")
    wait_for(lambda: (s := status(api, "migrate")) and s.finished == "Complete", what="Complete")
    s = status(api, "migrate")
    assert (s.active, s.succeeded, s.failed) == (0, 3, 0)
    assert s.completion_time is not None
    assert s.start_time is not None
    assert len(pods_of(api, "migrate")) == 3  # finished pods are kept


def test_failing_job_stops_at_backoff_limit(api: Api, start_manager, wait_for) -> None:
    start_manager([JobController])
    api.create(job(backoffLimit=2))
    for attempt in range(3):
        wait_for(lambda: len(running(api, "migrate")) == 1, what=f"attempt {attempt + 1}")
        finish(api, running(api, "migrate")[0], "Failed")
    wait_for(lambda: (s := status(api, "migrate")) and s.finished == "Failed", what="Failed")
    s = status(api, "migrate")
    assert (s.failed, s.succeeded, s.active) == (3, 0, 0)
    condition = s.condition("Failed")
    assert condition is not None
    assert condition.reason == "BackoffLimitExceeded"
    assert len(pods_of(api, "migrate")) == 3  # backoffLimit 2: one try and two retries
    assert running(api, "migrate") == []


def test_on_failure_restarts_count_against_backoff_limit(api: Api, start_manager, wait_for) -> None:
    start_manager([JobController])
    api.create(job(policy="OnFailure", backoffLimit=1))
    wait_for(lambda: len(running(api, "migrate")) == 1)
    (pod,) = running(api, "migrate")
    finish(api, pod, "Running", restarts=2)  # the kubelet restarted the container twice
    wait_for(lambda: (s := status(api, "migrate")) and s.finished == "Failed", what="Failed")
    assert status(api, "migrate").failed == 2
    wait_for(lambda: running(api, "migrate") == [], what="the running pod deleted")


def test_active_deadline_fails_the_job(
    api: Api, clock: ManualClock, start_manager, wait_for
) -> None:
    start_manager([JobController])
    api.create(job(activeDeadlineSeconds=60))
    wait_for(lambda: len(running(api, "migrate")) == 1)
    wait_for(lambda: (s := status(api, "migrate")) and s.start_time is not None)
    clock.advance(59)
    api.create(job("other"))  # an event that shows the controller ran after the advance
    wait_for(lambda: status(api, "other") is not None)
    assert status(api, "migrate").finished is None
    clock.advance(2)
    wait_for(
        lambda: (s := status(api, "migrate")) and s.finished == "Failed", what="DeadlineExceeded"
    )
    assert status(api, "migrate").condition("Failed").reason == "DeadlineExceeded"
    wait_for(lambda: running(api, "migrate") == [], what="its pod deleted")


def test_ttl_after_finished_deletes_job_and_pods(
    api: Api, clock: ManualClock, start_manager, wait_for
) -> None:
    start_manager([JobController, GarbageCollector])
    api.create(job(ttlSecondsAfterFinished=100))
    wait_for(lambda: len(running(api, "migrate")) == 1)
    finish(api, running(api, "migrate")[0], "Succeeded")
    wait_for(lambda: (s := status(api, "migrate")) and s.finished == "Complete")
    clock.advance(101)

    def gone() -> bool:
        try:
            api.get(Job, "migrate")
        except NotFound:
            return not pods_of(api, "migrate")
        return False

    wait_for(gone, what="Job and pods deleted after the TTL")


def test_suspended_job_runs_no_pods_until_resumed(api: Api, start_manager, wait_for) -> None:
    start_manager([JobController])
    api.create(job(suspend=True))
    api.create(job("other"))
    wait_for(lambda: len(running(api, "other")) == 1)  # the controller is at work
    wait_for(lambda: status(api, "migrate") is not None)
    assert pods_of(api, "migrate") == []
    live = api.get(Job, "migrate")
    api.update(live.model_copy(update={"spec": live.spec.model_copy(update={"suspend": False})}))
    wait_for(lambda: len(running(api, "migrate")) == 1, what="a pod after resuming")


def test_indexed_job_runs_each_index_once_and_retries_a_failed_one(
    api: Api, start_manager, wait_for
) -> None:
    start_manager([JobController])
    api.create(job(completions=3, parallelism=2, completionMode="Indexed"))
    wait_for(lambda: len(running(api, "migrate")) == 2, what="two indexed pods")

    def index_of(pod: Pod) -> str:
        return pod.metadata.annotations[COMPLETION_INDEX]

    first = sorted(running(api, "migrate"), key=index_of)
    assert [index_of(p) for p in first] == ["0", "1"]
    assert first[1].labels[COMPLETION_INDEX] == "1"
    assert first[1].name.startswith("migrate-1-")
    assert first[1].spec.hostname == "migrate-1"
    env = {e.name: e.value for e in first[1].spec.containers[0].env}
    assert env["JOB_COMPLETION_INDEX"] == "1"
    finish(api, first[1], "Succeeded")
    finish(api, first[0], "Failed")
    # Index 0 is tried again, index 2 starts; index 1 is done and never runs again.
    wait_for(
        lambda: sorted(index_of(p) for p in running(api, "migrate")) == ["0", "2"],
        what="index 0 again and index 2",
    )
    wait_for(
        lambda: (s := status(api, "migrate")) and (s.completed_indexes, s.failed) == ("1", 1),
        what="index 1 recorded done, one failure counted",
    )
    for pod in running(api, "migrate"):
        finish(api, pod, "Succeeded")
    wait_for(lambda: (s := status(api, "migrate")) and s.finished == "Complete", what="Complete")
    s = status(api, "migrate")
    assert (s.succeeded, s.completed_indexes) == (3, "0-2")


def test_completed_indexes_are_written_as_kubernetes_writes_them() -> None:
    assert compress_indexes([4, 0, 2, 1]) == "0-2,4"
    assert compress_indexes([]) is None
