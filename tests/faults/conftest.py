"""Fixtures for the fault suite: real etcd members, a real agent with Docker, replicas.

Each test gets its own 3-member etcd cluster, Git repository, ``capstan-agent serve`` and
supervised ``capstan up`` replicas (``tests.faults.harness``); all are removed afterwards.
``CAPSTAN_FAULT_KILLS`` sets how many leader kills the kill test makes (CI: 5, the bench: 20).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from reconciler.api import Api
from schemas import Deployment, Pod

# docker_client: the e2e tier's session fixture (Docker, with the busybox image present).
from tests.e2e.conftest import GitRepo, docker_client  # noqa: F401
from tests.e2e.test_gitops_loop import NODE, deployment, page
from tests.faults.harness import ControlPlane, EtcdCluster
from tests.fixtures.local_agent import LocalAgent

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


@pytest.fixture
def rig(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[FaultRig]:  # noqa: F811
    etcd = EtcdCluster(tmp_path).start()
    agent = LocalAgent(docker_client, tmp_path)
    plane: ControlPlane | None = None
    try:
        agent.start()
        repo = GitRepo(tmp_path / "repo")
        repo.commit("v1", {"node.yaml": NODE, **version_files("v1")})
        plane = ControlPlane(
            repo=repo.path, store_url=etcd.url, agent_socket=agent.socket, work=tmp_path
        ).start()
        yield FaultRig(etcd=etcd, agent=agent, repo=repo, plane=plane)
    finally:
        if plane is not None:
            if os.environ.get("CAPSTAN_SHOW_FAULT_LOGS"):
                print(plane.logs())
            plane.close()
        agent.close()
        etcd.close()
