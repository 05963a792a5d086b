"""Host key pins: parsing both forms, fingerprints exactly as ssh-keygen prints them."""

from __future__ import annotations

import subprocess

import paramiko
import pytest

from reconciler.nodes import HostKeyPin, HostKeyRejected, fingerprint
from reconciler.nodes.hostkeys import PinnedKeyPolicy, key_line, known_hosts_name


@pytest.fixture
def host_key(tmp_path):
    path = tmp_path / "hk"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    pub = path.with_suffix(".pub").read_text().strip()
    printed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(path) + ".pub"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[1]
    return pub, printed


def test_fingerprint_matches_ssh_keygen(host_key):
    pub, printed = host_key
    pin = HostKeyPin.parse(pub)  # with its comment, as users paste it
    assert pin.key is not None
    assert fingerprint(pin.key) == printed == pin.fingerprint
    assert key_line(pin.key) == " ".join(pub.split()[:2])


def test_fingerprint_pin(host_key):
    _, printed = host_key
    assert HostKeyPin.parse(printed) == HostKeyPin(fingerprint=printed)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ssh-ed25519",
        "SHA256:not base64!",
        "SHA256:AAAA",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA",
    ],
)
def test_garbage_pins_are_refused(text):
    with pytest.raises(ValueError, match="hostKey"):
        HostKeyPin.parse(text)


def test_policy_refuses_anything_but_the_pinned_fingerprint(host_key):
    pub, printed = host_key
    key = HostKeyPin.parse(pub).key
    assert key is not None
    client = paramiko.SSHClient()
    PinnedKeyPolicy(expected=printed).missing_host_key(client, "n", key)  # accepted: returns
    wrong = "SHA256:" + "A" * 43
    with pytest.raises(HostKeyRejected) as refused:
        PinnedKeyPolicy(expected=wrong).missing_host_key(client, "n", key)
    assert refused.value.expected == wrong
    assert refused.value.offered == printed
    with pytest.raises(HostKeyRejected, match="no pinned key"):
        PinnedKeyPolicy(expected=None).missing_host_key(client, "n", key)
    client.close()


def test_known_hosts_names():
    assert known_hosts_name("10.0.0.1", 22) == "10.0.0.1"
    assert known_hosts_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"
