"""The fault scenarios' shared pieces: the rig, the app, its invariants, the leader kills.

Used by tests/faults (which assert the invariants) and bench/faults.py (which measures
them). The app is the e2e tier's web Deployment (busybox httpd with a readiness probe, one
ConfigMap page per version) at ``REPLICAS`` replicas, maxSurge 1, maxUnavailable 0. The
kill campaign (``kill_leaders``) adds a ``canary`` Deployment that opts into auto-rollback
and, a third of the way in, a commit that makes it crash: the leaders killed after it are
killed while the auto-rollback pins it back and pushes its revert.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker

from reconciler.api import Api
from reconciler.sync import list_sync_records, read_sync_state
from reconciler.sync.autorollback import AUTO_ROLLBACK_ANNOTATION, reverted_by
from reconciler.sync.pins import read_claims
from reconciler.sync.records import SyncRecord
from schemas import Deployment, Pod
from tests.e2e.conftest import GitRepo
from tests.e2e.test_gitops_loop import NODE, deployment, page
from tests.faults.harness import ControlPlane, EtcdCluster, PodCensus, Replica, monotonic_wait
from tests.fixtures.local_agent import LocalAgent
from tests.fixtures.waiting import wait_until

REPLICAS = 3
MAX_SURGE = 1
MAX_UNAVAILABLE = 0
ROLLOUT_TIMEOUT_S = 240


CANARY = "canary"


def fault_kills() -> int:
    return int(os.environ.get("CAPSTAN_FAULT_KILLS", "20"))


def fault_seed() -> int:
    """The seed of the kill points: ``CAPSTAN_FAULT_SEED`` replays a run, else a new one."""
    given = os.environ.get("CAPSTAN_FAULT_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


def canary(*, crash: bool) -> str:
    """One pod that opts into auto-rollback; ``crash``: its container exits 3 at every start."""
    command = '["sh", "-c", "exit 3"]' if crash else '["httpd", "-f", "-p", "8080", "-h", "/"]'
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {CANARY}
  annotations:
    {AUTO_ROLLBACK_ANNOTATION}: "true"
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {CANARY}
  template:
    metadata:
      labels:
        app: {CANARY}
      annotations:
        example.com/crash: "{str(crash).lower()}"
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: capstan.local/busybox:1
          command: {command}
"""


#: The kill campaign's extra files at v1 (``fault_rig(..., files=KILL_FILES)``).
KILL_FILES = {"canary.yaml": canary(crash=False)}


def version_files(version: str) -> dict[str, str]:
    return {
        "page.yaml": page(version),
        "web/deployment.yaml": deployment(version, replicas=REPLICAS),
    }


def rolled_out(api: Api, version: str) -> bool:
    """Every web pod runs ``version``, all ``REPLICAS`` are Ready, and nothing else is left."""
    pods = [p for p in api.list(Pod).items if p.metadata.labels.get("app") == "web"]
    if len(pods) != REPLICAS:
        return False
    if any(p.metadata.annotations.get("example.com/version") != version for p in pods):
        return False
    if not all(p.status is not None and p.status.ready for p in pods):
        return False
    web = api.get(Deployment, "web", namespace="default")
    return web.status is not None and web.status.updated_replicas == REPLICAS


def double_applied(api: Api, *, first_commit: str | None = None) -> dict[str, int]:
    """Commits with more than one sync that changed something, and how many they had.

    Not counted: the auto-rollback's own record, and the sync that then applies its pin
    (the bad commit again, changing only the pinned Deployment back). With
    ``first_commit``, the sync log must still hold that commit's record (none was pruned,
    so none of the doubles could have been)."""
    records = list_sync_records(api)
    if first_commit is not None:
        assert any(r.commit == first_commit for r in records), "sync records were pruned"
    claims = read_claims(api)

    def applies_a_pin(record: SyncRecord) -> bool:
        claim = claims.get(record.commit)
        return (
            claim is not None
            and record.changes_total == len(record.changes)
            and all(c.object == claim.deployment for c in record.changes)
        )

    applied = Counter(
        r.commit
        for r in records
        if r.outcome == "Succeeded"
        and r.changes_total
        and r.trigger != "rollback"
        and not applies_a_pin(r)
    )
    return {commit: n for commit, n in applied.items() if n > 1}


def canary_rolled_back(api: Api) -> bool:
    """The canary runs its good template again: one pod, Ready, not the crashing one."""
    pods = [p for p in api.list(Pod).items if p.metadata.labels.get("app") == CANARY]
    return (
        len(pods) == 1
        and pods[0].metadata.annotations.get("example.com/crash") == "false"
        and pods[0].status is not None
        and pods[0].status.ready
    )


class PushedRepo:
    """The repository the replicas track: a bare one (where an auto-rollback pushes its
    revert) fed by the test's clone, whose commits are rebased onto whatever the remote got
    meanwhile and pushed."""

    def __init__(self, work: Path) -> None:
        self.path = work / "remote.git"
        self.clone = GitRepo(work / "repo")
        self.clone.git("init", "-q", "--bare", "-b", "main", str(self.path))
        self.clone.git("remote", "add", "origin", str(self.path))
        self._pushed = False

    def commit(self, message: str, files: dict[str, str]) -> str:
        if self._pushed:
            self.clone.git("pull", "-q", "--rebase", "origin", "main")
        self.clone.commit(message, files)
        for _ in range(20):
            try:
                self.clone.git("push", "-q", "origin", "main")
            except subprocess.CalledProcessError:
                # The remote moved meanwhile (a revert was pushed): rebase onto it, again.
                self.clone.git("pull", "-q", "--rebase", "origin", "main")
                continue
            self._pushed = True
            return self.head()
        raise AssertionError(f"could not push {message!r}")

    def _remote(self, *args: str) -> str:
        return self.clone.git("--git-dir", str(self.path), *args)

    def head(self) -> str:
        return self._remote("rev-parse", "main")

    def message(self, sha: str) -> str:
        """Commit ``sha``'s message, as the remote has it."""
        return self._remote("log", "-1", "--format=%B", sha).strip()

    def messages(self) -> list[str]:
        """Every commit message on the remote's branch, newest first."""
        out = self._remote("log", "--format=%B%x00", "main")
        return [m.strip() for m in out.split("\x00") if m.strip()]


def reverts_of(repo: PushedRepo, bad: str) -> int:
    """How many commits on the branch are auto-rollback reverts of ``bad``."""
    return sum(1 for m in repo.messages() if reverted_by(m) == bad)


def rollbacks_of(api: Api, bad: str) -> int:
    """How many times the auto-rollback acted on ``bad`` (its sync records say so)."""
    return sum(
        1
        for r in list_sync_records(api)
        if r.trigger == "rollback" and f"template of commit {bad[:12]}" in r.message
    )


@dataclass
class FaultRig:
    etcd: EtcdCluster
    agent: LocalAgent
    repo: PushedRepo
    plane: ControlPlane

    def app_containers(self, app: str | None = None) -> dict[str, str]:
        """Running app containers on the node (of the pods named ``app``-...): name -> id."""
        return {
            c["name"]: c["id"]
            for c in self.agent.containers()
            if c["state"] == "running"
            and c["labels"].get("io.capstan.container") not in (None, "", "POD")
            and (app is None or c["labels"].get("io.capstan.pod-name", "").startswith(f"{app}-"))
        }

    def kill_leader(self) -> tuple[Replica, float]:
        """SIGKILL the leader; returns it and the seconds until another term began."""
        plane = self.plane
        leader = plane.wait_leader()
        term = plane.term()
        plane.hold(leader)
        started = time.monotonic()
        leader.kill(signal.SIGKILL)
        wait_until(
            lambda: plane.term() not in (None, term) and plane.leader() is not None,
            timeout=120,
            what="a follower taking over",
        )
        takeover = time.monotonic() - started
        plane.release(leader)
        return leader, takeover


@contextlib.contextmanager
def fault_rig(
    client: docker.DockerClient,
    work: Path,
    *,
    show_logs: bool = False,
    replicas: int = 3,
    extra_args: tuple[str, ...] = (),
    files: dict[str, str] | None = None,
    log_applies: bool = False,
    env: dict[str, str] | None = None,
) -> Iterator[FaultRig]:
    """The rig: ``replicas`` supervised ``capstan up`` (with ``extra_args`` and ``env``) on a
    fresh etcd cluster (logging every write it applies with ``log_applies``), a real agent,
    and a repository at v1 (plus ``files``)."""
    etcd = EtcdCluster(work, log_applies=log_applies).start()
    agent = LocalAgent(client, work)
    plane: ControlPlane | None = None
    try:
        agent.start()
        repo = PushedRepo(work)
        repo.commit("v1", {"node.yaml": NODE, **version_files("v1"), **(files or {})})
        plane = ControlPlane(
            repo=repo.path,
            store_url=etcd.url,
            agent_socket=agent.socket,
            work=work,
            count=replicas,
            extra_args=extra_args,
            env=env,
        ).start()
        yield FaultRig(etcd=etcd, agent=agent, repo=repo, plane=plane)
    finally:
        if plane is not None:
            if show_logs or os.environ.get("CAPSTAN_SHOW_FAULT_LOGS"):
                print(plane.logs())
            plane.close()
        agent.close()
        etcd.close()


@dataclass
class KillRun:
    """What ``kill_leaders`` did: per kill the replica killed and the seconds until another
    term began; the pod census over the whole run; the commits that matter."""

    takeovers: list[tuple[str, float]]
    census: PodCensus
    first_commit: str
    bad_commit: str
    final_version: str


def kill_leaders(
    rig: FaultRig,
    kills: int,
    rng: random.Random,
    *,
    report: Callable[[int, Replica, float], None] = lambda i, killed, seconds: None,
) -> KillRun:
    """``kills`` times: commit a new web version (a rollout starts), wait a random 0.5-6 s,
    ``kill -9`` the leader and wait for another term. A third of the way in the commit also
    makes the canary crash; until the auto-rollback of that commit is complete (its claim has
    no step pending, and a kill has followed) the kills hit the rollback instead of a new
    rollout. Ends when the last version is rolled out, the canary is back and the last
    commit is live. ``rig`` must have been made with ``KILL_FILES``."""
    api = rig.plane.api
    wait_until(
        lambda: rolled_out(api, "v1") and canary_rolled_back(api),
        timeout=ROLLOUT_TIMEOUT_S,
        what="v1 and the canary running",
    )
    first = rig.repo.head()
    census = PodCensus(api, app="web")
    bad_at = kills // 3
    bad = ""
    claim_seen_at: int | None = None
    version = "v1"
    takeovers = []
    try:
        for i in range(kills):
            if bad and claim_seen_at is None:
                claim = read_claims(api).get(bad)
                if claim is not None and not claim.pending:
                    claim_seen_at = i
            if i == bad_at:
                version = f"v{i + 2}"
                files = {**version_files(version), "canary.yaml": canary(crash=True)}
                bad = rig.repo.commit(f"{version}, canary crashing", files)
            elif not bad or (claim_seen_at is not None and i > claim_seen_at):
                version = f"v{i + 2}"
                rig.repo.commit(version, version_files(version))
            # else: this kill hits the canary's auto-rollback, not a new rollout.
            monotonic_wait(rng.uniform(0.5, 6.0))  # a random point of the rollout
            killed, seconds = rig.kill_leader()
            takeovers.append((killed.identity, seconds))
            report(i, killed, seconds)
        final = version
        wait_until(
            lambda: rolled_out(api, final) and canary_rolled_back(api),
            timeout=ROLLOUT_TIMEOUT_S,
            what=f"{final} rolled out and the canary rolled back after the kills",
        )
        wait_until(
            lambda: read_sync_state(api).live_commit == rig.repo.head(),
            timeout=60,
            what="the last commit live",
        )
    finally:
        census.close()
    return KillRun(
        takeovers=takeovers,
        census=census,
        first_commit=first,
        bad_commit=bad,
        final_version=version,
    )
