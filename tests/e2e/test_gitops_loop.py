"""The GitOps loop end to end: commits to a real repository drive containers through ``capstan up``.

One ``capstan up`` (a child process: store, controllers, scheduler, dispatcher, the local
agent it starts, Docker) serves the module, but no test depends on another: before each,
``baseline`` puts the repository back to v1 (a commit when anything differs), restarts
``capstan up`` if a test left it stopped, and waits until v1 is live, Synced and serving on
two pods. So any one test runs alone, and the file runs in any order.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest

from reconciler.sync import read_sync_state
from schemas import ConfigMap, Deployment, ReplicaSet
from tests.e2e.conftest import CapstanUp, pod_endpoint, started_up, try_fetch
from tests.fixtures.waiting import wait_until

NODE_PORT = random.randint(31000, 32700)

NODE = """\
apiVersion: v1
kind: Node
metadata:
  name: local
spec:
  address: local
"""


def page(version: str) -> str:
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: page-{version}
data:
  index.html: "hello {version}"
"""


def deployment(version: str, *, replicas: int = 2) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: web
      annotations:
        example.com/version: "{version}"
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: httpd
          image: capstan.local/busybox:1
          command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
          ports:
            - name: http
              containerPort: 8080
          readinessProbe:
            httpGet:
              path: /
              port: http
            periodSeconds: 1
          volumeMounts:
            - name: page
              mountPath: /www
      volumes:
        - name: page
          configMap:
            name: page-{version}
"""


SERVICE = f"""\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
    - name: http
      port: 80
      targetPort: http
      nodePort: {NODE_PORT}
"""


def version_files(version: str) -> dict[str, str]:
    return {"page.yaml": page(version), "web/deployment.yaml": deployment(version)}


BASELINE = {"node.yaml": NODE, "service.yaml": SERVICE, **version_files("v1")}


@pytest.fixture(scope="module")
def up(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CapstanUp]:
    with started_up(docker_client, tmp_path_factory, "gitops", BASELINE) as capstan:
        yield capstan


@pytest.fixture(autouse=True)
def baseline(up: CapstanUp) -> CapstanUp:
    """v1 live, Synced and serving on two pods, whatever the previous test left."""
    if up.proc is None:
        up.start()
    tracked = set(up.repo.git("ls-files").split())
    stale = tuple(sorted(tracked - set(BASELINE)))
    changed = any(
        not (up.repo.path / name).exists() or (up.repo.path / name).read_text() != text
        for name, text in BASELINE.items()
    )
    if changed or stale:
        up.repo.commit("baseline: v1", BASELINE, remove=stale)
    head = up.repo.head()

    def settled() -> bool:
        sync = read_sync_state(up.api)
        return (
            sync.live_commit == head
            and sync.last_attempt_commit == head
            and web_ready(up, "v1")
            and len(up.app_containers()) == 2
        )

    wait_until(settled, timeout=90, what="the v1 baseline live and serving")
    return up


def serving(up: CapstanUp) -> set[str]:
    """What every ready web pod answers on its published port."""
    answers = set()
    for pod in up.ready_pods():
        answer = try_fetch(*pod_endpoint(pod))
        answers.add(answer or "<no answer>")
    return answers


def web_ready(up: CapstanUp, version: str, replicas: int = 2) -> bool:
    pods = up.ready_pods()
    return (
        len(pods) == replicas and len(up.pods()) == replicas and serving(up) == {f"hello {version}"}
    )


def test_push_v1_runs_pods_ready_and_serving(up: CapstanUp) -> None:
    wait_until(lambda: web_ready(up, "v1"), timeout=60, what="v1 pods Ready and serving")
    status = up.status()
    assert status["sync"]["state"] == "Synced"
    assert status["sync"]["liveCommit"] == up.repo.head()
    assert [a["health"] for a in status["apps"]] == ["Healthy"]
    assert status["nodes"][0]["ready"] == "True"
    assert status["nodes"][0]["agent"] == "Connected"
    assert len(up.app_containers()) == 2
    table = up.cli("get", "pods")
    assert table.count("Running") == 2


def test_push_v2_rolls_out_without_dropping_below_replicas(up: CapstanUp) -> None:
    v1_uids = {p.metadata.uid for p in up.pods()}
    low_water: list[int] = []
    stop = threading.Event()

    def watch_ready() -> None:
        while not stop.is_set():
            low_water.append(len(up.ready_pods()))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_ready, daemon=True)
    watcher.start()
    try:
        up.repo.commit("v2", version_files("v2"))
        wait_until(lambda: web_ready(up, "v2"), timeout=60, what="v2 rolled out")
    finally:
        stop.set()
        watcher.join()
    assert not v1_uids & {p.metadata.uid for p in up.pods()}
    # maxUnavailable 0: at least `replicas` ready pods at every moment of the rollout.
    assert min(low_water) >= 2
    wait_until(lambda: len(up.app_containers()) == 2, timeout=20, what="old containers gone")


def test_invalid_commit_changes_nothing_and_names_file_and_line(up: CapstanUp) -> None:
    live = up.repo.head()
    before = {p.metadata.uid for p in up.pods()}
    bad = deployment("v3").replace("replicas: 2", "replicas: two")
    up.repo.commit("broken", {"web/deployment.yaml": bad})

    def failed() -> dict[str, object] | None:
        sync = up.status()["sync"]
        return sync if sync.get("lastOutcome") == "Failed" else None

    sync = wait_until(failed, timeout=30, what="the invalid commit to be refused")
    assert isinstance(sync, dict)
    assert sync["liveCommit"] == live
    assert sync["state"] == "OutOfSync"
    errors = sync["failed"]["errors"]  # type: ignore[index]
    assert any(e.startswith("web/deployment.yaml:6:3:") and "replicas" in e for e in errors), errors
    human = up.cli("status")
    assert "web/deployment.yaml:6:3:" in human
    # Two resyncs after the refusal re-applied the live commit and found nothing to change.
    quiet = read_sync_state(up.api).quiet_resyncs
    wait_until(
        lambda: (
            (s := read_sync_state(up.api)).quiet_resyncs >= quiet + 2
            and s.last_resync_commit == live
        ),
        timeout=30,
        what="two quiet resyncs of the live commit",
    )
    assert {p.metadata.uid for p in up.pods()} == before
    assert serving(up) == {"hello v1"}


def test_revert_brings_v1_back_reusing_its_replicaset(up: CapstanUp) -> None:
    v1_rs = {
        rs.name
        for rs in up.api.list(ReplicaSet, namespace="default").items
        if rs.spec.template.metadata.annotations.get("example.com/version") == "v1"
    }
    assert len(v1_rs) == 1
    v2 = up.repo.commit("v2", version_files("v2"))
    wait_until(lambda: web_ready(up, "v2"), timeout=60, what="v2 rolled out")
    up.repo.revert(v2)
    wait_until(lambda: web_ready(up, "v1"), timeout=60, what="v1 back")
    owners = {p.metadata.owner_references[0].name for p in up.pods()}
    assert owners == v1_rs
    assert up.status()["sync"]["state"] == "Synced"


def test_container_removed_by_hand_comes_back_counted_as_a_restart(up: CapstanUp) -> None:
    name, container_id = sorted(up.app_containers().items())[0]
    pod = next(
        c["labels"]["io.capstan.pod-name"] for c in up.containers() if c["id"] == container_id
    )
    prefix, attempt = name.rsplit("_", 1)
    restarts = restart_count(up, pod)
    up.docker.api.remove_container(container_id, force=True)
    started = time.monotonic()
    wait_until(
        lambda: len(up.app_containers()) == 2 and container_id not in up.app_containers().values(),
        timeout=60,
        what="container replaced",
    )
    wait_until(lambda: web_ready(up, "v1"), timeout=60, what="serving again")
    # Measured, not asserted: how soon depends on the machine's load (the agent wakes on the
    # Docker event, and its periodic resync would catch a lost one).
    print(f"\nremoved container replaced and serving again in {time.monotonic() - started:.2f} s")
    # Counted as Kubernetes counts it: a restart, the removed attempt as the last state.
    assert f"{prefix}_{int(attempt) + 1}" in up.app_containers()
    wait_until(
        lambda: restart_count(up, pod) == restarts + 1,
        timeout=60,
        what=f"RESTARTS {restarts + 1} in capstan get pods",
    )
    described = up.cli("describe", "pod", pod)
    assert "Last State:     Terminated (ContainerStatusUnknown, exit code 137)" in described
    assert f"Restart Count:  {restarts + 1}" in described


def restart_count(up: CapstanUp, pod: str) -> int:
    """The RESTARTS column of ``pod`` in ``capstan get pods``."""
    row = next(line for line in up.cli("get", "pods").splitlines() if pod in line)
    return int(row.split()[3])


def test_agent_killed_and_node_emptied_converges_again(up: CapstanUp) -> None:
    pid = up.agent_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    for container in up.containers(running_only=False):
        up.docker.api.remove_container(container["id"], force=True)
    # capstan up restarts its agent; the dispatcher reconnects and pushes the full set.
    wait_until(lambda: web_ready(up, "v1"), timeout=30, what="pods back on an emptied node")
    assert up.agent_pid() not in (None, pid)
    assert len(up.app_containers()) == 2


def test_deleting_a_manifest_prunes_objects_and_containers(up: CapstanUp) -> None:
    up.repo.commit("drop web", remove=("web/deployment.yaml",))
    wait_until(
        lambda: not up.api.list(Deployment, namespace="default").items,
        timeout=30,
        what="Deployment pruned",
    )
    wait_until(lambda: not up.pods(), timeout=30, what="pods gone")
    wait_until(lambda: not up.containers(), timeout=30, what="containers gone")
    # The ConfigMap is still in Git: it stays.
    assert up.api.get(ConfigMap, "page-v1", namespace="default")


def test_restarting_capstan_up_restarts_no_container(up: CapstanUp) -> None:
    before = up.app_containers()
    assert len(before) == 2
    up.stop()
    assert up.app_containers() == before  # containers outlive the control plane
    restarted = datetime.now(UTC)
    up.start()
    wait_until(
        lambda: up.status()["nodes"][0]["agent"] == "Connected",
        timeout=30,
        what="agent reconnected",
    )
    # The new control plane had its chances: the agent took a desired set it pushed (a
    # reconciler numbers its pushes from its start's wall clock in milliseconds, so only the
    # new one's are this high), and a resync re-applied the live commit.
    wait_until(
        lambda: max(applied_generations(up), default=0) >= restarted.timestamp() * 1000,
        timeout=30,
        what="the agent to apply a desired set the restarted control plane pushed",
    )
    wait_until(
        lambda: (at := read_sync_state(up.api).last_resync_at) is not None and at > restarted,
        timeout=30,
        what="a resync after the restart",
    )
    assert up.app_containers() == before
    assert web_ready(up, "v1")
    # ...and the sync resumed: a new commit after the restart is applied.
    up.repo.commit("v2 again", version_files("v2"))
    wait_until(lambda: web_ready(up, "v2"), timeout=60, what="v2 after restart")


def applied_generations(up: CapstanUp) -> list[int]:
    """The generations of the desired sets the local agent took, from its log."""
    log = up.state_dir / "agent" / "agent.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return [int(g) for g in re.findall(r"applied generation (\d+)", text)]


def test_status_and_get_outputs(up: CapstanUp, tmp_path: Path) -> None:
    assert "web" in up.cli("get", "deploy", "-o", "wide")
    assert '"kind": "List"' in up.cli("get", "pods", "-o", "json")
    described = up.cli("describe", "deploy", "web")
    assert "Conditions:" in described
    assert "Source:" in described
    assert "ScalingReplicaSet" in up.cli("events")
