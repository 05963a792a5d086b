"""Fixtures: two real agents (127.0.0.2 and 127.0.0.3) with proxies of their own, per test.

Each agent gets a unique node name, nft table and iptables chain prefix. Teardown stops the
agents, removes every container of both nodes, runs ``capstan-agent serve --cleanup`` for both
proxies and checks that the kernel holds nothing of them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from services_harness import Agent, Cluster, Node, kernel_leftovers, run_cleanup

from tests.fixtures.local_agent import ensure_busybox

ADDRESSES = ("127.0.0.2", "127.0.0.3")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    ensure_busybox(client)
    yield client
    client.close()


@pytest.fixture
def make_cluster(
    docker_client: docker.DockerClient, tmp_path: Path
) -> Iterator[Callable[..., Cluster]]:
    agents: list[tuple[Agent, str, str]] = []

    def make(*, proxy_mode: str | None = None) -> Cluster:
        nodes = []
        for index, address in enumerate(ADDRESSES):
            tag = uuid.uuid4().hex[:6]
            table, prefix = f"capstan_s{tag}", f"CAPS{tag.upper()}"
            work = tmp_path / f"node{index}"
            work.mkdir()
            agent = Agent(docker_client, work)
            agent.bind = address
            agents.append((agent, table, prefix))
            extra = ["--proxy-table", table, "--proxy-chain-prefix", prefix]
            if proxy_mode:
                extra += ["--proxy-mode", proxy_mode]
            agent.start(*extra)
            nodes.append(Node(agent=agent, client=agent.client(), args=tuple(extra)))
        return Cluster(nodes, namespace=f"svc-{uuid.uuid4().hex[:6]}")

    yield make
    for agent, _, _ in agents:
        if os.environ.get("CAPSTAN_SHOW_AGENT_LOG"):
            print(agent.log())
        agent.close()
    leftovers = []
    for agent, table, prefix in agents:
        result = run_cleanup(table, prefix)
        assert result.returncode == 0, result.stderr
        leftovers += kernel_leftovers(table, prefix)
        assert not agent.containers(), "containers left behind"
    assert leftovers == []
