"""The node controller: lease expiry → Unknown + taint → eviction; renewal → Ready again.

Pure decisions as table tests; then the real controllers (node, replicaset, scheduler) on a real
temp store with hollow nodes, driven by a ManualClock: a killed node's pods come back on the
other nodes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from reconciler.api import Api, ManualClock
from reconciler.controllers.manager import ControllerManager
from reconciler.controllers.node import (
    UNREACHABLE_TAINT,
    NodeController,
    assess,
    eviction_deadline,
)
from reconciler.controllers.replicaset import ReplicaSetController
from reconciler.scheduler import Scheduler
from schemas import Node, ObjectKey, Pod
from schemas.meta import Condition, ObjectMeta
from schemas.node import NodeSpec, NodeStatus
from schemas.pod import Container, PodSpec, Toleration
from tests.fixtures.hollow import HollowCluster
from tests.fixtures.reconciles import Reconciles

T0 = 1_800_000_000.0


def node(*, created: float = T0, ready: Condition | None = None) -> Node:
    return Node(
        metadata=ObjectMeta(name="n", creation_timestamp=datetime.fromtimestamp(created, UTC)),
        spec=NodeSpec(address="127.0.0.1"),
        status=NodeStatus(conditions=[ready] if ready else []),
    )


UNKNOWN = Condition(
    type="Ready",
    status="Unknown",
    reason="NodeStatusUnknown",
    last_transition_time=datetime.fromtimestamp(T0 + 50, UTC),
)


@pytest.mark.parametrize(
    ("subject", "renewed", "now", "stale", "unknown_since", "recheck"),
    [
        (node(), T0, T0 + 10, False, None, 30.001),
        (node(), T0, T0 + 40, False, None, 0.001),
        (node(), T0, T0 + 40.5, True, None, 0.001),
        (node(created=T0), None, T0 + 41, True, None, 0.001),  # never renewed: from creation
        (node(ready=UNKNOWN), T0, T0 + 60, True, T0 + 50, 0.001),
        (node(ready=UNKNOWN), T0 + 59, T0 + 60, False, T0 + 50, 39.001),
    ],
)
def test_assess(
    subject: Node,
    renewed: float | None,
    now: float,
    stale: bool,
    unknown_since: float | None,
    recheck: float,
) -> None:
    verdict = assess(subject, renewed_at=renewed, now=now, grace_period_s=40)
    assert verdict.stale is stale
    assert verdict.unknown_since == unknown_since
    assert verdict.recheck_after == pytest.approx(recheck)


def pod_with(tolerations: list[Toleration]) -> Pod:
    return Pod(
        metadata=ObjectMeta(name="p", namespace="default"),
        spec=PodSpec(containers=[Container(name="c", image="i")], tolerations=tolerations),
    )


@pytest.mark.parametrize(
    ("tolerations", "deadline"),
    [
        ([], 1300.0),
        (
            [
                Toleration(
                    key="node.kubernetes.io/unreachable",
                    operator="Exists",
                    effect="NoExecute",
                    toleration_seconds=30,
                )
            ],
            1030.0,
        ),
        (
            [
                Toleration(
                    key="node.kubernetes.io/unreachable", operator="Exists", effect="NoExecute"
                )
            ],
            None,
        ),
        ([Toleration(key="other", operator="Exists")], 1300.0),
    ],
)
def test_eviction_deadline(tolerations: list[Toleration], deadline: float | None) -> None:
    assert (
        eviction_deadline(pod_with(tolerations), unknown_since=1000.0, eviction_timeout_s=300)
        == deadline
    )


# --- live ------------------------------------------------------------------------------------

GRACE_S = 4.0
EVICTION_S = 10.0
ORPHAN_GRACE_S = 3.0


@pytest.fixture
def hollow(api: Api, clock: ManualClock) -> Iterator[HollowCluster]:
    # Stepwise: the test advances the clock and ticks, so heartbeats never lag the clock.
    with HollowCluster(
        api, clock=clock, start_delay_s=0.0, heartbeat_s=1.0, background=False
    ) as cluster:
        yield cluster


@pytest.fixture
def manager(api: Api, clock: ManualClock) -> Iterator[ControllerManager]:
    components = [
        ReplicaSetController,
        Scheduler,
        functools.partial(
            NodeController,
            grace_period_s=GRACE_S,
            eviction_timeout_s=EVICTION_S,
            orphan_grace_s=ORPHAN_GRACE_S,
        ),
    ]
    with ControllerManager(api, clock=clock, components=components) as mgr:
        yield mgr


def replicaset(name: str, replicas: int) -> dict[str, object]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "capstan.local/busybox:1"}]},
            },
        },
    }


def stepper(
    clock: ManualClock, hollow: HollowCluster
) -> Callable[[Callable[[], bool]], Callable[[], bool]]:
    """Wrap a predicate so each poll first advances the clock half a second and ticks the
    hollow nodes (heartbeats never lag the clock)."""

    def stepping(predicate: Callable[[], bool]) -> Callable[[], bool]:
        def step() -> bool:
            clock.advance(0.5)
            hollow.tick()
            return predicate()

        return step

    return stepping


def ready_condition(api: Api, name: str) -> Condition | None:
    status = api.get(Node, name).status
    return status.condition("Ready") if status else None


def test_killed_node_is_tainted_then_its_pods_move(
    api: Api,
    clock: ManualClock,
    hollow: HollowCluster,
    manager: ControllerManager,
    wait_for: Callable[..., None],
) -> None:
    stepping = stepper(clock, hollow)
    hollow.add_nodes(3)

    api.create(replicaset("web", 3))
    wait_for(stepping(lambda: len(hollow.running_pods()) == 3), what="3 running pods")
    victim = hollow.running_pods()[0].spec.node_name
    assert victim is not None
    survivors = sorted(set(hollow.nodes) - {victim})
    victim_pods = {p.name for p in hollow.pods_on(victim)}
    hollow.kill(victim)

    def unknown_and_tainted() -> bool:
        condition = ready_condition(api, victim)
        tainted = UNREACHABLE_TAINT in api.get(Node, victim).spec.taints
        return condition is not None and condition.status == "Unknown" and tainted

    wait_for(stepping(unknown_and_tainted), what="victim Unknown and tainted")
    condition = ready_condition(api, victim)
    assert condition is not None
    assert condition.reason == "NodeStatusUnknown"
    for survivor in survivors:
        survivor_ready = ready_condition(api, survivor)
        assert survivor_ready is not None
        assert survivor_ready.status == "True"

    # Its pods are marked not ready in the same reconcile (endpoints drop them), without
    # the clock moving: nowhere near the eviction timeout, so they still exist.
    def victim_pods_not_ready() -> bool:
        pods = {p.name: p for p in api.list(Pod).items}
        assert victim_pods <= set(pods)
        return all(not pods[name].status.ready for name in victim_pods)  # type: ignore[union-attr]

    wait_for(victim_pods_not_ready, what="the victim's pods marked not ready")

    def replaced_elsewhere() -> bool:
        running = hollow.running_pods(survivors)
        names = {p.name for p in api.list(Pod).items}
        return len(running) == 3 and not (victim_pods & names)

    wait_for(stepping(replaced_elsewhere), what="pods replaced on the surviving nodes")
    assert all(p.spec.node_name != victim for p in api.list(Pod).items)

    hollow.revive(victim)

    def ready_again() -> bool:
        condition = ready_condition(api, victim)
        return (
            condition is not None
            and condition.status == "True"
            and UNREACHABLE_TAINT not in api.get(Node, victim).spec.taints
        )

    wait_for(stepping(ready_again), what="victim Ready and untainted after renewal")


def test_short_outage_keeps_pods(
    api: Api,
    clock: ManualClock,
    hollow: HollowCluster,
    manager: ControllerManager,
    wait_for: Callable[..., None],
) -> None:
    hollow.add_nodes(1)
    api.create(replicaset("solo", 1))

    def step_until(predicate: Callable[[], bool], what: str) -> None:
        wait_for(stepper(clock, hollow)(predicate), what=what)

    step_until(lambda: len(hollow.running_pods()) == 1, "pod running")
    [pod] = hollow.running_pods()
    name = next(iter(hollow.nodes))
    hollow.kill(name)
    step_until(
        lambda: (
            (ready_condition(api, name) or Condition(type="x", status="True")).status == "Unknown"
        ),
        "node Unknown",
    )
    hollow.revive(name)
    step_until(
        lambda: (
            (ready_condition(api, name) or Condition(type="x", status="False")).status == "True"
        ),
        "node Ready again",
    )
    # Back before the eviction timeout: the same pod, ready again.
    step_until(lambda: [p.name for p in hollow.running_pods()] == [pod.name], "pod ready again")


def test_pods_of_a_deleted_node_are_collected_and_replaced(
    api: Api,
    clock: ManualClock,
    hollow: HollowCluster,
    manager: ControllerManager,
    wait_for: Callable[..., None],
) -> None:
    stepping = stepper(clock, hollow)
    hollow.add_nodes(2)

    api.create(replicaset("gone", 2))
    wait_for(stepping(lambda: len(hollow.running_pods()) == 2), what="2 running pods")
    victim = hollow.running_pods()[0].spec.node_name
    assert victim is not None
    [survivor] = sorted(set(hollow.nodes) - {victim})
    orphans = {p.name for p in hollow.pods_on(victim)}
    assert orphans
    # The Node object leaves (its manifest left Git); its heartbeat stops with it.
    hollow.kill(victim)
    api.delete(Node, victim)
    # Not at once: the pods stay for the grace (a lagging cache must not cost pods), through a
    # reconcile of the node made after the deletion and half the grace.
    clock.advance(ORPHAN_GRACE_S / 2)
    hollow.tick()
    Reconciles(manager.component(NodeController)).fresh_pass(ObjectKey("Node", "", victim))
    assert orphans <= {p.name for p in api.list(Pod).items}

    def replaced_on_survivor() -> bool:
        pods = api.list(Pod).items
        return not ({p.name for p in pods} & orphans) and len(hollow.running_pods([survivor])) == 2

    wait_for(stepping(replaced_on_survivor), what="orphaned pods collected and replaced")
    events = [e for e in api.list_events() if e.reason == "PodGarbageCollected"]
    assert {e.involved_object.name for e in events} == orphans
