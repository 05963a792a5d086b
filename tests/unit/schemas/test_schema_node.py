"""Capstan's Node kind: address, ssh, pinned host key, taints, capacity override, status."""

import pytest

from schemas import LOCAL_ADDRESS, Node, NodeStatus, parse_object

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAngGhQtNY7cUulactZwtXXXDFhdd3gqXfiXQdISWM6o root@vm"
FINGERPRINT = "SHA256:sESVjnC0Z7uHWxNQHNuow64J3ZpdMHIT+nhljP6wn74"


def test_node_parses_with_defaults(node):
    obj = parse_object(node)
    assert isinstance(obj, Node)
    assert obj.key == ("Node", "", "worker-1")
    assert obj.spec.ssh.port == 22
    assert obj.spec.ssh.use_agent is False
    assert obj.spec.unschedulable is False
    assert obj.spec.taints == []
    assert obj.spec.capacity is None
    assert not obj.spec.is_local


@pytest.mark.parametrize("address", ["local", "127.0.0.1", "::1", "web-1.example.com", "Node1"])
def test_good_addresses(node, address):
    node["spec"]["address"] = address
    assert parse_object(node).spec.address == address


def test_local_node_needs_no_ssh(node):
    node["spec"] = {"address": LOCAL_ADDRESS}
    assert parse_object(node).spec.is_local


@pytest.mark.parametrize("address", ["", "bad host", "-x.example.com", "http://host"])
def test_bad_addresses(node, address, error_locs):
    node["spec"]["address"] = address
    assert error_locs(node) == {("spec", "address"): "node_address"}


@pytest.mark.parametrize("host_key", [ED25519, ED25519.rsplit(" ", 1)[0], FINGERPRINT])
def test_good_host_keys(node, host_key):
    node["spec"]["hostKey"] = host_key
    assert parse_object(node).spec.host_key == host_key


@pytest.mark.parametrize(
    "host_key",
    [
        "SHA256:short",
        "MD5:aa:bb",
        "ssh-ed25519",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ssh-ed25519 not-base64!",
        # an ed25519 type word in front of an RSA key blob
        "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQDOm6yFHeAsfSCmkDe9+43L",
        "ssh-ed25519 AAAA",
    ],
)
def test_bad_host_keys(node, host_key, error_locs):
    node["spec"]["hostKey"] = host_key
    assert error_locs(node) == {("spec", "hostKey"): "host_key"}


def test_ssh_identity_file_or_agent_not_both(node, error_locs):
    node["spec"]["ssh"]["useAgent"] = True
    assert error_locs(node) == {("spec", "ssh", "useAgent"): "ssh_identity"}
    del node["spec"]["ssh"]["identityFile"]
    assert parse_object(node).spec.ssh.use_agent is True


def test_ssh_port_range(node, error_locs):
    node["spec"]["ssh"]["port"] = 0
    assert list(error_locs(node)) == [("spec", "ssh", "port")]


def test_taints(node, error_locs):
    node["spec"]["taints"] = [
        {"key": "dedicated", "value": "db", "effect": "NoSchedule"},
        {"key": "dedicated", "effect": "NoExecute"},
        {"key": "gpu", "effect": "Sometimes"},
    ]
    assert error_locs(node) == {("spec", "taints", 2, "effect"): "literal_error"}
    node["spec"]["taints"][2] = {"key": "dedicated", "value": "x", "effect": "NoSchedule"}
    assert error_locs(node) == {("spec", "taints", 2): "duplicate_taint"}


def test_capacity_override(node, error_locs):
    node["spec"]["capacity"] = {"cpu": "1500m", "memory": "2Gi", "pods": 20}
    capacity = parse_object(node).spec.capacity
    assert (capacity.cpu.millicores, capacity.memory.bytes, capacity.pods.value) == (
        1500,
        2 * 2**30,
        20,
    )
    node["spec"]["capacity"] = {"cpu": "-1", "pods": "1.5", "disk": "1Gi"}
    assert error_locs(node) == {("spec", "capacity", "disk"): "extra_forbidden"}
    del node["spec"]["capacity"]["disk"]
    assert error_locs(node) == {
        ("spec", "capacity", "cpu"): "resource_negative",
        ("spec", "capacity", "pods"): "pods_integer",
    }


def test_node_status_as_the_agent_reports_it(node):
    node["status"] = {
        "capacity": {"cpu": "2", "memory": "4012Mi", "pods": "110"},
        "allocatable": {"cpu": "1900m", "memory": "3500Mi", "pods": "110"},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "AgentReady",
                "lastHeartbeatTime": "2026-11-27T17:00:00Z",
                "lastTransitionTime": "2026-11-27T16:00:00Z",
            }
        ],
        "nodeInfo": {
            "dockerVersion": "26.1.5",
            "agentVersion": "0.1.0",
            "kernel": "6.1.0",
            "os": "Debian GNU/Linux 12",
        },
        "addresses": [{"type": "InternalIP", "address": "127.0.0.2"}],
    }
    obj = parse_object(node)
    status = obj.status
    assert isinstance(status, NodeStatus)
    assert status.allocatable["cpu"].millicores == 1900
    assert status.condition("Ready").status == "True"
    assert status.condition("DiskPressure") is None
    assert parse_object(obj.to_dict()) == obj
    assert obj.to_dict()["status"]["capacity"]["memory"] == "4012Mi"
