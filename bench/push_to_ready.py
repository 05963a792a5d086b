"""Push → Ready: how long a ``git push`` to a remote takes to become running, ready pods.

The whole real path of ``capstan up`` in this process (``reconciler.app.CapstanApp``: embedded
store, controllers, scheduler, node dispatcher, the HTTPS API with its push webhook armed) and
two real nodes, each an sshd + ``capstan-agent serve`` pair on loopback
(``tests/fixtures/sshd.py``), running real containers in Docker. The repository is remote: a
bare repository served over HTTP by git's own ``git http-backend`` (``tests/fixtures/git_http.py``),
tracked with the default 60 s poll; each push is followed by a GitHub-signed ``POST /hooks/git``,
as a forge sends it. Each push changes the Deployment's pod template (an annotation), so all 10
replicas are replaced with the default rollout settings (RollingUpdate, 25% surge, 25%
unavailable); a push counts as done when every pod of the new ReplicaSet is Ready.

Each push is split at these instants (wall clock, one machine):

- git push: commit → ``git push`` over HTTP has returned;
- hook+fetch: → the webhook was sent and the sync loop has fetched the new head;
- render+validate: → the sync of that commit starts applying (checkout, render, load);
- plan+apply: → the sync finished writing (its record's ``finishedAt``);
- schedule: → the last new pod is bound (its ``PodScheduled`` transition);
- node push: → the last new container has started (the agent's ``startedAt``);
- container start: → the last new pod is Ready (readiness probe, status back in the API).

The default rollout replaces the pods in waves, each after the previous wave is Ready: so
*schedule* and *node push* run up to the last wave. ``detect`` in the JSON is git push plus
hook+fetch.

Published figures of the peers, for comparison (not measured here): Argo CD "polls Git
repositories every three minutes to detect changes to the manifests" unless a webhook is
configured (Argo CD Operator Manual, "Git Webhook Configuration",
https://argo-cd.readthedocs.io/en/stable/operator-manual/webhook/); Flux polls each
GitRepository at its ``.spec.interval`` (``flux create source git --interval``, default 1m0s,
https://fluxcd.io/flux/cmd/flux_create_source_git/) and reacts at once only through a
notification-controller Receiver (https://fluxcd.io/flux/guides/webhook-receivers/).

Run from the repository root: ``python bench/push_to_ready.py [--pushes 10]``.
Last line: JSON ``{"detect_p99_s": X, "ready_p50_s": Y, "ready_p99_s": Z}`` plus the stages.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.app import CapstanApp, UpConfig
from reconciler.sync import SyncResult
from schemas import Pod, ReplicaSet
from tests.fixtures.git_http import GitHttpServer
from tests.fixtures.local_agent import cleanup_proxy, proxy_args
from tests.fixtures.sshd import SshNodeFarm

REPLICAS = 10
STAGES = (
    "git push",
    "hook+fetch",
    "render+validate",
    "plan+apply",
    "schedule",
    "node push",
    "container start",
)
HOOK_SECRET = "bench-webhook-secret"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


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
    """A working clone whose commits are pushed to ``remote`` (over HTTP)."""

    def __init__(self, path: Path, remote: str) -> None:
        self.path = path
        self.remote = remote
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

    def push(self) -> None:
        self.git("push", "-q", self.remote, "main")


class Hook:
    """Sends the push event a forge would: GitHub's signed ``POST /hooks/git``."""

    def __init__(self, app: CapstanApp) -> None:
        assert app.http is not None
        assert app.http.state.tls is not None
        context = ssl.create_default_context(cafile=str(app.http.state.tls.ca_cert))
        self._client = httpx.Client(base_url=app.http.url, verify=context)

    def send(self, sha: str) -> None:
        body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
        signature = hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        answer = self._client.post(
            "/hooks/git",
            content=body,
            headers={
                "X-Hub-Signature-256": f"sha256={signature}",
                "X-GitHub-Event": "push",
                "Content-Type": "application/json",
            },
        )
        if answer.status_code != 202:
            raise RuntimeError(f"webhook refused: {answer.status_code} {answer.text}")

    def close(self) -> None:
        self._client.close()


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
    app: CapstanApp, repo: Repo, hook: Hook, version: int, records: dict[str, tuple[float, float]]
) -> Push:
    assert app.sync is not None
    t_commit = time.time()
    sha = repo.commit({"deployment.yaml": deployment(version)}, f"v{version}")
    repo.push()
    t_pushed = time.time()
    hook.send(sha)
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
    marks = [t_commit, t_pushed, t_detect, started, finished, scheduled, running, ready]
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
    secret = work / "hook-secret"
    secret.write_text(HOOK_SECRET + "\n")
    secret.chmod(0o600)
    (work / "srv").mkdir()
    subprocess.run(
        ["git", "init", "-q", "--bare", "-b", "main", str(work / "srv" / "app.git")], check=True
    )
    with SshNodeFarm(prefix="p2r") as farm, GitHttpServer(work / "srv") as server:
        nodes = [farm.start(1, agent_args=extra)[0] for extra in agent_args]
        repo = Repo(work / "repo", server.url("app.git"))
        files = {f"node-{i}.yaml": n.manifest() for i, n in enumerate(nodes)}
        repo.commit({**files, "deployment.yaml": deployment(0)}, "v0")
        repo.push()
        config = UpConfig(
            repo=server.url("app.git"),
            state_dir=work / "state",
            local_agent=False,
            listen="127.0.0.1:0",
            webhook_secret_file=secret,
        )
        app = CapstanApp(config, on_sync=on_sync)
        app.start()
        hook = Hook(app)
        try:
            wait(lambda: all_ready(app, 0), timeout=120, what="initial rollout", interval=0.1)
            wait(
                lambda: len(app.api.list(Pod).items) == REPLICAS,  # type: ignore[union-attr]
                timeout=60,
                what="settled",
            )
            pushes: list[Push] = []
            for version in range(1, count + 1):
                pushes.append(measure(app, repo, hook, version, records))
                print(f"push {version:2d}: {pushes[-1].total:6.2f}s", file=sys.stderr)
        finally:
            hook.close()
            app.stop()
    report(pushes)


def report(pushes: list[Push]) -> None:
    totals = [p.total for p in pushes]
    print(
        f"\ngit push over HTTP + webhook -> {REPLICAS} new pods Ready on 2 sshd nodes, "
        f"default rollout (25% surge / 25% unavailable), {len(pushes)} pushes (seconds)\n"
    )
    print(f"{'stage':<18}{'p50':>8}{'p99':>8}")
    for name in STAGES:
        values = [p.stages[name] for p in pushes]
        print(f"{name:<18}{pct(values, 0.5):8.3f}{pct(values, 0.99):8.3f}")
    print(f"{'total (ready)':<18}{pct(totals, 0.5):8.3f}{pct(totals, 0.99):8.3f}")
    detect = [p.stages["git push"] + p.stages["hook+fetch"] for p in pushes]
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
