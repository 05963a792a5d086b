"""Fixtures: a real ``capstan-agent serve`` against the real Docker Engine, one per test.

The harness itself (agent process, protocol client, pod builders) is in ``agent_harness``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from agent_harness import BUSYBOX, BUSYBOX_V2, Agent

from tests.fixtures.local_agent import ensure_busybox


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    ensure_busybox(client)
    client.images.get(BUSYBOX).tag("capstan.local/busybox", "test-v2")
    yield client
    # Only the extra tag goes; the image itself stays for everyone else.
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(BUSYBOX_V2)
    client.close()


@pytest.fixture
def agent(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[Agent]:
    node_agent = Agent(docker_client, tmp_path)
    node_agent.start()
    yield node_agent
    node_agent.close()
    assert not node_agent.containers(), "containers left behind"
    if os.environ.get("CAPSTAN_SHOW_AGENT_LOG"):
        print(node_agent.log())
