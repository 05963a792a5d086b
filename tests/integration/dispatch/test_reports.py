"""Agent reports → API writes, on a real store: stale caches, recreated pods, leases, conditions.

The dispatcher is built on informers that synced once and were then stopped, so its cache is
deliberately behind the store: every write starts from a stale ``resourceVersion``, gets
Conflict, and must re-read and succeed. Reports are fed through the same callback the node
pool calls, and written with ``flush_reports`` (what the report thread runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.api import Api, ManualClock
from reconciler.controllers.runtime import ControllerContext, InformerFactory
from reconciler.nodes import AGENT_CONNECTED, NodeDispatcher, NodeName, NodeState, Phase
from schemas import Node, Pod
from schemas.meta import Condition
from schemas.node import NodeStatus
from schemas.pod import PodStatus
from schemas.protocol import PodReport, Status
from tests.integration.dispatch.conftest import one_node_api

T0 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


@pytest.fixture
def stale(tmp_path: Path) -> Iterator[tuple[Api, NodeDispatcher, ManualClock]]:
    clock = ManualClock(T0.timestamp())
    with one_node_api(tmp_path, clock) as api:
        informers = InformerFactory(api)
        dispatcher = NodeDispatcher(ControllerContext(api, informers, clock))
        informers.start()
        assert informers.wait_synced(10)
        informers.stop()  # from here on the cache never moves
        # Writes the cache does not see: its resourceVersions are now stale.
        node = api.get(Node, "n1")
        api.update(
            node.model_copy(
                update={"metadata": node.metadata.model_copy(update={"labels": {"zone": "a"}})}
            )
        )
        current = api.get(Pod, "web", namespace="default")
        api.update(
            current.model_copy(
                update={"metadata": current.metadata.model_copy(update={"labels": {"app": "web"}})}
            )
        )
        yield api, dispatcher, clock
        dispatcher.pool.close()


def status_message(pod: Pod, *, uid: str | None = None, ready: bool = True) -> Status:
    flag = "True" if ready else "False"
    return Status(
        node_name="n1",
        generation=1,
        node=NodeStatus(
            conditions=[
                Condition(type="Ready", status="True", reason="AgentReady", last_transition_time=T0)
            ]
        ),
        pods=[
            PodReport(
                namespace="default",
                name="web",
                uid=uid or pod.metadata.uid or "",
                status=PodStatus(
                    phase="Running",
                    conditions=[
                        Condition(type="PodScheduled", status="True"),
                        Condition(type="Ready", status=flag, last_transition_time=T0),
                    ],
                ),
            )
        ],
    )


def test_reports_are_written_through_conflicts(
    stale: tuple[Api, NodeDispatcher, ManualClock],
) -> None:
    api, dispatcher, clock = stale
    pod = api.get(Pod, "web", namespace="default")
    assert pod.status is not None
    bound = pod.status.condition("PodScheduled")
    assert bound is not None
    dispatcher._on_message(NodeName("n1"), status_message(pod))
    dispatcher.flush_reports()

    written = api.get(Pod, "web", namespace="default")
    assert written.status is not None
    assert written.status.ready
    assert written.status.phase == "Running"
    assert written.labels == {"app": "web"}  # the concurrent spec write survived
    assert written.status.condition("PodScheduled") == bound  # the binding's, kept
    node = api.get(Node, "n1")
    assert node.status is not None
    assert node.status.condition("Ready") is not None
    assert node.labels == {"zone": "a"}
    lease = api.get_node_lease("n1")
    assert lease is not None
    assert lease.renew_time.timestamp() == clock.time()


def test_a_report_about_a_recreated_pod_is_ignored(
    stale: tuple[Api, NodeDispatcher, ManualClock],
) -> None:
    api, dispatcher, _clock = stale
    pod = api.get(Pod, "web", namespace="default")
    dispatcher._on_message(NodeName("n1"), status_message(pod, uid="uid-of-an-older-pod"))
    dispatcher.flush_reports()
    assert api.get(Pod, "web", namespace="default").status == pod.status


def test_connection_state_becomes_the_agent_connected_condition(
    stale: tuple[Api, NodeDispatcher, ManualClock],
) -> None:
    api, dispatcher, clock = stale
    dispatcher._on_state(
        NodeState(
            NodeName("n1"),
            Phase.HOST_KEY_REJECTED,
            "refused",
            expected_fingerprint="SHA256:pinned",
            offered_fingerprint="SHA256:offered",
        )
    )
    dispatcher.flush_reports()
    node = api.get(Node, "n1")
    assert node.status is not None
    condition = node.status.condition(AGENT_CONNECTED)
    assert condition is not None
    assert (condition.status, condition.reason) == ("False", "HostKeyRejected")
    assert condition.message is not None
    assert "SHA256:pinned" in condition.message
    assert "SHA256:offered" in condition.message
    assert condition.last_transition_time == datetime.fromtimestamp(clock.time(), tz=UTC)
