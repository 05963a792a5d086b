"""The node's own resources through a real agent and the real Docker Engine.

An agent whose admin allows the ``privileged`` level binds a hostPath directory (created as
``DirectoryOrCreate`` says) and runs a hostPID pod in the node's process namespace; an agent
at its default ceiling (``baseline``) refuses the same pod before Docker sees it.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent_harness import BUSYBOX, Agent, make_pod, ready

from tests.fixtures.waiting import wait_until


def node_tools(host_dir: Path) -> dict:
    return make_pod(
        "tools",
        [
            {
                "name": "app",
                "image": BUSYBOX,
                "command": [
                    "sh",
                    "-c",
                    "echo written-in-the-pod > /host/out/hello && sleep 3600",
                ],
                "volumeMounts": [
                    {"name": "out", "mountPath": "/host/out"},
                    {"name": "ro", "mountPath": "/host/ro", "readOnly": True},
                ],
            }
        ],
        hostPID=True,
        volumes=[
            {"name": "out", "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}},
            {"name": "ro", "hostPath": {"path": str(host_dir), "type": "Directory"}},
        ],
    )


def exec_in(agent: Agent, command: list[str]) -> tuple[int, str]:
    (found,) = [c for c in agent.containers() if "_tools_" in c["name"] and "_app_" in c["name"]]
    exec_id = agent.docker.api.exec_create(found["id"], command)
    output = agent.docker.api.exec_start(exec_id).decode()
    return agent.docker.api.exec_inspect(exec_id)["ExitCode"], output


def test_a_privileged_node_binds_the_host_path_and_shares_the_host_pids(
    docker_client, tmp_path: Path
):
    host_dir = tmp_path / "from-the-node"
    node = Agent(docker_client, tmp_path)
    node.start("--pod-security=privileged")
    try:
        client = node.client()
        client.sync([node_tools(host_dir)], 1)
        client.wait_pods(lambda s: ready(s.get("tools")), what="the hostPath pod running")
        written = wait_until(
            lambda: (host_dir / "hello").exists() and (host_dir / "hello").read_text(),
            timeout=10,
            what="the file the pod wrote",
        )
        assert written == "written-in-the-pod\n"
        (host_dir / "from-host").write_text("seen")
        assert exec_in(node, ["cat", "/host/ro/from-host"]) == (0, "seen")
        code, _ = exec_in(node, ["touch", "/host/ro/nope"])
        assert code != 0, "a readOnly hostPath mount is read-only"
        # This test's own process is on the node, so a hostPID pod sees it.
        code, cmdline = exec_in(node, ["cat", f"/proc/{os.getpid()}/cmdline"])
        assert code == 0
        assert "pytest" in cmdline
        client.sync([], 2)
        wait_until(lambda: not node.containers(), timeout=30, what="pod removed")
        assert (host_dir / "hello").exists(), "the node's files stay when the pod goes"
    finally:
        node.close()


def test_the_default_node_ceiling_refuses_host_fields(agent, tmp_path: Path):
    client = agent.client()
    client.sync([node_tools(tmp_path / "never")], 1)
    statuses = client.wait_pods(lambda s: "tools" in s and s, what="the pod reported")
    assert statuses["tools"]["phase"] == "Failed"
    assert statuses["tools"]["reason"] == "Refused"
    assert statuses["tools"]["message"] == (
        'refused by this node\'s Pod Security level: violates PodSecurity "baseline:latest": '
        'host namespaces (hostPID=true), hostPath volumes (volumes "out", "ro")'
    )
    assert not [c for c in agent.containers() if "_tools_" in c["name"]]
    assert not (tmp_path / "never").exists()
