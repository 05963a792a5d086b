"""The placement core: choose a node for one pod, and the dry run over a list of pods.

Pure over plain data: :func:`select_node` reads a :class:`ClusterState` and returns a value,
changing nothing; :func:`plan` builds a state from a snapshot of nodes and running pods and
places pods one after another (each placement counted before the next, as the live scheduler
assumes). The live loop (``reconciler.scheduler.bind``) and ``capstan plan`` both call
these, so what a plan shows is what the scheduler will do given the same state and seed.

Filter, score, pick: the filters of ``filters.py``, the scores of ``scores.py`` (weighted), and
among the best-scoring nodes the lowest slot (no ``rng``: deterministic) or a uniformly random
one (``rng``: a seeded ``random.Random``, like kube-scheduler's reservoir sampling of ties).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from reconciler.scheduler.filters import unschedulable_message
from reconciler.scheduler.nodeinfo import NodeInfo, NodeName, PodInfo, PodKey
from reconciler.scheduler.scores import ScoreWeights
from reconciler.scheduler.state import ClusterState

__all__ = ["Placement", "PlanResult", "Unschedulable", "plan", "select_node"]


@dataclass(frozen=True, slots=True)
class Placement:
    pod: PodKey
    node: NodeName
    score: int


@dataclass(frozen=True, slots=True)
class Unschedulable:
    """No node fits: ``reasons`` counts nodes per reason; ``message`` is Kubernetes' sentence."""

    pod: PodKey
    total_nodes: int
    reasons: Mapping[str, int] = field(hash=False)

    @property
    def message(self) -> str:
        return unschedulable_message(self.total_nodes, self.reasons)


@dataclass(frozen=True, slots=True)
class PlanResult:
    """Where each pod would go, and which would not fit (the capacity verdict)."""

    placements: tuple[Placement, ...]
    failures: tuple[Unschedulable, ...]

    @property
    def fits(self) -> bool:
        return not self.failures

    def by_node(self) -> dict[NodeName, list[PodKey]]:
        grouped: dict[NodeName, list[PodKey]] = {}
        for placement in self.placements:
            grouped.setdefault(placement.node, []).append(placement.pod)
        return grouped


def select_node(
    state: ClusterState,
    pod: PodInfo,
    *,
    rng: random.Random | None = None,
    weights: ScoreWeights = ScoreWeights(),  # noqa: B008 - frozen, shared safely
) -> Placement | Unschedulable:
    """The best node for ``pod`` in ``state`` now, or why there is none. Changes nothing."""
    feasible = state.feasible(pod)
    if not feasible.any():
        return Unschedulable(pod=pod.key, total_nodes=state.node_count, reasons=state.diagnose(pod))
    scores = state.scores(pod, feasible, weights)
    if rng is None:
        index = int(np.argmax(scores))
    else:
        best = np.flatnonzero(scores == scores.max())
        index = int(best[rng.randrange(len(best))])
    return Placement(pod=pod.key, node=state.node_name(index), score=int(scores[index]))


def plan(
    nodes: Iterable[NodeInfo],
    pods: Iterable[PodInfo],
    *,
    running: Iterable[PodInfo] = (),
    rng: random.Random | None = None,
    weights: ScoreWeights = ScoreWeights(),  # noqa: B008 - frozen, shared safely
) -> PlanResult:
    """Dry run: place ``pods`` in order on ``nodes`` already running ``running`` (bound pods).

    Pods in ``pods`` that already name a node are counted there, not placed again.
    """
    state = ClusterState(nodes)
    for pod in running:
        state.add_pod(pod)
    placements: list[Placement] = []
    failures: list[Unschedulable] = []
    pending: list[PodInfo] = []
    for pod in pods:
        if pod.node_name is not None:
            state.add_pod(pod)
        else:
            pending.append(pod)
    for pod in pending:
        outcome = select_node(state, pod, rng=rng, weights=weights)
        if isinstance(outcome, Placement):
            state.assume(pod, outcome.node)
            placements.append(outcome)
        else:
            failures.append(outcome)
    return PlanResult(placements=tuple(placements), failures=tuple(failures))
