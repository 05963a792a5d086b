"""The node's own status (agent.nodeinfo): each call carries its own heartbeat time and the
problem and conditions it is given, though the parts that stay the same are built once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.nodeinfo import node_status
from schemas.meta import Condition
from schemas.node import NodeStatus

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def _status(
    *,
    bind_address: str = "127.0.0.5",
    docker_version: str = "27.0",
    heartbeat: datetime = SINCE + timedelta(seconds=10),
    problem: str | None = None,
    conditions: tuple[Condition, ...] = (),
) -> NodeStatus:
    return node_status(
        bind_address=bind_address,
        docker_version=docker_version,
        agent_version="0.1",
        ready_since=SINCE,
        heartbeat=heartbeat,
        problem=problem,
        conditions=conditions,
    )


def test_each_call_carries_its_heartbeat_and_the_same_rest() -> None:
    first = _status()
    later = _status(heartbeat=SINCE + timedelta(seconds=20))
    [ready] = first.conditions
    assert (ready.type, ready.status, ready.last_transition_time) == ("Ready", "True", SINCE)
    assert ready.last_heartbeat_time == SINCE + timedelta(seconds=10)
    assert later.conditions[0].last_heartbeat_time == SINCE + timedelta(seconds=20)
    assert first.conditions[0].last_heartbeat_time == SINCE + timedelta(seconds=10)
    assert later.without_heartbeats() == first.without_heartbeats()
    assert (first.addresses[0].type, first.addresses[0].address) == ("InternalIP", "127.0.0.5")
    assert first.node_info.docker_version == "27.0"


def test_a_problem_a_condition_or_an_address_shows_at_once() -> None:
    assert _status().conditions[0].status == "True"
    down = _status(problem="docker unreachable")
    assert (down.conditions[0].status, down.conditions[0].message) == (
        "False",
        "docker unreachable",
    )
    proxy = Condition(type="ProxyReady", status="False", reason="Userspace", message="boom")
    assert _status(conditions=(proxy,)).conditions[1:] == [proxy]
    assert _status().conditions[0].status == "True"  # and back
    moved = _status(bind_address="127.0.0.6")
    assert moved.addresses[0].address == "127.0.0.6"
    assert _status(docker_version="28.1").node_info.docker_version == "28.1"
