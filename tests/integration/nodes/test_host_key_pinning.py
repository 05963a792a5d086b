"""Host key pinning against real sshd: refused with both fingerprints, never trust on first use."""

from __future__ import annotations

import subprocess
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli.node import node as node_group
from reconciler.nodes import DesiredSet, NodeName, Phase, keyscan
from tests.integration.nodes.conftest import Recorder


def _other_key(tmp_path: Path, kind: str = "ed25519") -> tuple[str, str]:
    path = tmp_path / f"other-{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    line = " ".join(path.with_suffix(".pub").read_text().split()[:2])
    printed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[1]
    return line, printed


def _rejected(recorder: Recorder, name: NodeName) -> bool:
    state = recorder.last_state(name)
    return state is not None and state.phase is Phase.HOST_KEY_REJECTED


def test_wrong_pinned_key_is_refused_with_both_fingerprints(ssh_nodes, pool, recorder, tmp_path):
    (node,) = ssh_nodes(1)
    wrong_line, wrong_fp = _other_key(tmp_path)
    pool.ensure(node.endpoint(host_key=wrong_line))
    future = pool.push(node.name, DesiredSet())
    recorder.wait(lambda r: _rejected(r, node.name))
    state = recorder.last_state(node.name)
    assert state.expected_fingerprint == wrong_fp
    assert state.offered_fingerprint == node.host_fingerprint
    assert wrong_fp in state.message
    assert node.host_fingerprint in state.message
    assert not future.done()  # nothing was sent to an unverified host
    assert "Accepted publickey" not in (node.root / "sshd.log").read_text()


def test_pinned_key_of_a_type_the_node_does_not_have_is_refused(
    ssh_nodes, pool, recorder, tmp_path
):
    (node,) = ssh_nodes(1)
    ecdsa_line, ecdsa_fp = _other_key(tmp_path, "ecdsa")
    pool.ensure(node.endpoint(host_key=ecdsa_line))
    recorder.wait(lambda r: _rejected(r, node.name))
    state = recorder.last_state(node.name)
    assert state.expected_fingerprint == ecdsa_fp
    # The node has no ECDSA key; it offers its ed25519 one, which is refused all the same.
    assert state.offered_fingerprint == node.host_fingerprint


def test_wrong_fingerprint_pin_is_refused(ssh_nodes, pool, recorder, tmp_path):
    (node,) = ssh_nodes(1)
    _, wrong_fp = _other_key(tmp_path)
    pool.ensure(node.endpoint(host_key=wrong_fp))
    recorder.wait(lambda r: _rejected(r, node.name))
    state = recorder.last_state(node.name)
    assert state.expected_fingerprint == wrong_fp
    assert state.offered_fingerprint == node.host_fingerprint


def test_unpinned_host_is_refused_not_trusted_on_first_use(ssh_nodes, pool, recorder):
    (node,) = ssh_nodes(1)
    pool.ensure(node.endpoint(host_key=None))
    recorder.wait(lambda r: _rejected(r, node.name))
    assert recorder.last_state(node.name).offered_fingerprint == node.host_fingerprint


def test_fingerprint_pin_and_known_hosts_file_both_connect(ssh_nodes, pool, tmp_path):
    by_fp, by_file = ssh_nodes(2)
    known = tmp_path / "known_hosts"
    known.write_text(f"[{by_file.address}]:{by_file.port} {by_file.host_key_line}\n")
    pool.ensure(by_fp.endpoint(host_key=by_fp.host_fingerprint))
    pool.ensure(by_file.endpoint(host_key=None, known_hosts=known))
    assert pool.push(by_fp.name, DesiredSet()).result(20).applied
    assert pool.push(by_file.name, DesiredSet()).result(20).applied


def test_known_hosts_mismatch_is_refused(ssh_nodes, pool, recorder, tmp_path):
    (node,) = ssh_nodes(1)
    wrong_line, wrong_fp = _other_key(tmp_path)
    known = tmp_path / "known_hosts"
    known.write_text(f"[{node.address}]:{node.port} {wrong_line}\n")
    pool.ensure(node.endpoint(host_key=None, known_hosts=known))
    recorder.wait(lambda r: _rejected(r, node.name))
    state = recorder.last_state(node.name)
    assert state.expected_fingerprint == wrong_fp
    assert state.offered_fingerprint == node.host_fingerprint


def test_wrong_client_key_is_an_authentication_failure(ssh_nodes, pool, recorder, tmp_path):
    (node,) = ssh_nodes(1)
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    pool.ensure(node.endpoint(identity_file=stranger))
    recorder.wait(
        lambda r: (s := r.last_state(node.name)) is not None and s.phase is Phase.AUTH_FAILED
    )


def test_keyscan_prints_the_line_to_pin(ssh_nodes):
    (node,) = ssh_nodes(1)
    scanned = keyscan(node.address, port=node.port)
    assert scanned.key_line == node.host_key_line
    assert scanned.fingerprint == node.host_fingerprint
    result = CliRunner().invoke(node_group, ["keyscan", node.address, "--port", str(node.port)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f'hostKey: "{node.host_key_line}"',
        f"# {node.host_fingerprint}",
    ]


def test_keyscan_of_a_closed_port_is_a_clear_error():
    result = CliRunner().invoke(
        node_group, ["keyscan", "127.0.0.9", "--port", "1", "--timeout", "2"]
    )
    assert result.exit_code != 0
    assert "cannot connect to 127.0.0.9:1" in result.output
