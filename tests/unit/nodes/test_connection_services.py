"""NodeConnection leaves unchanged Service rules out of a sync, only when the agent has them.

The link is the transport boundary: a scripted agent answers each sync line with an ack
(``applied`` as the test says), so what the connection sends can be read line by line.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from reconciler.nodes import (
    ConnectionSettings,
    DesiredSet,
    NodeConnection,
    NodeEndpoint,
    NodeName,
    _wire,
)
from reconciler.nodes._links import LinkSettings
from schemas.core import ConfigMap
from schemas.pod import Pod
from schemas.protocol import WIRE_FEATURES, ServiceRule
from tests.fixtures.scripted_link import ScriptedLink

ENDPOINT = NodeEndpoint(name=NodeName("n1"), address="127.0.0.9", port=2200, host_key=None)
HELLO = {
    "v": 1,
    "type": "hello",
    "role": "agent",
    "versions": [1],
    "nodeName": "n1",
    "agentVersion": "test",
    "capabilities": ["sync", "status", *WIRE_FEATURES],
}
#: The hello of an agent of a release before the capability-gated wire features.
OLD_HELLO = {**HELLO, "capabilities": ["sync", "status"]}


def _rule(address: str) -> ServiceRule:
    return ServiceRule.model_validate(
        {
            "namespace": "default",
            "name": "web",
            "ports": [{"port": 80, "endpoints": [{"address": address, "port": 32768}]}],
        }
    )


class ScriptedAgent(ScriptedLink):
    """One link's far end: says hello, acks every sync (or refuses it when told)."""

    def __init__(self, hello: dict[str, Any] = HELLO) -> None:
        super().__init__()
        self.syncs: list[dict[str, Any]] = []
        self.refuse_next = False
        self.applied = 0
        self.cv = threading.Condition()
        self.agent_says(json.dumps(hello).encode() + b"\n")

    def send(self, line: bytes) -> None:
        message = json.loads(line)
        if message["type"] != "sync":
            return
        with self.cv:
            self.syncs.append(message)
            applied, self.refuse_next = not self.refuse_next, False
            self.cv.notify_all()
        ack = {
            "v": 1,
            "type": "ack",
            "inReplyTo": message["id"],
            "generation": message["generation"],
            "applied": applied,
        }
        self.agent_says(json.dumps(ack).encode() + b"\n")
        if applied:
            self.applied = message["generation"]
        else:
            # As the agent does: a status follows, telling what it runs.
            status = {"v": 1, "type": "status", "nodeName": "n1", "node": {}}
            status["generation"] = self.applied
            self.agent_says(json.dumps(status).encode() + b"\n")


class Opener:
    def __init__(self, hello: dict[str, Any] = HELLO) -> None:
        self.agents: list[ScriptedAgent] = []
        self.hello = hello

    def __call__(self, endpoint: NodeEndpoint, settings: LinkSettings) -> ScriptedAgent:
        agent = ScriptedAgent(self.hello)
        self.agents.append(agent)
        return agent


def _connected(opener: Opener) -> tuple[Opener, NodeConnection]:
    connection = NodeConnection(
        ENDPOINT,
        on_message=lambda _n, _m: None,
        on_state=lambda _s: None,
        settings=ConnectionSettings(),
        opener=opener,
    )
    connection.start()
    return opener, connection


def _push(connection: NodeConnection, desired: DesiredSet) -> None:
    connection.push(desired).result(10)


def test_rules_go_once_then_only_when_they_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wire, "DELTA_MAX_SHARE", float("inf"))  # one endpoint of one moved
    opener, connection = _connected(Opener())
    try:
        rules = (_rule("127.0.0.2"),)
        _push(connection, DesiredSet(services=rules))
        _push(connection, DesiredSet(services=rules, config_maps=()))  # unchanged: not sent
        config = ConfigMap.model_validate({"metadata": {"name": "c", "namespace": "default"}})
        _push(connection, DesiredSet(services=rules, config_maps=(config,)))
        _push(connection, DesiredSet(services=(_rule("127.0.0.3"),), config_maps=(config,)))
        syncs = opener.agents[0].syncs
        assert [s.get("servicesUnchanged", False) for s in syncs] == [False, True, False]
        assert syncs[1].get("services", []) == []
        # Changed rules go as a delta against the last sync the agent acknowledged.
        assert "servicesBase" not in syncs[0]
        assert "servicesChanged" not in syncs[0]
        assert syncs[2]["servicesBase"] == syncs[1]["generation"]
        assert syncs[2].get("services", []) == []
        assert syncs[2]["servicesChanged"] == [
            {
                "namespace": "default",
                "name": "web",
                "ports": [
                    {
                        "protocol": "TCP",
                        "port": 80,
                        "added": [{"address": "127.0.0.3", "port": 32768}],
                        "removed": [{"address": "127.0.0.2", "port": 32768}],
                    }
                ],
            }
        ]
    finally:
        connection.close()


def test_an_agent_of_an_older_release_gets_the_older_form() -> None:
    opener, connection = _connected(Opener(OLD_HELLO))
    try:
        headless = ServiceRule.model_validate(
            {
                "namespace": "default",
                "name": "web",
                "ports": [
                    {
                        "port": 80,
                        "endpoints": [{"address": "127.0.0.2", "port": 1, "hostname": "web-0"}],
                    }
                ],
            }
        )
        config = ConfigMap.model_validate({"metadata": {"name": "c", "namespace": "default"}})
        _push(connection, DesiredSet(services=(headless,)))
        _push(connection, DesiredSet(services=(headless,), config_maps=(config,)))
        syncs = opener.agents[0].syncs
        # Never a field the older release refuses; the rules go in full every time.
        for sync in syncs:
            assert "servicesUnchanged" not in sync, sync
            assert "ingresses" not in sync, sync
            for field in ("servicesBase", "servicesChanged", "servicesRemoved"):
                assert field not in sync, sync
            assert sync["services"][0]["ports"][0]["endpoints"] == [
                {"address": "127.0.0.2", "port": 1}
            ]
        assert len(syncs) == 2
    finally:
        connection.close()


def test_after_a_refusal_the_rules_go_again() -> None:
    opener, connection = _connected(Opener())
    try:
        rules = (_rule("127.0.0.2"),)
        _push(connection, DesiredSet(services=rules))
        agent = opener.agents[0]
        agent.refuse_next = True
        config = ConfigMap.model_validate({"metadata": {"name": "c", "namespace": "default"}})
        # Refused (applied: false): the agent kept what it had, which this session may not
        # know, so the connection resends the whole set, rules included.
        future = connection.push(DesiredSet(services=rules, config_maps=(config,)))
        with agent.cv:
            assert agent.cv.wait_for(lambda: len(agent.syncs) >= 3, timeout=10)
        future.result(10)
        assert agent.syncs[1].get("servicesUnchanged") is True
        assert agent.syncs[2].get("servicesUnchanged", False) is False
        assert agent.syncs[2]["services"]
    finally:
        connection.close()


def test_a_refused_delta_is_answered_with_the_whole_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wire, "DELTA_MAX_SHARE", float("inf"))
    opener, connection = _connected(Opener())
    try:
        _push(connection, DesiredSet(services=(_rule("127.0.0.2"),)))
        agent = opener.agents[0]
        agent.refuse_next = True  # as an agent without the delta's base answers
        future = connection.push(DesiredSet(services=(_rule("127.0.0.3"),)))
        with agent.cv:
            assert agent.cv.wait_for(lambda: len(agent.syncs) >= 3, timeout=10)
        future.result(10)
        assert agent.syncs[1]["servicesBase"] == agent.syncs[0]["generation"]
        assert "servicesBase" not in agent.syncs[2]
        assert agent.syncs[2]["services"][0]["ports"][0]["endpoints"] == [
            {"address": "127.0.0.3", "port": 32768}
        ]
    finally:
        connection.close()


def test_pods_go_only_when_they_change() -> None:
    opener, connection = _connected(Opener())
    try:
        pod = Pod.model_validate(
            {
                "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
                "spec": {"containers": [{"name": "c", "image": "img"}]},
            }
        )
        other = pod.model_copy(
            update={"metadata": pod.metadata.model_copy(update={"name": "q", "uid": "u2"})}
        )
        _push(connection, DesiredSet(pods=(pod,), services=(_rule("127.0.0.2"),)))
        # Endpoints moved elsewhere in the fleet: the rules go, the pods stay out.
        _push(connection, DesiredSet(pods=(pod,), services=(_rule("127.0.0.3"),)))
        _push(connection, DesiredSet(pods=(pod, other), services=(_rule("127.0.0.3"),)))
        syncs = opener.agents[0].syncs
        assert [s.get("podsUnchanged", False) for s in syncs] == [False, True, False]
        assert [len(s.get("pods", [])) for s in syncs] == [1, 0, 2]
        assert [s.get("servicesUnchanged", False) for s in syncs] == [False, False, True]
    finally:
        connection.close()
