"""``capstan up --store etcd://...``: the same loop on a real etcd (beyond one machine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.e2e.conftest import CapstanUp, GitRepo
from tests.e2e.test_gitops_loop import NODE, version_files, web_ready
from tests.fixtures.waiting import wait_until
from tests.integration.store.etcd_server import EtcdServer, etcd_available

pytestmark = pytest.mark.skipif(not etcd_available(), reason="etcd is not installed")


@pytest.fixture
def on_etcd(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[CapstanUp]:
    with EtcdServer() as etcd:
        repo = GitRepo(tmp_path / "repo")
        repo.commit("v1", {"node.yaml": NODE, **version_files("v1")})
        capstan = CapstanUp(repo, tmp_path, docker_client, store=f"etcd://{etcd.endpoint}")
        try:
            capstan.start()
            yield capstan
        finally:
            capstan.close()


def test_gitops_loop_on_etcd_survives_a_restart(on_etcd: CapstanUp) -> None:
    up = on_etcd
    wait_until(lambda: web_ready(up, "v1"), timeout=60, what="v1 Ready on etcd")
    before = up.app_containers()
    up.stop()
    up.start()
    wait_until(
        lambda: up.status()["nodes"][0]["agent"] == "Connected", timeout=30, what="reconnected"
    )
    assert up.app_containers() == before
    up.repo.commit("v2", version_files("v2"))
    wait_until(lambda: web_ready(up, "v2"), timeout=60, what="v2 on etcd")
    assert up.status()["sync"]["state"] == "Synced"
