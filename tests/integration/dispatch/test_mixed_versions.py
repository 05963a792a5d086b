"""A control plane and node agents of different releases, as during a rolling upgrade.

The older release is real code: the agent and wire schemas of ``OLD_RELEASE`` (a commit of
this repository, before status deltas, ``servicesUnchanged`` and Ingress rules on the wire),
exported from Git and run with the current interpreter. Each side sends a field newer than
that release only when the peer's hello lists its capability, so:

- this control plane drives an old agent: pods start, a second sync with the same Service
  rules is applied (not refused for an unknown field), statuses (always complete) are read;
- this agent talking to an old control plane sends statuses that the old release's own
  decoder accepts, each one complete;
- endpoints that come and go reach an agent of ``BEFORE_RULE_DELTAS`` (which knows
  ``servicesUnchanged`` but not ``serviceDeltas``) as whole rules, and this release's agent
  as deltas; both end with the rules the control plane computed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from agent.state import DesiredStateFile
from reconciler.api import Api
from reconciler.nodes import _wire
from schemas import Deployment, Pod, Service
from schemas.protocol import Hello, encode_message
from tests.fixtures.local_agent import LocalAgent, local_agent
from tests.fixtures.waiting import wait_until
from tests.integration.dispatch.conftest import control_plane, node_manifest
from tests.integration.dispatch.test_local_node import scale, web_deployment

ROOT = Path(__file__).resolve().parents[3]
#: The last commit before the wire gained capability-gated fields.
OLD_RELEASE = "016efa4"
#: The last commit before Service rule deltas (``serviceDeltas``) on the wire.
BEFORE_RULE_DELTAS = "6f8e9a2"


def _export(release: str, where: Path) -> Path:
    """A release's ``agent`` and ``schemas`` packages, exported from this clone."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", release, "agent", "schemas"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(OLD_RELEASE, tmp_path_factory.mktemp("old-release"))


@pytest.fixture(scope="module")
def before_deltas_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(BEFORE_RULE_DELTAS, tmp_path_factory.mktemp("before-rule-deltas"))


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


@contextlib.contextmanager
def _web_on_agent(
    docker_client: docker.DockerClient, tmp_path: Path, release_tree: Path | None
) -> Iterator[tuple[LocalAgent, Api, Callable[[], int]]]:
    """A local agent (of the release exported at ``release_tree``, else this one) driven by
    this control plane, with Service ``web`` and its one-pod Deployment created; yields the
    agent, the API and how many of its pods are Ready. The agent's log is checked after."""
    with local_agent(docker_client, tmp_path) as agent:
        if release_tree is not None:
            # The console script imports ``agent``; PYTHONPATH puts the release first.
            agent.stop()
            agent.start(wrapper=("env", f"PYTHONPATH={release_tree}"))
        with control_plane(tmp_path, local_agent_command=agent.connect_command) as (api, _m):
            api.create(node_manifest(agent.node))
            api.create(_service())
            api.create(web_deployment(1))

            def ready() -> int:
                return _ready(list(api.list(Pod, namespace="default").items), agent.node)

            yield agent, api, ready
        log = agent.log()
        assert "Extra inputs are not permitted" not in log, log
        assert "invalid sync" not in log, log


def test_this_control_plane_drives_an_agent_of_the_older_release(
    docker_client: docker.DockerClient, tmp_path: Path, old_tree: Path
) -> None:
    with _web_on_agent(docker_client, tmp_path, old_tree) as (_agent, api, ready):
        wait_until(lambda: ready() == 1, timeout=90, what="1 pod Ready on the old agent")
        # The second sync carries the same Service rules: a field the old release does
        # not know would get it refused, and the new pod would never start.
        scale(api, 2)
        wait_until(lambda: ready() == 2, timeout=90, what="2 pods Ready on the old agent")
        assert api.get(Deployment, "web", namespace="default").status is not None
        assert api.get(Service, "web", namespace="default") is not None


def _web_endpoints(agent: LocalAgent) -> int | None:
    """How many endpoints the agent's persisted rule of Service ``web`` lists, if any."""
    saved = DesiredStateFile(agent.state_dir).load()
    rules = [r for r in saved.services if r.name == "web"] if saved is not None else []
    return len(rules[0].ports[0].endpoints) if rules else None


@pytest.mark.parametrize("release", ["this", "before rule deltas"])
def test_endpoints_that_come_and_go_reach_agents_with_and_without_rule_deltas(
    docker_client: docker.DockerClient,
    tmp_path: Path,
    before_deltas_tree: Path,
    release: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One endpoint of two moving is half the rules: sent whole unless deltas have no limit.
    monkeypatch.setattr(_wire, "DELTA_MAX_SHARE", float("inf"))
    tree = None if release == "this" else before_deltas_tree
    with _web_on_agent(docker_client, tmp_path, tree) as (agent, api, ready):
        for replicas in (1, 2, 1):
            scale(api, replicas)
            wait_until(lambda n=replicas: ready() == n, timeout=90, what=f"{replicas} Ready")
            wait_until(
                lambda n=replicas: _web_endpoints(agent) == n,
                timeout=30,
                what=f"{replicas} endpoints in the agent's rules",
            )
    log = agent.log()
    assert "refused" not in log, log
    # This release's agent took the endpoint changes as deltas; the older one never saw one.
    assert ("rules delta against" in log) == (release == "this"), log


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
