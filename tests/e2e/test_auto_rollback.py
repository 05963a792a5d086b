"""Auto-rollback end to end: ``capstan up`` on a remote, real Docker, a crash-looping commit.

Two Deployments opt in (``capstan.io/auto-rollback: "true"``); their containers fail once on
each pod's first start, then serve. A commit makes one of them run a container that exits 3
at every start. Capstan must push exactly one revert commit (marked with
its trailer) within 60 s, bring that Deployment's old ReplicaSet back serving, leave the
other Deployment untouched, and then stay quiet: no further commit for 60 s while resyncs
run and the agent keeps reporting pod status.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from reconciler.sync import read_sync_state
from reconciler.sync.autorollback import REVERT_TRAILER
from reconciler.sync.pins import read_claims, read_pins
from schemas import Deployment, Pod, ReplicaSet
from tests.e2e.conftest import CapstanUp, GitRepo, pod_endpoint, try_fetch
from tests.fixtures.waiting import wait_until

QUIET_S = 60.0

NODE = """\
apiVersion: v1
kind: Node
metadata:
  name: local
spec:
  address: local
"""


def deployment(name: str, version: str, *, replicas: int, crash: bool = False) -> str:
    # A good container fails once, on its pod's first start (as an app waiting for a
    # dependency does), then serves: Kubernetes restarts it at once and never calls that a
    # crash loop. A bad one exits 3 at every start.
    script = (
        "exit 3"
        if crash
        else "if [ ! -e /state/started ]; then touch /state/started; exit 1; fi; "
        f"mkdir -p /www && echo {name} {version} > /www/index.html && "
        "exec httpd -f -p 8080 -h /www"
    )
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  annotations:
    capstan.io/auto-rollback: "true"
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
      annotations:
        example.com/version: "{version}"
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: capstan.local/busybox:1
          command: ["sh", "-c", "{script}"]
          ports:
            - containerPort: 8080
          readinessProbe:
            httpGet:
              path: /
              port: 8080
            periodSeconds: 1
          volumeMounts:
            - name: state
              mountPath: /state
      volumes:
        - name: state
          emptyDir: {{}}
"""


class Remote(GitRepo):
    """A bare repository: what ``capstan up`` tracks and where the revert is pushed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "--bare", "-b", "main")

    def commits_after(self, sha: str) -> list[str]:
        return self.git("rev-list", f"{sha}..main").split()


@pytest.fixture
def cluster(
    docker_client: docker.DockerClient, tmp_path: Path
) -> Iterator[tuple[CapstanUp, GitRepo, Remote]]:
    remote = Remote(tmp_path / "remote.git")
    work = GitRepo(tmp_path / "work")
    work.git("remote", "add", "origin", str(remote.path))
    work.commit(
        "v1",
        {
            "node.yaml": NODE,
            "api.yaml": deployment("api", "v1", replicas=4),
            "web.yaml": deployment("web", "v1", replicas=1),
        },
    )
    work.git("push", "-q", "origin", "main")
    capstan = CapstanUp(remote, tmp_path, docker_client)
    try:
        capstan.start()
        yield capstan, work, remote
    finally:
        capstan.close()


def serving(up: CapstanUp, app: str) -> set[str]:
    return {try_fetch(*pod_endpoint(p)) or "<no answer>" for p in up.ready_pods(app)}


def replicasets(up: CapstanUp, app: str) -> dict[str, int]:
    return {
        rs.name: rs.spec.replicas
        for rs in up.api.list(ReplicaSet, namespace="default").items
        if rs.metadata.labels.get("app") == app
    }


def pushed_events(up: CapstanUp) -> list[str]:
    return [
        e.message
        for e in up.api.list_events(namespace="default")
        if e.reason == "AutoRollback" and "pushed revert" in e.message
    ]


def test_crash_looping_commit_is_reverted_once_and_only_its_deployment(
    cluster: tuple[CapstanUp, GitRepo, Remote],
) -> None:
    up, work, remote = cluster
    wait_until(
        lambda: (
            serving(up, "api") == {"api v1"}
            and len(up.ready_pods("api")) == 4
            and serving(up, "web") == {"web v1"}
        ),
        timeout=90,
        what="v1 serving",
    )
    [api_v1_rs] = replicasets(up, "api")
    web_before = (
        replicasets(up, "web"),
        {p.metadata.uid for p in up.pods("web")},
        up.api.get(Deployment, "web", namespace="default").metadata.generation,
    )

    bad = work.commit(
        "api v2: exits 3 at start", {"api.yaml": deployment("api", "v2", replicas=4, crash=True)}
    )
    work.git("push", "-q", "origin", "main")

    # Exactly one revert commit on the remote within 60 s, marked as Capstan's.
    wait_until(
        lambda: remote.commits_after(bad), timeout=60, what="the revert commit", interval=0.2
    )
    reverted_at = time.monotonic()
    [revert] = remote.commits_after(bad)
    message = remote.git("log", "-1", "--format=%B", revert)
    assert f"{REVERT_TRAILER}: {bad}" in message
    assert message.startswith(f"Revert {bad[:12]}: auto-rollback of Deployment default/api")

    # The old ReplicaSet serves again; the sync loop applied the revert (Git head = live).
    wait_until(
        lambda: up.status()["sync"]["liveCommit"] == revert, timeout=30, what="the revert live"
    )
    wait_until(
        lambda: (
            serving(up, "api") == {"api v1"}
            and len(up.ready_pods("api")) == 4
            and replicasets(up, "api")[api_v1_rs] == 4
            and len(up.pods("api")) == 4
        ),
        timeout=60,
        what="api v1 back",
    )
    assert read_pins(up.api) == {}  # the revert is in Git: the pin lapsed
    assert set(read_claims(up.api)) == {bad}

    # Quiet: for 60 s after the revert no further commit, while the controller has its
    # chances — resyncs run (the sync state counts them) and the agent reports status for
    # the current template's pods (a container removed by hand is recreated and reported).
    first_resync = read_sync_state(up.api).last_resync_at
    victim = up.ready_pods("api")[0]
    container = next(
        c
        for c in up.containers()
        if c["labels"].get("io.capstan.pod-uid") == victim.metadata.uid
        and c["labels"].get("io.capstan.container") == "main"
    )
    up.docker.api.remove_container(container["id"], force=True)

    def reported_again() -> bool:
        pod = up.api.get(Pod, victim.name, namespace="default")
        statuses = pod.status.container_statuses if pod.status else []
        return (
            bool(statuses)
            and statuses[0].container_id != f"docker://{container['id']}"
            and pod.status is not None
            and pod.status.ready
        )

    def quiet_period_over() -> bool:
        assert remote.commits_after(bad) == [revert], remote.git("log", "--oneline", "-5")
        state = read_sync_state(up.api)
        return (
            time.monotonic() - reverted_at >= QUIET_S
            and state.quiet_resyncs >= 10
            and state.last_resync_at != first_resync
            and reported_again()
        )

    # Polled each second: a git process and three store reads per look.
    wait_until(quiet_period_over, timeout=QUIET_S + 60, what="60 quiet seconds", interval=1.0)
    assert remote.git("rev-parse", "main") == revert
    assert len(pushed_events(up)) == 1
    assert serving(up, "api") == {"api v1"}

    # The other Deployment was never touched: same ReplicaSet, same pods, same spec.
    web_after = (
        replicasets(up, "web"),
        {p.metadata.uid for p in up.pods("web")},
        up.api.get(Deployment, "web", namespace="default").metadata.generation,
    )
    assert web_after == web_before
    # Never rolled back. (Under a loaded machine web may be seen failing for a moment; a Hold
    # notice about it is fine, a rollback or a revert of it is not.)
    assert not [
        e
        for e in up.api.list_events(namespace="default")
        if e.reason == "AutoRollback"
        and e.involved_object.name == "web"
        and (e.message.startswith("auto-rollback of") or "revert" in e.message)
    ]
