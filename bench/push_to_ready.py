"""Commit → Ready: how long a ``git commit`` takes to become running, ready pods.

The whole real path of ``capstan up`` in this process (``reconciler.app.CapstanApp``: embedded
store, controllers, scheduler, node dispatcher, Git source watching a local repository with
watchdog) and two real nodes, each an sshd + ``capstan-agent serve`` pair on loopback
(``tests/fixtures/sshd.py``), running real containers in Docker. Each push changes the
Deployment's pod template (an annotation), so all 10 replicas are replaced
(RollingUpdate, maxSurge 100%, maxUnavailable 0); a push counts as done when every pod of
the new ReplicaSet is Ready.

Each push is split at these instants (wall clock, one machine):

- detect: commit → the sync loop has seen the new head;
- render+validate: → the sync of that commit starts applying (checkout, render, load);
- plan+apply: → the sync finished writing (its record's ``finishedAt``);
- schedule: → the last new pod is bound (its ``PodScheduled`` transition);
- push: → the last new container has started (the agent's ``startedAt``);
- container start: → the last new pod is Ready (readiness probe, status back in the API).

Printed next to it: what polling instead of watching would add to *detect* (a poll every P
seconds finds a commit after P/2 on average, and up to P).

Run from the repository root: ``.venv/bin/python bench/push_to_ready.py [--pushes 10]``.
Last line: JSON ``{"detect_p99_s": X, "ready_p50_s": Y, "ready_p99_s": Z}`` plus the stages.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.app import CapstanApp, UpConfig
from reconciler.sync import SyncResult
from schemas import Pod, ReplicaSet
from tests.fixtures.local_agent import cleanup_proxy, proxy_args
from tests.fixtures.sshd import SshNode, SshNodeFarm

REPLICAS = 10
STAGES = ("detect", "render+validate", "plan+apply", "schedule", "push", "container start")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def node_manifest(node: SshNode) -> str:
    return f"""\
apiVersion: v1
kind: Node
metadata:
  name: {node.name}
spec:
  address: {node.address}
  ssh:
    user: {getpass.getuser()}
    port: {node.port}
    identityFile: {node.client_key}
  hostKey: "{node.host_key_line}"
"""


def deployment(version: int) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bench
spec:
  replicas: {REPLICAS}
  selector:
    matchLabels:
      app: bench
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: "100%"
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: bench
      annotations:
        bench/version: "{version}"
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: capstan.local/busybox:1
          command: ["httpd", "-f", "-p", "8080", "-h", "/"]
          ports:
            - containerPort: 8080
          readinessProbe:
            tcpSocket:
              port: 8080
            periodSeconds: 1
"""


class Repo:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=self.path,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, **GIT_ENV},
        ).stdout.strip()

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, text in files.items():
            (self.path / name).write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


@dataclass
class Push:
    stages: dict[str, float]
    total: float


def _ts(value: datetime | None) -> float:
    return value.timestamp() if value is not None else float("nan")


def wait(predicate, *, timeout: float, what: str, interval: float = 0.01):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def new_pods(app: CapstanApp, version: int) -> list[Pod]:
    assert app.api is not None
    sets = [
        rs
        for rs in app.api.list(ReplicaSet, namespace="default").items
        if rs.spec.template.metadata.annotations.get("bench/version") == str(version)
    ]
    if not sets:
        return []
    uid = sets[0].metadata.uid
    return [
        p
        for p in app.api.list(Pod, namespace="default").items
        if any(ref.uid == uid for ref in p.metadata.owner_references)
    ]


def all_ready(app: CapstanApp, version: int) -> list[Pod] | None:
    pods = new_pods(app, version)
    if len(pods) == REPLICAS and all(p.status is not None and p.status.ready for p in pods):
        return pods
    return None


def measure(
    app: CapstanApp, repo: Repo, version: int, records: dict[str, tuple[float, float]]
) -> Push:
    assert app.sync is not None
    t_commit = time.time()
    sha = repo.commit({"deployment.yaml": deployment(version)}, f"v{version}")
    t_commit = (t_commit + time.time()) / 2  # the commit's midpoint: git itself takes a while
    wait(
        lambda: app.sync is not None and app.sync.seen is not None and app.sync.seen.sha == sha,
        timeout=30,
        what="detect",
        interval=0.002,
    )
    t_detect = time.time()
    pods = wait(lambda: all_ready(app, version), timeout=60, what="pods ready")
    started, finished = wait(lambda: records.get(sha), timeout=10, what="sync record")
    scheduled = max(
        _ts(c.last_transition_time)
        for p in pods
        if p.status and (c := p.status.condition("PodScheduled"))
    )
    running = max(
        _ts(s.state.running.started_at)
        for p in pods
        if p.status
        for s in p.status.container_statuses
        if s.state.running
    )
    ready = max(
        _ts(c.last_transition_time) for p in pods if p.status and (c := p.status.condition("Ready"))
    )
    marks = [t_commit, t_detect, started, finished, scheduled, running, ready]
    stages = {name: max(0.0, marks[i + 1] - marks[i]) for i, name in enumerate(STAGES)}
    # Let the old ReplicaSet drain before the next push, so pushes do not overlap.
    wait(
        lambda: len(app.api.list(Pod, namespace="default").items) == REPLICAS,  # type: ignore[union-attr]
        timeout=60,
        what="old pods gone",
        interval=0.05,
    )
    return Push(stages, ready - t_commit)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="capstan-bench-p2r-", dir="/tmp"))
    records: dict[str, tuple[float, float]] = {}

    def on_sync(result: SyncResult) -> None:
        if result.record is not None and result.succeeded:
            records[result.commit.sha] = (
                _ts(result.record.started_at),
                _ts(result.record.finished_at),
            )

    # Each agent gets proxy rules of its own (agents sharing a host must not replace each
    # other's table); removed after the farm has stopped them.
    agent_args = [proxy_args("capb"), proxy_args("capb")]
    try:
        run(work, agent_args, args.pushes, records, on_sync)
    finally:
        for extra in agent_args:
            cleanup_proxy(extra)
        shutil.rmtree(work, ignore_errors=True)


def run(
    work: Path,
    agent_args: list[tuple[str, ...]],
    count: int,
    records: dict[str, tuple[float, float]],
    on_sync: Callable[[SyncResult], None],
) -> None:
    with SshNodeFarm(prefix="p2r") as farm:
        nodes = [farm.start(1, agent_args=extra)[0] for extra in agent_args]
        repo = Repo(work / "repo")
        files = {f"node-{i}.yaml": node_manifest(n) for i, n in enumerate(nodes)}
        repo.commit({**files, "deployment.yaml": deployment(0)}, "v0")
        config = UpConfig(
            repo=str(repo.path), state_dir=work / "state", local_agent=False, resync_s=30.0
        )
        app = CapstanApp(config, on_sync=on_sync)
        app.start()
        try:
            wait(lambda: all_ready(app, 0), timeout=120, what="initial rollout", interval=0.1)
            wait(
                lambda: len(app.api.list(Pod).items) == REPLICAS,  # type: ignore[union-attr]
                timeout=60,
                what="settled",
            )
            pushes: list[Push] = []
            for version in range(1, count + 1):
                pushes.append(measure(app, repo, version, records))
                print(f"push {version:2d}: {pushes[-1].total:6.2f}s", file=sys.stderr)
        finally:
            app.stop()
    report(pushes)


def report(pushes: list[Push]) -> None:
    totals = [p.total for p in pushes]
    print(
        f"\ncommit -> {REPLICAS} new pods Ready on 2 sshd nodes, {len(pushes)} pushes (seconds)\n"
    )
    print(f"{'stage':<18}{'p50':>8}{'p99':>8}")
    for name in STAGES:
        values = [p.stages[name] for p in pushes]
        print(f"{name:<18}{pct(values, 0.5):8.3f}{pct(values, 0.99):8.3f}")
    print(f"{'total (ready)':<18}{pct(totals, 0.5):8.3f}{pct(totals, 0.99):8.3f}")
    detect = [p.stages["detect"] for p in pushes]
    print("\nwith polling instead of watching, detect alone would be:")
    for label, interval in (("60 s (Flux default)", 60.0), ("180 s (Argo CD default)", 180.0)):
        print(
            f"  {label:<24} +{interval / 2:5.0f}s p50, +{interval * 0.99:5.0f}s p99 "
            f"(total p50 ~{pct(totals, 0.5) + interval / 2:.0f}s)"
        )
    result = {
        "detect_p99_s": round(pct(detect, 0.99), 3),
        "ready_p50_s": round(pct(totals, 0.5), 3),
        "ready_p99_s": round(pct(totals, 0.99), 3),
        **{
            f"{name.replace('+', '_').replace(' ', '_')}_p50_s": round(
                statistics.median(p.stages[name] for p in pushes), 3
            )
            for name in STAGES
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
