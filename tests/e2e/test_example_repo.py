"""The README's main flow: ``capstan up`` on a copy of ``example-repo``, the shop on its NodePort.

The web page answers through NodePort 30080 (on the local agent's address), its CGI reaches
the ``api`` Service by its in-cluster name, and a pushed version change rolls out.
"""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from schemas import Pod
from tests.e2e.conftest import ROOT, CapstanUp, GitRepo
from tests.fixtures.waiting import wait_until

NODE_PORT = 30080


def page(address: str, path: str = "/") -> str | None:
    try:
        with urllib.request.urlopen(f"http://{address}:{NODE_PORT}{path}", timeout=5) as reply:
            return str(reply.read().decode())
    except OSError:
        return None


def serving(up: CapstanUp, version: str) -> bool:
    """The page shows ``version``; fails fast when a shop pod crash-loops (it never heals)."""
    for pod in up.api.list(Pod, namespace="shop").items:
        restarts = sum(
            s.restart_count for s in (pod.status.container_statuses if pod.status else [])
        )
        assert restarts < 2, f"pod {pod.name} crash-loops: {pod.status}"
    text = page(up.bind)
    return text is not None and version in text


@pytest.fixture
def shop(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[CapstanUp]:
    repo = GitRepo(tmp_path / "shop")
    shutil.copytree(ROOT / "example-repo", repo.path, dirs_exist_ok=True)
    repo.commit("shop 1.0.0")
    capstan = CapstanUp(repo, tmp_path, docker_client)
    try:
        capstan.start()
        yield capstan
    finally:
        capstan.close()


def test_example_repo_serves_the_shop_and_rolls_a_new_version(shop: CapstanUp) -> None:
    up = shop
    wait_until(lambda: serving(up, "1.0.0"), timeout=90, what="the shop on its NodePort")
    api = wait_until(
        lambda: (text := page(up.bind, "/cgi-bin/api")) and "error" not in text and text,
        timeout=30,
        what="web reaching api by its Service name",
    )
    assert isinstance(api, str)
    values = up.repo.path / "values.yaml"
    values.write_text(values.read_text().replace('version: "1.0.0"', 'version: "1.1.0"'))
    up.repo.commit("shop 1.1.0")
    wait_until(lambda: serving(up, "1.1.0"), timeout=90, what="1.1.0 served")
    assert up.status()["sync"]["state"] == "Synced"
