"""Serving through the Service's NodePort while a push rolls the Deployment: no failed request.

The node proxy runs inside the agent; the node reports it with a ``ProxyReady`` condition.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from schemas import Node
from tests.e2e.conftest import CapstanUp, GitRepo, try_fetch
from tests.e2e.test_gitops_loop import NODE, NODE_PORT, SERVICE, version_files
from tests.fixtures.waiting import wait_until


@pytest.fixture
def served(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[CapstanUp]:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("v1", {"node.yaml": NODE, "service.yaml": SERVICE, **version_files("v1")})
    capstan = CapstanUp(repo, tmp_path, docker_client)
    try:
        capstan.start()
        yield capstan
    finally:
        capstan.close()


def proxy_ready(up: CapstanUp) -> bool:
    nodes = up.api.list(Node).items
    if not nodes or nodes[0].status is None:
        return False
    condition = nodes[0].status.condition("ProxyReady")
    return condition is not None and condition.status == "True"


def test_nodeport_serves_through_a_rollout(served: CapstanUp) -> None:
    up = served
    # The first node status can come before the proxy reports: wait for the condition itself.
    wait_until(lambda: proxy_ready(up), timeout=30, what="the node's ProxyReady condition")
    wait_until(lambda: len(up.ready_pods()) == 2, timeout=60, what="v1 pods Ready")
    wait_until(
        lambda: try_fetch(up.bind, NODE_PORT) == "hello v1",
        timeout=20,
        what=f"NodePort {up.bind}:{NODE_PORT} answering",
    )

    answers: list[str | None] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            answers.append(try_fetch(up.bind, NODE_PORT))
            time.sleep(0.02)

    client = threading.Thread(target=hammer, daemon=True)
    client.start()
    try:
        up.repo.commit("v2", version_files("v2"))
        wait_until(
            lambda: (
                {p.metadata.annotations.get("example.com/version") for p in up.ready_pods()}
                == {"v2"}
                and len(up.pods()) == 2
            ),
            timeout=60,
            what="v2 rolled out",
        )
        wait_until(
            lambda: answers and answers[-1] == "hello v2", timeout=10, what="NodePort serving v2"
        )
    finally:
        stop.set()
        client.join()
    failed = [a for a in answers if a not in ("hello v1", "hello v2")]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed during the rollout"
