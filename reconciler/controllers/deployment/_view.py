"""What one reconcile of a Deployment reads and what its strategies may write.

``PodView``: the pods of a Deployment's ReplicaSets, read once per reconcile, with their
readiness and availability. ``ReplicaSetWrites``: the two writes a strategy (``rolling.py``,
``recreate.py``) makes, implemented by the controller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from reconciler.controllers._pods import until_available
from schemas import Deployment, Pod, ReplicaSet

__all__ = ["Counts", "PodView", "ReplicaSetWrites"]


class ReplicaSetWrites(Protocol):
    def ensure_new(
        self, d: Deployment, new_rs: ReplicaSet | None, old: list[ReplicaSet], *, replicas: int
    ) -> ReplicaSet:
        """The new ReplicaSet at ``replicas`` (created if missing, revision bumped if reused)."""
        ...

    def scale(self, d: Deployment, rs: ReplicaSet, replicas: int) -> ReplicaSet:
        """``rs`` scaled to ``replicas``, with an event on ``d``."""
        ...


@dataclass(frozen=True, slots=True)
class Counts:
    replicas: int
    updated: int
    ready: int
    available: int


class PodView:
    """The pods of a Deployment's ReplicaSets, read once per reconcile: every decision in one
    reconcile counts from the same snapshot (and a 1,000-pod Deployment is walked once)."""

    def __init__(self, pods_of: dict[str, list[Pod]], min_ready_seconds: int, now: float):
        self._pods = pods_of
        self._available: dict[str, int] = {}
        self._ready: dict[str, int] = {}
        for uid, pods in pods_of.items():
            waits = [until_available(p, min_ready_seconds, now) for p in pods]
            self._ready[uid] = sum(w is not None for w in waits)
            self._available[uid] = sum(w == 0.0 for w in waits)

    def count(self, rss: Iterable[ReplicaSet]) -> int:
        return sum(len(self._pods.get(rs.metadata.uid or "", ())) for rs in rss)

    def available(self, rss: Iterable[ReplicaSet]) -> int:
        return sum(self._available.get(rs.metadata.uid or "", 0) for rs in rss)

    def ready(self, rss: Iterable[ReplicaSet]) -> int:
        return sum(self._ready.get(rs.metadata.uid or "", 0) for rs in rss)
