"""A key restricted by ``restrict,command="capstan-agent connect ..."``: Capstan, nothing else."""

from __future__ import annotations

import json
import socket

import paramiko
import pytest

from reconciler.nodes import DesiredSet


@pytest.fixture
def client(ssh_nodes):
    (node,) = ssh_nodes(1)
    ssh = paramiko.SSHClient()
    ssh.get_host_keys().add(
        f"[{node.address}]:{node.port}",
        "ssh-ed25519",
        paramiko.PKey.from_type_string(*_split(node.host_key_line)),
    )
    ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    ssh.connect(
        node.address,
        port=node.port,
        username="root",
        key_filename=str(node.client_key),
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    )
    yield node, ssh
    ssh.close()


def _split(line: str) -> tuple[str, bytes]:
    import base64

    kind, data = line.split()[:2]
    return kind, base64.b64decode(data)


def _first_line(channel: paramiko.Channel) -> bytes:
    channel.settimeout(10)
    data = b""
    while b"\n" not in data:
        chunk = channel.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def test_port_forwarding_is_refused(client):
    _, ssh = client
    transport = ssh.get_transport()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        target = listener.getsockname()
        with pytest.raises(paramiko.ChannelException) as refused:
            transport.open_channel("direct-tcpip", target, ("127.0.0.1", 0), timeout=10)
    assert refused.value.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
    with pytest.raises(paramiko.SSHException):
        transport.request_port_forward("127.0.0.1", 0)


def test_pty_is_refused(client):
    _, ssh = client
    channel = ssh.get_transport().open_session(timeout=10)
    with pytest.raises(paramiko.SSHException):
        channel.get_pty()
    channel.close()


def test_another_command_runs_the_agent_bridge_instead(client):
    node, ssh = client
    channel = ssh.get_transport().open_session(timeout=10)
    channel.exec_command("echo pwned; id")
    first = _first_line(channel)
    assert b"pwned" not in first
    assert b"uid=" not in first
    hello = json.loads(first)
    assert (hello["type"], hello["role"], hello["nodeName"]) == ("hello", "agent", node.name)
    channel.close()


def test_a_shell_request_also_gets_the_agent_bridge(client):
    _, ssh = client
    channel = ssh.get_transport().open_session(timeout=10)
    channel.invoke_shell()
    assert json.loads(_first_line(channel))["type"] == "hello"
    channel.close()


def test_capstan_works_with_the_restricted_key(ssh_nodes, pool):
    (node,) = ssh_nodes(1)
    # The restricted line is what the fixture installed; show it for the reader of a failure.
    line = (node.root / "authorized_keys").read_text()
    assert line.startswith('restrict,command="')
    assert "connect --socket" in line
    pool.ensure(node.endpoint())
    assert pool.push(node.name, DesiredSet()).result(20).applied
