"""The pod reports the dispatcher holds per node, and a node status without heartbeat times."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from reconciler.nodes.reports import HeldReports
from schemas.meta import Condition
from schemas.node import NodeStatus
from schemas.pod import PodStatus
from schemas.protocol import PodReport, Status

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)


def _report(uid: str, phase: str = "Running") -> PodReport:
    return PodReport(namespace="default", name=f"p-{uid}", uid=uid, status=PodStatus(phase=phase))


def _node(heartbeat: datetime) -> NodeStatus:
    return NodeStatus(
        conditions=[
            Condition(type="Ready", status="True", last_heartbeat_time=heartbeat),
            Condition(type="ProxyReady", status="True", last_heartbeat_time=heartbeat),
        ]
    )


def test_a_complete_status_replaces_the_reports_and_a_delta_updates_them() -> None:
    held = HeldReports()
    held.note("n1", Status(node_name="n1", node=_node(T0), pods=[_report("a"), _report("b")]))
    held.note(
        "n1",
        Status(node_name="n1", complete=False, pods=[_report("a", "Failed")], removed=["b"]),
    )
    assert {(r.uid, r.status.phase) for r in held.reports("n1")} == {("a", "Failed")}
    held.note("n1", Status(node_name="n1", node=_node(T0), pods=[_report("c")]))
    assert [r.uid for r in held.reports("n1")] == ["c"]
    held.forget("n1")
    assert held.reports("n1") == []


def test_node_statuses_that_differ_only_in_heartbeat_times_are_the_same() -> None:
    reordered = _node(T1).model_copy(update={"conditions": _node(T1).conditions[::-1]})
    assert _node(T0).without_heartbeats() == reordered.without_heartbeats()
    changed = _node(T1).model_copy(
        update={"conditions": [Condition(type="Ready", status="False", last_heartbeat_time=T1)]}
    )
    assert _node(T0).without_heartbeats() != changed.without_heartbeats()


def test_a_complete_status_must_carry_the_node_status() -> None:
    with pytest.raises(ValidationError):
        Status(node_name="n1", complete=True)
    assert Status(node_name="n1", complete=False).node is None


def _rich_report(uid: str) -> PodReport:
    return PodReport.model_validate(
        {
            "namespace": "shop",
            "name": f"cart-{uid}",
            "uid": uid,
            "status": {
                "phase": "Running",
                "message": "größe ≤ 2 — restarted",
                "hostIP": "10.0.0.7",
                "podIP": "10.0.0.7",
                "startTime": "2026-01-01T00:00:00.123456Z",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "lastTransitionTime": "2026-01-01T00:00:01Z",
                    },
                    {"type": "ContainersReady", "status": "False", "reason": "Probe"},
                ],
                "containerStatuses": [
                    {
                        "name": "cart",
                        "image": "ghcr.io/shop/cart:2",
                        "imageID": "sha256:abc",
                        "containerID": "docker://0123",
                        "ready": True,
                        "restartCount": 3,
                        "state": {"running": {"startedAt": "2026-01-01T00:00:02Z"}},
                        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                    }
                ],
                "hostPorts": [
                    {
                        "containerName": "cart",
                        "containerPort": 9000,
                        "hostIP": "10.0.0.7",
                        "hostPort": 32001,
                    }
                ],
            },
        }
    )


def test_the_reports_read_back_are_those_noted() -> None:
    held = HeldReports()
    noted = [_rich_report("a"), _rich_report("b"), _report("c")]
    held.note("n1", Status(node_name="n1", node=_node(T0), pods=noted))
    assert sorted(held.reports("n1"), key=lambda r: r.uid) == noted
    changed = _rich_report("b").model_copy(update={"name": "cart-b2"})
    held.note("n1", Status(node_name="n1", complete=False, pods=[changed]))
    assert sorted(held.reports("n1"), key=lambda r: r.uid) == [noted[0], changed, noted[2]]
    assert held.reports("n2") == []


def test_a_held_report_is_keyed_by_the_interned_uid() -> None:
    # Decoded from the wire, each report's uid is a string of its own; held, it is the one
    # the informers' pods hold (they intern theirs).
    uid = "".join(["uid-", "d"])
    line = Status(node_name="n1", node=_node(T0), pods=[_report(uid)]).model_dump_json()
    held = HeldReports()
    held.note("n1", Status.model_validate_json(line))
    assert held.reports("n1")[0].uid == uid
    assert next(iter(held._nodes["n1"])) is sys.intern(uid)
