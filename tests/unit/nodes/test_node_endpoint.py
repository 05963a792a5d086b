"""NodeEndpoint from a Node manifest."""

from __future__ import annotations

from pathlib import Path

from reconciler.nodes import NodeEndpoint
from schemas.node import Node


def _node(spec: dict[str, object]) -> Node:
    return Node.model_validate(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": spec}
    )


def test_ssh_node_fields():
    key = "SHA256:" + "B" * 43
    endpoint = NodeEndpoint.from_node(
        _node(
            {
                "address": "10.0.0.5",
                "ssh": {"user": "capstan", "port": 2222, "identityFile": "/keys/id"},
                "hostKey": key,
            }
        )
    )
    assert endpoint.name == "n1"
    assert endpoint.address == "10.0.0.5"
    assert endpoint.port == 2222
    assert endpoint.user == "capstan"
    assert endpoint.identity_file == Path("/keys/id")
    assert endpoint.host_key == key
    assert not endpoint.use_agent
    assert not endpoint.is_local
    assert not endpoint.uses_default_keys
    assert "capstan@10.0.0.5:2222" in endpoint.describe()


def test_agent_and_default_keys():
    agent = NodeEndpoint.from_node(_node({"address": "h", "ssh": {"user": "u", "useAgent": True}}))
    assert agent.use_agent
    assert not agent.uses_default_keys
    default = NodeEndpoint.from_node(_node({"address": "h", "ssh": {"user": "u"}}))
    assert default.uses_default_keys


def test_local_node():
    endpoint = NodeEndpoint.from_node(_node({"address": "local"}))
    assert endpoint.is_local
    assert "local" in endpoint.describe()
