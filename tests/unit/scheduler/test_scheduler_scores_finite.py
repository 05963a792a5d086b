"""Scores stay finite on degenerate nodes: no numpy division warning, no NaN in a choice.

A node with zero allocatable CPU or memory, a removed slot, slots added by growing the
arrays, zero and huge requests: every score is computed with numpy's floating-point errors
raised (``np.errstate(all="raise")``), so a 0/0 anywhere fails here instead of turning into
a NaN that ``argmax`` would silently pick or skip.
"""

from __future__ import annotations

import numpy as np

from reconciler.scheduler import (
    ClusterState,
    NodeInfo,
    NodeName,
    Placement,
    PodInfo,
    PodKey,
    select_node,
)
from reconciler.scheduler.scores import ScoreWeights

GI = 1024**3


def _node(name: str, cpu: int, memory: int) -> NodeInfo:
    return NodeInfo(name=NodeName(name), cpu_milli=cpu, memory_bytes=memory)


def test_degenerate_nodes_and_requests_score_finite() -> None:
    nodes = [
        _node("no-cpu", 0, 8 * GI),
        _node("no-memory", 4000, 0),
        _node("empty", 0, 0),
        _node("big", 64_000, 512 * GI),
    ]
    with np.errstate(all="raise"):
        state = ClusterState(nodes, initial_capacity=2)  # grows while nodes are added
        state.remove_node(NodeName("empty"))
        for index in range(20):  # more growth: slots that never held a node
            state.upsert_node(_node(f"n{index}", 1000 * (index % 3), GI * (index % 2)))
        shapes = [(0, 0), (1, 1), (250, 64 * 1024**2), (64_000, 512 * GI), (10**9, 10**15)]
        weights = ScoreWeights()
        for number, (cpu, memory) in enumerate(shapes):
            pod = PodInfo(key=PodKey(f"default/p{number}"), cpu_milli=cpu, memory_bytes=memory)
            feasible = state.feasible(pod)
            scores = state.scores(pod, feasible, weights)
            assert np.isfinite(scores).all(), (cpu, memory, scores)
            outcome = select_node(state, pod)
            if isinstance(outcome, Placement):
                state.assume(pod, outcome.node)
        spread = PodInfo(key=PodKey("default/s0"), cpu_milli=100, owner="rs-1")
        for number in range(6):
            pod = PodInfo(key=PodKey(f"default/s{number}"), cpu_milli=100, owner="rs-1")
            outcome = select_node(state, pod)
            assert isinstance(outcome, Placement)
            state.assume(pod, outcome.node)
        assert np.isfinite(state.scores(spread, state.feasible(spread), weights)).all()
