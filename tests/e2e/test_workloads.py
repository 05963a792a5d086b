"""Job (and the workload kinds beside Deployment) for real: ``capstan up`` on a Git repository,
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
from schemas.storage import PersistentVolumeClaim
from tests.e2e.conftest import MANAGED_LABEL, CapstanUp, GitRepo
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


def statefulset(marker: str) -> str:
    """Each pod writes its first start time (the host's uptime) once into its claim, and on
    every start appends ``marker`` (the template version) to a log there."""
    return f"""\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  replicas: 2
  serviceName: db
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
        - name: main
          image: {BUSYBOX}
          command:
            - sh
            - -c
            - >-
              test -f /data/first || cut -d' ' -f1 /proc/uptime > /data/first;
              echo {marker} >> /data/log; sleep 3600
          volumeMounts:
            - name: data
              mountPath: /data
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: ["ReadWriteOnce"]
        resources:
          requests:
            storage: 1Gi
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
    jobs = {j["name"]: j for j in up.status()["jobs"]}
    assert (jobs["ok"]["health"], jobs["ok"]["succeeded"]) == ("Healthy", 2)
    assert jobs["bad"]["health"] == "Degraded"


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


def read_claim(up: CapstanUp, pod: str, path: str) -> str:
    """``cat path`` inside the running app container of ``pod`` (its claim is mounted at /data)."""
    (container,) = up.docker.containers.list(
        filters={
            "label": [
                f"{MANAGED_LABEL}={up.node}",
                f"io.capstan.pod-name={pod}",
                "io.capstan.container=main",
            ]
        }
    )
    code, output = container.exec_run(["cat", path])
    assert code == 0, output
    return str(output.decode())


@pytest.fixture
def stateful(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[CapstanUp]:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("db v1", {"node.yaml": NODE, "db.yaml": statefulset("v1")})
    up = CapstanUp(repo, tmp_path, docker_client)
    try:
        up.start()
        yield up
    finally:
        up.close()
        for volume in docker_client.volumes.list(filters={"name": f"capstan-pvc.{up.node}."}):
            volume.remove(force=True)


def test_statefulset_keeps_its_data_across_a_restart_and_a_rollout(stateful: CapstanUp) -> None:
    up = stateful
    wait_until(lambda: len(up.ready_pods("db")) == 2, timeout=90, what="db-0 and db-1 Ready")
    assert [p.name for p in up.pods("db")] == ["db-0", "db-1"]
    first = {name: read_claim(up, name, "/data/first") for name in ("db-0", "db-1")}
    # Ordered start: db-1 wrote its start time after db-0 (db-1 waited for db-0 to be Ready).
    assert float(first["db-0"]) < float(first["db-1"])

    # A pod deleted is made again under the same name, on the same claim.
    old_uid = up.pods("db")[0].metadata.uid
    up.api.delete(Pod, "db-0", namespace="default")
    wait_until(
        lambda: any(p.name == "db-0" and p.metadata.uid != old_uid for p in up.ready_pods("db")),
        timeout=60,
        what="db-0 made again and Ready",
    )
    assert read_claim(up, "db-0", "/data/first") == first["db-0"]
    assert read_claim(up, "db-0", "/data/log").split() == ["v1", "v1"]

    # A rollout (a new template) replaces both pods; each finds its own data.
    up.repo.commit("db v2", {"db.yaml": statefulset("v2")})

    def rolled() -> bool:
        pods = up.ready_pods("db")
        return len(pods) == 2 and all(
            "echo v2" in " ".join(p.spec.containers[0].command) for p in pods
        )

    wait_until(rolled, timeout=120, what="both pods on the v2 template")
    # Ordered stop: the rollout stopped and replaced db-1 before it touched db-0.
    made = {p.name: p.metadata.creation_timestamp for p in up.pods("db")}
    assert made["db-1"] is not None
    assert made["db-0"] is not None
    assert made["db-1"] < made["db-0"]
    for name in ("db-0", "db-1"):
        assert read_claim(up, name, "/data/first") == first[name]
        assert read_claim(up, name, "/data/log").split()[-1] == "v2"
    claims = {c.name: c for c in up.api.list(PersistentVolumeClaim, namespace="default").items}
    assert sorted(claims) == ["data-db-0", "data-db-1"]
    assert all(c.bound_node == up.pods("db")[0].spec.node_name for c in claims.values())
