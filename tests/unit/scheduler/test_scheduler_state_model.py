"""The incremental ClusterState equals a full recount after any sequence of events (hypothesis).

A plain model keeps nodes and placed pods as dicts; after every step the state's per-node usage
and owner counts must equal a recount from the model, and its vectorized feasibility must
equal the one-node reference filter (``filter_reasons``) applied to the recount.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from reconciler.scheduler import (
    ClusterState,
    HostPort,
    NodeInfo,
    NodeName,
    NodeUsage,
    PodInfo,
    PodKey,
    ScoreWeights,
    filter_reasons,
    least_allocated,
    spread,
)
from schemas.node import Taint
from schemas.pod import Toleration

NODE_NAMES = [NodeName(f"n{i}") for i in range(6)]
POD_KEYS = [PodKey(f"ns/p{i}") for i in range(12)]
OWNERS = [None, "rs-a", "rs-b"]
TAINT = Taint(key="dedicated", value="db", effect="NoSchedule")

nodes = st.builds(
    NodeInfo,
    name=st.sampled_from(NODE_NAMES),
    cpu_milli=st.integers(0, 4000),
    memory_bytes=st.sampled_from([0, 3, 4000, 2**30 * 3 + 7, 10 * 2**40]),
    max_pods=st.integers(0, 4),
    labels=st.dictionaries(st.sampled_from(["zone", "disk"]), st.sampled_from(["a", "b"])),
    taints=st.sampled_from([(), (TAINT,)]),
    ready=st.booleans(),
    unschedulable=st.booleans(),
)
host_ports = st.lists(
    st.builds(
        HostPort,
        port=st.sampled_from([80, 443]),
        protocol=st.sampled_from(["TCP", "UDP"]),
        host_ip=st.sampled_from(["0.0.0.0", "127.0.0.1"]),
    ),
    max_size=2,
    unique_by=lambda p: (p.port, p.protocol),
).map(tuple)
pods = st.builds(
    PodInfo,
    key=st.sampled_from(POD_KEYS),
    cpu_milli=st.integers(0, 1500),
    memory_bytes=st.sampled_from([0, 1, 1500, 2**27, 2**30 + 1]),
    node_selector=st.sampled_from([(), (("zone", "a"),), (("disk", "b"), ("zone", "b"))]),
    tolerations=st.sampled_from([(), (Toleration(key="dedicated", operator="Exists"),)]),
    host_ports=host_ports,
    owner=st.sampled_from(OWNERS),
)


class StateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = ClusterState(initial_capacity=2)
        self.nodes: dict[NodeName, NodeInfo] = {}
        self.placed: dict[PodKey, tuple[PodInfo, NodeName, bool]] = {}

    @rule(info=nodes)
    def upsert_node(self, info: NodeInfo) -> None:
        self.state.upsert_node(info)
        self.nodes[info.name] = info

    @rule(name=st.sampled_from(NODE_NAMES))
    def remove_node(self, name: NodeName) -> None:
        self.state.remove_node(name)
        self.nodes.pop(name, None)

    @rule(pod=pods, node=st.sampled_from(NODE_NAMES))
    def assume(self, pod: PodInfo, node: NodeName) -> None:
        if pod.key in self.placed:
            return
        self.state.assume(pod, node)
        self.placed[pod.key] = (pod, node, True)

    @rule(pod=pods, node=st.sampled_from(NODE_NAMES))
    def add_bound(self, pod: PodInfo, node: NodeName) -> None:
        bound = PodInfo(**{**_fields(pod), "node_name": node})
        self.state.add_pod(bound)
        self.placed[pod.key] = (bound, node, False)

    @rule(key=st.sampled_from(POD_KEYS), node=st.sampled_from(NODE_NAMES))
    def confirm(self, key: PodKey, node: NodeName) -> None:
        entry = self.placed.get(key)
        confirmed = self.state.confirm(key, node)
        assert confirmed == (entry is not None and entry[1] == node)
        if confirmed:
            assert entry is not None
            self.placed[key] = (entry[0], node, False)

    @rule(key=st.sampled_from(POD_KEYS))
    def forget(self, key: PodKey) -> None:
        self.state.forget(key)
        entry = self.placed.get(key)
        if entry is not None and entry[2]:
            del self.placed[key]

    @rule(key=st.sampled_from(POD_KEYS))
    def remove_pod(self, key: PodKey) -> None:
        self.state.remove_pod(key)
        self.placed.pop(key, None)

    def recount(self, name: NodeName) -> NodeUsage:
        on_node = [pod for pod, node, _ in self.placed.values() if node == name]
        return NodeUsage(
            cpu_milli=sum(p.cpu_milli for p in on_node),
            memory_bytes=sum(p.memory_bytes for p in on_node),
            pods=len(on_node),
            host_ports=tuple(port for p in on_node for port in p.host_ports),
        )

    @invariant()
    def usage_equals_recount(self) -> None:
        assert self.state.node_count == len(self.nodes)
        for name in self.nodes:
            have, want = self.state.usage(name), self.recount(name)
            assert (have.cpu_milli, have.memory_bytes, have.pods) == (
                want.cpu_milli,
                want.memory_bytes,
                want.pods,
            )
            assert sorted(map(repr, have.host_ports)) == sorted(map(repr, want.host_ports))
        for owner in OWNERS[1:]:
            expected: dict[NodeName, int] = {}
            for pod, node, _ in self.placed.values():
                if pod.owner == owner and node in self.nodes:
                    expected[node] = expected.get(node, 0) + 1
            assert self.state.owner_counts(owner) == expected

    @invariant()
    def feasibility_equals_reference(self) -> None:
        for probe in PROBES:
            mask = self.state.feasible(probe)
            fits = {self.state.node_name(i) for i in range(len(mask)) if mask[i]}
            expected = {
                name
                for name, info in self.nodes.items()
                if filter_reasons(info, probe, usage=self.recount(name)) == ()
            }
            assert fits == expected

    @invariant()
    def scores_equal_reference(self) -> None:
        for probe in PROBES:
            mask = self.state.feasible(probe)
            scores = self.state.scores(probe, mask, ScoreWeights())
            fits = [i for i in range(len(mask)) if mask[i]]
            counts = self.state.owner_counts(probe.owner) if probe.owner else {}
            max_count = max((counts.get(self.state.node_name(i), 0) for i in fits), default=0)
            for i in fits:
                name = self.state.node_name(i)
                info = self.nodes[name]
                on_node = [pod for pod, node, _ in self.placed.values() if node == name]
                expected = least_allocated(
                    cpu_allocatable=info.cpu_milli,
                    memory_allocatable=info.memory_bytes,
                    cpu_requested=sum(p.score_cpu_milli for p in on_node) + probe.score_cpu_milli,
                    memory_requested=sum(p.score_memory_bytes for p in on_node)
                    + probe.score_memory_bytes,
                ) + 2 * spread(counts.get(name, 0), max_count)
                assert scores[i] == expected


def _fields(pod: PodInfo) -> dict[str, object]:
    return {name: getattr(pod, name) for name in PodInfo.__dataclass_fields__}


PROBES = [
    PodInfo(key=PodKey("probe/a"), cpu_milli=500, memory_bytes=500, owner="rs-a"),
    PodInfo(key=PodKey("probe/b"), host_ports=(HostPort(80),), node_selector=(("zone", "a"),)),
    PodInfo(
        key=PodKey("probe/c"),
        host_ports=(HostPort(443, protocol="UDP", host_ip="127.0.0.2"),),
        tolerations=(Toleration(key="dedicated", operator="Exists"),),
    ),
]

TestClusterState = StateMachine.TestCase
TestClusterState.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
