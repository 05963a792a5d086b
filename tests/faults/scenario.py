"""The fault scenarios' shared pieces: the rig, the app, its invariants, a leader kill.

Used by tests/faults (which assert the invariants) and bench/faults.py (which measures
them over 20 kills). The app is the e2e tier's web Deployment (busybox httpd with a
readiness probe, one ConfigMap page per version) at ``REPLICAS`` replicas, maxSurge 1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker

from reconciler.api import Api
from reconciler.sync import list_sync_records
from schemas import Deployment, Pod
from tests.e2e.conftest import GitRepo
from tests.e2e.test_gitops_loop import NODE, deployment, page
from tests.faults.harness import ControlPlane, EtcdCluster, Replica
from tests.fixtures.local_agent import LocalAgent
from tests.fixtures.waiting import wait_until

REPLICAS = 3
MAX_SURGE = 1


def fault_kills() -> int:
    return int(os.environ.get("CAPSTAN_FAULT_KILLS", "5"))


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


def double_applied(api: Api) -> dict[str, int]:
    """Commits with more than one sync that changed something, and how many they had."""
    records = list_sync_records(api, limit=1000)
    applied = Counter(r.commit for r in records if r.outcome == "Succeeded" and r.changes_total)
    return {commit: n for commit, n in applied.items() if n > 1}


@dataclass
class FaultRig:
    etcd: EtcdCluster
    agent: LocalAgent
    repo: GitRepo
    plane: ControlPlane

    def app_containers(self) -> dict[str, str]:
        """Running app containers on the node: name -> id."""
        return {
            c["name"]: c["id"]
            for c in self.agent.containers()
            if c["state"] == "running"
            and c["labels"].get("io.capstan.container") not in (None, "", "POD")
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
) -> Iterator[FaultRig]:
    """The rig: ``replicas`` supervised ``capstan up`` (with ``extra_args``) on a fresh etcd
    cluster, a real agent, and a repository at v1 (plus ``files``)."""
    etcd = EtcdCluster(work).start()
    agent = LocalAgent(client, work)
    plane: ControlPlane | None = None
    try:
        agent.start()
        repo = GitRepo(work / "repo")
        repo.commit("v1", {"node.yaml": NODE, **version_files("v1"), **(files or {})})
        plane = ControlPlane(
            repo=repo.path,
            store_url=etcd.url,
            agent_socket=agent.socket,
            work=work,
            count=replicas,
            extra_args=extra_args,
        ).start()
        yield FaultRig(etcd=etcd, agent=agent, repo=repo, plane=plane)
    finally:
        if plane is not None:
            if show_logs or os.environ.get("CAPSTAN_SHOW_FAULT_LOGS"):
                print(plane.logs())
            plane.close()
        agent.close()
        etcd.close()
