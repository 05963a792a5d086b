"""An idle node's heartbeats, and a node back from Unknown, on a real store and informers.

An idle agent's heartbeat is a status with no pods and no node status: the dispatcher writes
no Node for it, only the node's lease, which the lease thread renews for every node heard
in one store transaction. When a node comes back over a link that survived the outage, its
agent has nothing new to say about its pods, yet the node controller marked them not Ready:
the dispatcher writes the reports it holds again. Reports are fed through the callback the
node pool calls, and written with ``flush_reports`` (what the report threads run).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.api import Api, ManualClock
from reconciler.controllers.node import NodeController
from reconciler.controllers.runtime import ControllerContext, InformerFactory
from reconciler.nodes import NodeDispatcher, NodeName
from schemas import Node, ObjectKey, Pod
from schemas.protocol import Status
from tests.fixtures.waiting import wait_until
from tests.integration.dispatch.conftest import one_node_api
from tests.integration.dispatch.test_reports import status_message

T0 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
N1 = NodeName("n1")
GRACE_S = 40.0


@dataclass
class Plane:
    api: Api
    dispatcher: NodeDispatcher
    nodes: NodeController
    clock: ManualClock


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    clock = ManualClock(T0.timestamp())
    with one_node_api(tmp_path, clock) as api:
        informers = InformerFactory(api)
        ctx = ControllerContext(api, informers, clock)
        dispatcher = NodeDispatcher(ctx)
        nodes = NodeController(ctx, grace_period_s=GRACE_S)
        informers.start()
        try:
            assert informers.wait_synced(10)
            yield Plane(api, dispatcher, nodes, clock)
        finally:
            informers.stop()
            dispatcher.pool.close()


def _heartbeat() -> Status:
    """What an idle agent sends a control plane that lists ``nodeUnchanged``."""
    return Status(node_name="n1", generation=1, complete=False)


def _pod_ready(api: Api) -> str | None:
    status = api.get(Pod, "web", namespace="default").status
    ready = status.condition("Ready") if status is not None else None
    return ready.status if ready is not None else None


def _node_ready(node: Node | None) -> str | None:
    ready = node.status.condition("Ready") if node is not None and node.status else None
    return ready.status if ready is not None else None


def test_an_idle_heartbeat_writes_only_the_lease_with_every_other_node(plane: Plane) -> None:
    api, dispatcher = plane.api, plane.dispatcher
    dispatcher._on_message(N1, status_message(api.get(Pod, "web", namespace="default")))
    dispatcher.flush_reports()
    node_version = api.get(Node, "n1").metadata.resource_version

    plane.clock.advance(10)
    heard = plane.clock.time()
    dispatcher._on_message(N1, _heartbeat())
    plane.clock.advance(3)
    dispatcher.flush_reports()
    dispatcher._renew_leases()  # what the lease thread does every lease_renew_s

    assert api.get(Node, "n1").metadata.resource_version == node_version
    lease = api.get_node_lease("n1")
    assert lease is not None
    # Stamped with when the node was heard, not when the lease thread came round.
    assert lease.renew_time.timestamp() == heard


def test_a_node_back_from_unknown_gets_its_pods_ready_from_the_reports_held(
    plane: Plane,
) -> None:
    api, dispatcher, nodes = plane.api, plane.dispatcher, plane.nodes
    key = ObjectKey("Node", "", "n1")
    dispatcher._on_message(N1, status_message(api.get(Pod, "web", namespace="default")))
    dispatcher.flush_reports()
    assert _pod_ready(api) == "True"
    wait_until(
        lambda: (
            _node_ready(nodes.nodes.get("n1")) == "True"
            and any(p.status and p.status.ready for p in nodes.pods.by_index("node", "n1"))
        ),
        what="the node controller's caches to see the node and its pod Ready",
    )

    # The link goes silent past the grace period: the node controller marks it Unknown and
    # its pod not Ready.
    plane.clock.advance(GRACE_S + 1)
    nodes.reconcile(key)
    assert _pod_ready(api) == "False"
    wait_until(
        lambda: _node_ready(nodes.nodes.get("n1")) == "Unknown",
        what="the node controller's cache to see the node Unknown",
    )

    # The link comes back: the agent's heartbeats say nothing new, the lease is renewed and
    # the node controller turns the node Ready.
    dispatcher._on_message(N1, _heartbeat())
    dispatcher._renew_leases()
    nodes.reconcile(key)
    assert _node_ready(api.get(Node, "n1")) == "True"

    def restored() -> bool:
        dispatcher.flush_reports()
        return _pod_ready(api) == "True"

    wait_until(restored, what="the pod Ready again from the report held")
