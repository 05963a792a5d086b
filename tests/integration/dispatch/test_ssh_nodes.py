"""Node objects reached over real sshd: pods spread over two nodes; a wrong host key on the Node."""

from __future__ import annotations

import getpass
import subprocess
from pathlib import Path

from reconciler.nodes import AGENT_CONNECTED
from schemas import Node, Pod
from tests.fixtures.sshd import SshNode, ssh_nodes  # noqa: F401  (fixture)
from tests.fixtures.waiting import wait_until
from tests.integration.dispatch.conftest import control_plane, node_condition
from tests.integration.dispatch.test_local_node import web_deployment


def ssh_node_manifest(node: SshNode, *, host_key: str | None = None) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name},
        "spec": {
            "address": node.address,
            "ssh": {
                "user": getpass.getuser(),
                "port": node.port,
                "identityFile": str(node.client_key),
            },
            "hostKey": host_key or node.host_key_line,
        },
    }


def test_two_ssh_nodes_run_a_deployment(
    proxy_tables,
    ssh_nodes,  # noqa: F811
    docker_client,
    tmp_path: Path,
) -> None:
    (a,) = ssh_nodes(1, agent_args=proxy_tables())
    (b,) = ssh_nodes(1, agent_args=proxy_tables())
    with control_plane(tmp_path) as (api, _manager):
        for node in (a, b):
            api.create(ssh_node_manifest(node))
        for node in (a, b):
            wait_until(
                lambda n=node: node_condition(api, n.name, "Ready") == "True",
                what=f"{node.name} Ready",
            )
        api.create(web_deployment(4))

        def ready() -> list[Pod]:
            pods = api.list(Pod, namespace="default", label_selector={"app": "web"}).items
            return [p for p in pods if p.status is not None and p.status.ready]

        wait_until(lambda: len(ready()) == 4, timeout=60, what="4 pods Ready")
        placed = {p.spec.node_name for p in ready()}
        assert placed == {a.name, b.name}  # the scheduler spreads one owner's replicas
        for node in (a, b):
            uids = {p.metadata.uid for p in ready() if p.spec.node_name == node.name}
            labels = subprocess.run(
                [
                    "docker",
                    "ps",
                    "--format",
                    '{{.Label "io.capstan.pod-uid"}}',
                    "--filter",
                    f"label=io.capstan.managed-by={node.name}",
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            assert set(labels) == uids


def test_wrong_host_key_shows_on_the_node(
    proxy_tables,
    ssh_nodes,  # noqa: F811
    tmp_path: Path,
) -> None:
    (node,) = ssh_nodes(1, agent_args=proxy_tables())
    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    wrong = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    with control_plane(tmp_path) as (api, _manager):
        api.create(ssh_node_manifest(node, host_key=wrong))
        wait_until(
            lambda: node_condition(api, node.name, AGENT_CONNECTED) == "False",
            what="AgentConnected=False",
        )
        found = api.get(Node, node.name)
        assert found.status is not None
        condition = found.status.condition(AGENT_CONNECTED)
        assert condition is not None
        assert condition.reason == "HostKeyRejected"
        assert condition.message is not None
        assert node.host_fingerprint in condition.message
        assert "expected SHA256:" in condition.message
        # No agent heartbeat from an unverified host: the node never turns Ready.
        assert node_condition(api, node.name, "Ready") is None
