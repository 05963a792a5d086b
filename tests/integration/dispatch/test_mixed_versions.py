"""A control plane and node agents of different releases, as during a rolling upgrade.

The older release is real code: the agent and wire schemas of ``OLD_RELEASE`` (a commit of
this repository, before status deltas, ``servicesUnchanged`` and Ingress rules on the wire),
exported from Git and run with the current interpreter. Each side sends a field newer than
that release only when the peer's hello lists its capability, so:

- this control plane drives an old agent: pods start, a second sync with the same Service
  rules is applied (not refused for an unknown field), statuses (always complete) are read;
- this agent talking to an old control plane sends statuses that the old release's own
  decoder accepts, each one complete.
"""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from schemas import Deployment, Pod, Service
from schemas.protocol import Hello, encode_message
from tests.fixtures.local_agent import local_agent
from tests.fixtures.waiting import wait_until
from tests.integration.dispatch.conftest import control_plane, node_manifest
from tests.integration.dispatch.test_local_node import scale, web_deployment

ROOT = Path(__file__).resolve().parents[3]
#: The last commit before the wire gained capability-gated fields.
OLD_RELEASE = "016efa4"


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The old release's ``agent`` and ``schemas`` packages, exported from this clone."""
    where = tmp_path_factory.mktemp("old-release")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", OLD_RELEASE, "agent", "schemas"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def _service() -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def _ready(pods: list[Pod], node: str) -> int:
    return sum(
        1 for p in pods if p.status is not None and p.status.ready and p.spec.node_name == node
    )


def test_this_control_plane_drives_an_agent_of_the_older_release(
    docker_client: docker.DockerClient, tmp_path: Path, old_tree: Path
) -> None:
    with local_agent(docker_client, tmp_path) as agent:
        # The console script imports ``agent``; PYTHONPATH puts the old release first.
        agent.stop()
        agent.start(wrapper=("env", f"PYTHONPATH={old_tree}"))
        with control_plane(tmp_path, local_agent_command=agent.connect_command) as (api, _m):
            api.create(node_manifest(agent.node))
            api.create(_service())
            api.create(web_deployment(1))

            def ready() -> int:
                return _ready(list(api.list(Pod, namespace="default").items), agent.node)

            wait_until(lambda: ready() == 1, timeout=90, what="1 pod Ready on the old agent")
            # The second sync carries the same Service rules: a field the old release does
            # not know would get it refused, and the new pod would never start.
            scale(api, 2)
            wait_until(lambda: ready() == 2, timeout=90, what="2 pods Ready on the old agent")
            assert api.get(Deployment, "web", namespace="default").status is not None
            assert api.get(Service, "web", namespace="default") is not None
        log = agent.log()
        assert "Extra inputs are not permitted" not in log, log
        assert "invalid sync" not in log, log


def _read_statuses(sock: socket.socket, count: int) -> list[bytes]:
    lines: list[bytes] = []
    buffer = b""
    while len(lines) < count:
        chunk = sock.recv(65536)
        assert chunk, "the agent closed the connection"
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if json.loads(line)["type"] == "status":
                lines.append(line + b"\n")
    return lines


def test_this_agent_talking_to_an_older_control_plane_sends_what_it_can_read(
    docker_client: docker.DockerClient, tmp_path: Path, old_tree: Path
) -> None:
    with local_agent(docker_client, tmp_path) as agent, socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(agent.socket))
        # The older control plane's hello, as it encoded it: no capabilities.
        sock.sendall(encode_message(Hello(role="reconciler", node_name=agent.node)))
        # Heartbeats every second (the fixture's --heartbeat 1): a first status and then
        # several more, which a delta-speaking agent would send as deltas.
        statuses = _read_statuses(sock, 4)
    decode = functools.partial(
        subprocess.run,
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from schemas.protocol import decode_message\n"
            "for line in sys.stdin.buffer:\n"
            "    m = decode_message(line)\n"
            "    print(m.type, len(m.pods))\n",
        ],
        env={"PYTHONPATH": str(old_tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    result = decode(input=b"".join(statuses).decode())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["status 0"] * 4
    for line in statuses:
        message = json.loads(line)
        assert "complete" not in message, message
        assert "removed" not in message, message
