"""Scores: among the nodes that pass the filters, which is best for this pod.

Two Kubernetes scores, each 0..100, in integer arithmetic exactly as kube-scheduler computes
them (so equal nodes tie exactly and the tie-break decides):

- **LeastAllocated** (``NodeResourcesFit``): per resource ``(allocatable - requested) * 100 /
  allocatable`` with the pod's request included and request-less pods counted as 100m/200 MiB,
  averaged over cpu and memory.
- **Spread** (``SelectorSpread``): ``100 * (max - count) / max``, where ``count`` is how many
  pods of the same owner a node already runs and ``max`` the largest such count among feasible
  nodes; a pod without an owner scores 100 everywhere.

Each has a one-node form (the reference, for table tests) and an array form over all nodes,
which the placement core uses. The array form computes in float64 and floors: float division
of integers is several times faster than numpy's int64 floor division, and it is exact here —
the numerator ``n * 100`` is an integer below 2**53, and a quotient ``n * 100 / a`` that is not
an integer lies at least ``1/a`` from one, far more than float64's rounding error for any
``a`` below ~10**13 (10 TiB of memory in bytes), so the floor never lands on the wrong side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_NODE_SCORE",
    "ScoreWeights",
    "least_allocated",
    "least_allocated_array",
    "spread",
    "spread_array",
]

MAX_NODE_SCORE = 100

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ScoreWeights:
    """Kubernetes' defaults: NodeResourcesFit 1, PodTopologySpread (the spreading score) 2."""

    least_allocated: int = 1
    spread: int = 2


def _resource_score(allocatable: int, requested: int) -> int:
    if allocatable <= 0 or requested > allocatable:
        return 0
    return (allocatable - requested) * MAX_NODE_SCORE // allocatable


def least_allocated(
    *, cpu_allocatable: int, memory_allocatable: int, cpu_requested: int, memory_requested: int
) -> int:
    """One node; ``*_requested`` already include the pod being scored."""
    cpu = _resource_score(cpu_allocatable, cpu_requested)
    memory = _resource_score(memory_allocatable, memory_requested)
    return (cpu + memory) // 2


def spread(count: int, max_count: int) -> int:
    if max_count == 0:
        return MAX_NODE_SCORE
    return MAX_NODE_SCORE * (max_count - count) // max_count


def _resource_score_array(allocatable: FloatArray, free_after: FloatArray) -> FloatArray:
    # free_after = allocatable - requested (pod included); negative means over-requested.
    # ``allocatable`` has 0 replaced by 1 (free_after <= 0 there, so the score is 0 as above).
    return np.floor(np.maximum(free_after, 0.0) * MAX_NODE_SCORE / allocatable)


def least_allocated_array(
    *,
    cpu_allocatable: FloatArray,
    memory_allocatable: FloatArray,
    cpu_free: FloatArray,
    memory_free: FloatArray,
    cpu_request: int,
    memory_request: int,
) -> FloatArray:
    """All nodes; ``*_free`` are allocatable minus the (non-zero-defaulted) requests placed,
    ``*_allocatable`` with zeros replaced by 1."""
    cpu = _resource_score_array(cpu_allocatable, cpu_free - cpu_request)
    memory = _resource_score_array(memory_allocatable, memory_free - memory_request)
    return np.floor((cpu + memory) / 2)


def spread_array(counts: IntArray, max_count: int) -> FloatArray:
    if max_count == 0:
        return np.full(counts.shape, float(MAX_NODE_SCORE))
    return np.floor((max_count - counts) * float(MAX_NODE_SCORE) / max_count)
