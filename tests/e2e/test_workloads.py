"""Job (and the workload kinds beside Deployment) for real: `capstan up` on a Git repository,
the local Docker node running the pods."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import docker
import pytest

from reconciler.controllers.cronjob import SCHEDULED_ANNOTATION
from schemas import DaemonSet, Pod
from schemas.batch import Job
from tests.e2e.conftest import CapstanUp, GitRepo
from tests.e2e.test_gitops_loop import NODE
from tests.fixtures.local_agent import BUSYBOX
from tests.fixtures.waiting import wait_until


def job_manifest(name: str, script: str, **spec: object) -> str:
    extra = "".join(f"  {key}: {value}\n" for key, value in spec.items())
    return f"""\
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{extra}  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: {BUSYBOX}
          command: ["sh", "-c", "{script}"]
"""


CRONJOB = f"""\
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "* * * * *"
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
            - name: main
              image: {BUSYBOX}
              command: ["sh", "-c", "date"]
"""


DAEMONSET = f"""\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-agent
spec:
  selector:
    matchLabels:
      app: node-agent
  template:
    metadata:
      labels:
        app: node-agent
    spec:
      containers:
        - name: main
          image: {BUSYBOX}
          command: ["sleep", "3600"]
"""


@pytest.fixture
def capstan(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[CapstanUp]:
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "jobs",
        {
            "node.yaml": NODE,
            "ok.yaml": job_manifest("ok", "echo done", completions=2, parallelism=2),
            "bad.yaml": job_manifest("bad", "exit 3", backoffLimit=1),
            "cron.yaml": CRONJOB,
            "daemonset.yaml": DAEMONSET,
        },
    )
    up = CapstanUp(repo, tmp_path, docker_client)
    try:
        up.start()
        yield up
    finally:
        up.close()


def finished(up: CapstanUp, name: str) -> str | None:
    jobs = {j.name: j for j in up.api.list(Job, namespace="default").items}
    job = jobs.get(name)
    return job.status.finished if job is not None and job.status is not None else None


def test_job_runs_to_completion_and_a_failing_one_stops_at_backoff_limit(
    capstan: CapstanUp,
) -> None:
    up = capstan
    wait_until(lambda: finished(up, "ok") == "Complete", timeout=90, what="Job ok Complete")
    wait_until(lambda: finished(up, "bad") == "Failed", timeout=90, what="Job bad Failed")
    ok = up.api.get(Job, "ok", namespace="default")
    assert ok.status is not None
    assert (ok.status.succeeded, ok.status.failed, ok.status.active) == (2, 0, 0)
    bad = up.api.get(Job, "bad", namespace="default")
    assert bad.status is not None
    assert (bad.status.succeeded, bad.status.failed, bad.status.active) == (0, 2, 0)
    condition = bad.status.condition("Failed")
    assert condition is not None
    assert condition.reason == "BackoffLimitExceeded"
    # backoffLimit 1: the first try and one retry, both ran on Docker and exited 3.
    pods = [p for p in up.api.list(Pod, namespace="default").items if p.name.startswith("bad-")]
    assert len(pods) == 2
    for pod in pods:
        assert pod.status is not None
        assert pod.status.phase == "Failed"
        terminated = pod.status.container_statuses[0].state.terminated
        assert terminated is not None
        assert terminated.exit_code == 3
    table = up.cli("get", "jobs")
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert rows["ok"][1:3] == ["Complete", "2/2"]
    assert rows["bad"][1:3] == ["Failed", "0/1"]
    assert "BackoffLimitExceeded" in up.cli("describe", "job", "bad")


def test_cronjob_fires_at_the_next_minute(capstan: CapstanUp) -> None:
    up = capstan

    def runs() -> list[Job]:
        return [
            j
            for j in up.api.list(Job, namespace="default").items
            if j.metadata.owner_references and j.metadata.owner_references[0].kind == "CronJob"
        ]

    # The first fire time is at most a minute away; its Job then runs busybox's `date`.
    wait_until(
        lambda: any(j.status and j.status.finished == "Complete" for j in runs()),
        timeout=120,
        what="a CronJob run completed",
    )
    run = next(j for j in runs() if j.status and j.status.finished == "Complete")
    scheduled = datetime.fromisoformat(run.metadata.annotations[SCHEDULED_ANNOTATION])
    assert (scheduled.second, scheduled.microsecond) == (0, 0)  # on the minute
    assert run.name == f"tick-{int(scheduled.timestamp()) // 60}"
    created = run.metadata.creation_timestamp
    assert created is not None
    assert timedelta(0) <= created - scheduled < timedelta(seconds=30)
    table = up.cli("get", "cronjobs")
    assert table.splitlines()[1].split()[:2] == ["tick", "*"]


def test_daemonset_runs_one_pod_on_the_node(capstan: CapstanUp) -> None:
    up = capstan
    wait_until(lambda: len(up.ready_pods("node-agent")) == 1, timeout=60, what="the daemon Ready")
    (pod,) = up.pods("node-agent")
    node = pod.spec.node_name
    assert node is not None
    # Bound by the DaemonSet controller itself, and running on Docker on that node.
    assert pod.status is not None
    assert pod.status.container_statuses[0].state.running is not None
    ds = up.api.get(DaemonSet, "node-agent", namespace="default")
    wait_until(
        lambda: (
            (s := up.api.get(DaemonSet, "node-agent", namespace="default").status)
            and s.number_available == s.desired_number_scheduled == 1
        ),
        timeout=30,
        what="DaemonSet status",
    )
    assert ds.metadata.uid == pod.metadata.owner_references[0].uid
    row = up.cli("get", "ds").splitlines()[1].split()
    assert row[:6] == ["node-agent", "1", "1", "1", "1", "1"]
