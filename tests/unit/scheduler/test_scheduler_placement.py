"""The placement core on plain data: choice, spreading, failures with counts, the dry run."""

from __future__ import annotations

import random

from reconciler.scheduler import (
    ClusterState,
    HostPort,
    NodeInfo,
    NodeName,
    Placement,
    PodInfo,
    PodKey,
    Unschedulable,
    plan,
    select_node,
)
from schemas.node import Taint

GI = 1024**3


def node(name: str, *, cpu: int = 4000, memory: int = 8 * GI, **kwargs: object) -> NodeInfo:
    return NodeInfo(name=NodeName(name), cpu_milli=cpu, memory_bytes=memory, **kwargs)  # type: ignore[arg-type]


def pods(count: int, *, prefix: str = "p", **kwargs: object) -> list[PodInfo]:
    return [PodInfo(key=PodKey(f"default/{prefix}{i}"), **kwargs) for i in range(count)]  # type: ignore[arg-type]


def test_least_allocated_prefers_the_emptiest_node() -> None:
    state = ClusterState([node("a"), node("b"), node("c")])
    state.add_pod(PodInfo(key=PodKey("x/1"), cpu_milli=2000, node_name=NodeName("a")))
    state.add_pod(PodInfo(key=PodKey("x/2"), cpu_milli=1000, node_name=NodeName("b")))
    outcome = select_node(state, PodInfo(key=PodKey("x/3"), cpu_milli=500))
    assert isinstance(outcome, Placement)
    assert outcome.node == "c"


def test_replicas_of_one_owner_spread_evenly() -> None:
    result = plan([node("a"), node("b"), node("c")], pods(9, owner="rs-1", cpu_milli=100))
    assert result.fits
    assert sorted(len(v) for v in result.by_node().values()) == [3, 3, 3]


def test_spreading_beats_a_slightly_emptier_node() -> None:
    # b is emptier, but already runs a replica of rs-1 while a runs none of them.
    running = [
        PodInfo(key=PodKey("o/1"), cpu_milli=400, owner="other", node_name=NodeName("a")),
        PodInfo(key=PodKey("o/2"), cpu_milli=100, owner="rs-1", node_name=NodeName("b")),
    ]
    result = plan([node("a"), node("b")], pods(1, owner="rs-1", cpu_milli=100), running=running)
    assert result.placements[0].node == "a"


def test_unschedulable_counts_per_reason() -> None:
    wanted = PodInfo(
        key=PodKey("default/big"), memory_bytes=2 * GI, node_selector=(("disk", "hdd"),)
    )
    # A node is counted under its first failing filter: "other" has room but the wrong label.
    nodes = [
        node("small-1", memory=GI, labels={"disk": "hdd"}),
        node("small-2", memory=GI, labels={"disk": "hdd"}),
        node("other", memory=64 * GI, labels={"disk": "ssd"}),
    ]
    result = plan(nodes, [wanted])
    assert not result.fits
    [failure] = result.failures
    assert failure.message == (
        "0/3 nodes are available: 2 Insufficient memory, "
        "1 node(s) didn't match Pod's node selector."
    )
    assert dict(failure.reasons) == {
        "Insufficient memory": 2,
        "node(s) didn't match Pod's node selector": 1,
    }


def test_every_filter_reason_counted() -> None:
    unreachable = Taint(key="node.kubernetes.io/unreachable", effect="NoExecute")
    nodes = [
        node("down", ready=False),
        node("cordoned", unschedulable=True),
        node("tainted", taints=(unreachable,)),
        node("full", max_pods=0, cpu=10),
        node("port"),
    ]
    state = ClusterState(nodes)
    http = (HostPort(80),)
    state.add_pod(PodInfo(key=PodKey("x/1"), host_ports=http, node_name=NodeName("port")))
    outcome = select_node(state, PodInfo(key=PodKey("x/2"), cpu_milli=100, host_ports=http))
    assert isinstance(outcome, Unschedulable)
    assert outcome.message == (
        "0/5 nodes are available: 1 Insufficient cpu, 1 Too many pods, "
        "1 node(s) didn't have free ports for the requested pod ports, "
        "1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, "
        "1 node(s) were not ready, 1 node(s) were unschedulable."
    )


def test_host_ports_keep_pods_apart() -> None:
    result = plan([node("a"), node("b")], pods(3, host_ports=(HostPort(8080),)))
    assert sorted(p.node for p in result.placements) == ["a", "b"]
    assert [f.pod for f in result.failures] == ["default/p2"]
    assert "2 node(s) didn't have free ports" in result.failures[0].message


def test_resources_fill_up_and_then_fail() -> None:
    result = plan([node("a", cpu=1000), node("b", cpu=1000)], pods(5, cpu_milli=500))
    assert len(result.placements) == 4
    assert result.failures[0].message == "0/2 nodes are available: 2 Insufficient cpu."


def test_running_pods_count_and_bound_pods_are_not_placed_again() -> None:
    running = [PodInfo(key=PodKey("x/1"), cpu_milli=900, node_name=NodeName("a"))]
    bound = PodInfo(key=PodKey("x/2"), cpu_milli=900, node_name=NodeName("b"))
    result = plan(
        [node("a", cpu=1000), node("b", cpu=1000)],
        [bound, *pods(1, cpu_milli=500)],
        running=running,
    )
    assert result.placements == ()
    assert result.failures[0].reasons == {"Insufficient cpu": 2}


def test_seeded_tie_break_is_reproducible_and_spreads_choices() -> None:
    nodes = [node(f"n{i}") for i in range(20)]
    first = plan(nodes, pods(20), rng=random.Random(7))
    second = plan(nodes, pods(20), rng=random.Random(7))
    assert first == second
    state = ClusterState(nodes)
    chosen = {
        select_node(state, PodInfo(key=PodKey("x/y")), rng=random.Random(seed)).node  # type: ignore[union-attr]
        for seed in range(30)
    }
    assert len(chosen) > 1


def test_without_rng_ties_go_to_the_first_node() -> None:
    state = ClusterState([node("a"), node("b")])
    outcome = select_node(state, PodInfo(key=PodKey("x/y")))
    assert isinstance(outcome, Placement)
    assert outcome.node == "a"


def test_select_node_changes_nothing() -> None:
    state = ClusterState([node("a")])
    select_node(state, PodInfo(key=PodKey("x/y"), cpu_milli=100))
    assert state.usage(NodeName("a")).cpu_milli == 0
    assert state.placed(PodKey("x/y")) is None


def test_node_removed_and_readded_recounts_its_pods() -> None:
    state = ClusterState([node("a", cpu=1000)])
    state.add_pod(PodInfo(key=PodKey("x/1"), cpu_milli=600, node_name=NodeName("a")))
    state.remove_node(NodeName("a"))
    assert state.node_count == 0
    state.upsert_node(node("a", cpu=1000))
    assert state.usage(NodeName("a")).cpu_milli == 600
    assert isinstance(select_node(state, PodInfo(key=PodKey("x/2"), cpu_milli=600)), Unschedulable)


def test_grows_past_initial_capacity() -> None:
    state = ClusterState(initial_capacity=2)
    for i in range(9):
        state.upsert_node(node(f"n{i}"))
        state.add_pod(PodInfo(key=PodKey(f"x/{i}"), owner="o", node_name=NodeName(f"n{i}")))
    assert state.node_count == 9
    assert state.owner_counts("o") == {NodeName(f"n{i}"): 1 for i in range(9)}


def test_node_update_reports_change_only_when_relevant() -> None:
    state = ClusterState()
    assert state.upsert_node(node("a"))
    assert not state.upsert_node(node("a"))
    assert state.upsert_node(node("a", cpu=8000))
