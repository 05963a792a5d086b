"""The scheduler's incremental view of the cluster: every node's free resources, as arrays.

Fed by the scheduler loop (node and pod informer events, and its own *assumes*: a pod counts
as placed the moment it is chosen, before the bind write returns — a failed bind *forgets* it)
and by :func:`reconciler.scheduler.plan` (a snapshot). Nothing is ever recounted: each event
adds or subtracts one pod's requests at one node index.

Why arrays (numpy): placing one pod means asking every node the same few questions (does it
fit, how full would it be, how many replicas of this owner does it run). As a Python loop that
is ~1 µs per node per question — 5 ms per pod at 5,000 nodes, 200 pods/s. As numpy operations
over int64/float64/bool arrays it is ~15 whole-array operations of a few µs each at these
sizes, which is why we score *every* feasible node instead of sampling a percentage of them as
kube-scheduler's ``percentageOfNodesToScore`` does (sampling would cost placement quality and
buy little here). The node-only filters (Ready, schedulable, taints, nodeSelector) do not change
from pod to pod: their combined mask is cached per (nodeSelector, tolerations) signature and
dropped whenever a node's labels, taints, readiness or schedulability change. Host ports keep
one count array per (protocol, port, host IP) in use, owners one count array per owner. The
LeastAllocated array is cached per (cpu, memory) request pair and refreshed only at the slots
that changed since (replicas of one owner ask alike, and one pod changes one slot). Measured
with ``bench/scheduler.py`` on the 2-core machine: several thousand pods/s at 1,000 and at
5,000 nodes, against 1,000 and 500 required.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from reconciler.scheduler.affinity import (
    REASON_POD_AFFINITY,
    REASON_POD_ANTI_AFFINITY,
    REASON_TOPOLOGY_SPREAD,
    InterPodVerdict,
    inter_pod_verdict,
    node_affinity_matches,
    preference_scores,
)
from reconciler.scheduler.filters import (
    REASON_CPU,
    REASON_HOST_PORTS,
    REASON_MEMORY,
    REASON_NODE_SELECTOR,
    REASON_NOT_READY,
    REASON_TOO_MANY_PODS,
    REASON_UNSCHEDULABLE,
    NodeUsage,
    selector_matches,
    taint_reason,
    untolerated_taint,
)
from reconciler.scheduler.nodeinfo import HostPort, NodeInfo, NodeName, PodInfo, PodKey
from reconciler.scheduler.scores import (
    MAX_NODE_SCORE,
    ScoreWeights,
    least_allocated_array,
    spread_array,
)

__all__ = ["ClusterState", "PlacedPod"]

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_WILDCARD = "0.0.0.0"  # noqa: S104 - a host-port spec, not a listening socket
_INT_ARRAYS = (
    "_alloc_cpu",
    "_alloc_mem",
    "_max_pods",
    "_used_cpu",
    "_used_mem",
    "_used_pods",
    "_free_cpu",
    "_free_mem",
    "_free_pods",
)
# Scoring inputs, float64 for the fast exact score arithmetic of scores.py (integers < 2**53).
_FLOAT_ARRAYS = (
    "_used_cpu_nz",
    "_used_mem_nz",
    "_free_cpu_nz",
    "_free_mem_nz",
    "_score_alloc_cpu",
    "_score_alloc_mem",
)
_BOOL_ARRAYS = ("_present", "_ready", "_schedulable")
_LA_CACHE_ENTRIES = 64
_CHANGE_LOG_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class PlacedPod:
    """A pod the state counts on a node: bound (seen on the API) or only assumed so far."""

    pod: PodInfo
    node: NodeName
    assumed: bool


@dataclass(slots=True)
class _LaEntry:
    scores: FloatArray
    seen: int
    """How much of the change log these scores already reflect."""


@dataclass(frozen=True, slots=True)
class _StaticMask:
    fits: BoolArray
    tolerated: BoolArray
    selected: BoolArray


class ClusterState:
    """Nodes and the pods placed on them, kept as per-node arrays updated one event at a time.

    Not thread-safe: the live scheduler guards it with one lock.
    """

    def __init__(self, nodes: Iterable[NodeInfo] = (), *, initial_capacity: int = 16) -> None:
        nodes = list(nodes)
        self._capacity = max(initial_capacity, len(nodes), 1)
        for name in _INT_ARRAYS:
            setattr(self, name, np.zeros(self._capacity, dtype=np.int64))
        for name in _FLOAT_ARRAYS:
            setattr(self, name, np.zeros(self._capacity, dtype=np.float64))
        for name in _BOOL_ARRAYS:
            setattr(self, name, np.zeros(self._capacity, dtype=np.bool_))
        self._alloc_cpu: IntArray
        self._alloc_mem: IntArray
        self._max_pods: IntArray
        self._used_cpu: IntArray
        self._used_mem: IntArray
        self._used_pods: IntArray
        self._free_cpu: IntArray
        self._free_mem: IntArray
        self._free_pods: IntArray
        self._used_cpu_nz: FloatArray
        self._used_mem_nz: FloatArray
        self._free_cpu_nz: FloatArray
        self._free_mem_nz: FloatArray
        self._score_alloc_cpu: FloatArray
        self._score_alloc_mem: FloatArray
        # WARNING: every slot, used or not, divides the scores: never 0 there.
        self._score_alloc_cpu[:] = 1
        self._score_alloc_mem[:] = 1
        self._present: BoolArray
        self._ready: BoolArray
        self._schedulable: BoolArray
        self._nodes: list[NodeInfo | None] = [None] * self._capacity
        self._index: dict[NodeName, int] = {}
        self._free_slots: list[int] = list(range(self._capacity - 1, -1, -1))
        self._tainted: set[int] = set()
        self._pods: dict[PodKey, PlacedPod] = {}
        self._by_node: dict[NodeName, set[PodKey]] = {}
        self._owners: dict[str, IntArray] = {}
        self._owner_totals: Counter[str] = Counter()
        # (protocol, port) -> host IP -> pods using it per node slot
        self._ports: dict[tuple[str, int], dict[str, IntArray]] = {}
        self._port_totals: Counter[tuple[str, int, str]] = Counter()
        self._masks: dict[object, _StaticMask] = {}
        self._la_cache: dict[tuple[int, int], _LaEntry] = {}
        self._changed: list[int] = []
        for node in nodes:
            self.upsert_node(node)

    # --- nodes -----------------------------------------------------------------------------

    @property
    def node_count(self) -> int:
        return len(self._index)

    def nodes(self) -> Iterator[NodeInfo]:
        for index in self._index.values():
            node = self._nodes[index]
            assert node is not None
            yield node

    def node(self, name: NodeName) -> NodeInfo | None:
        index = self._index.get(name)
        return None if index is None else self._nodes[index]

    def upsert_node(self, info: NodeInfo) -> bool:
        """Add or update a node; True when anything the scheduler reads changed."""
        index = self._index.get(info.name)
        is_new = index is None
        if index is None:
            index = self._allocate(info.name)
        old = self._nodes[index]
        if old == info:
            return False
        self._nodes[index] = info
        self._alloc_cpu[index] = info.cpu_milli
        self._alloc_mem[index] = info.memory_bytes
        self._max_pods[index] = info.max_pods
        # Zero becomes 1: a node without the resource then scores 0 without dividing by 0.
        self._score_alloc_cpu[index] = max(info.cpu_milli, 1)
        self._score_alloc_mem[index] = max(info.memory_bytes, 1)
        self._ready[index] = info.ready
        self._schedulable[index] = not info.unschedulable
        self._present[index] = True
        if info.hard_taints:
            self._tainted.add(index)
        else:
            self._tainted.discard(index)
        self._refresh_free(index)
        if old is None or _static_view(old) != _static_view(info):
            self._masks.clear()
        if is_new:
            for key in self._by_node.get(info.name, ()):
                self._apply(self._pods[key], index, 1)
        return True

    def remove_node(self, name: NodeName) -> None:
        """Forget a node. Pods recorded on it stay recorded and count again if it returns."""
        index = self._index.pop(name, None)
        if index is None:
            return
        for key in self._by_node.get(name, ()):
            self._apply(self._pods[key], index, -1)
        for array_name in _INT_ARRAYS + _FLOAT_ARRAYS:
            getattr(self, array_name)[index] = 0
        self._score_alloc_cpu[index] = self._score_alloc_mem[index] = 1
        for array_name in _BOOL_ARRAYS:
            getattr(self, array_name)[index] = False
        self._nodes[index] = None
        self._tainted.discard(index)
        self._free_slots.append(index)
        self._masks.clear()

    def _allocate(self, name: NodeName) -> int:
        if not self._free_slots:
            self._grow()
        index = self._free_slots.pop()
        self._index[name] = index
        return index

    def _grow(self) -> None:
        old, new = self._capacity, self._capacity * 2
        for name in _INT_ARRAYS + _FLOAT_ARRAYS + _BOOL_ARRAYS:
            array = getattr(self, name)
            setattr(self, name, np.concatenate([array, np.zeros(new - old, dtype=array.dtype)]))
        self._score_alloc_cpu[old:] = self._score_alloc_mem[old:] = 1
        for owner, counts in self._owners.items():
            self._owners[owner] = np.concatenate([counts, np.zeros(new - old, dtype=np.int64)])
        for by_ip in self._ports.values():
            for host_ip, counts in by_ip.items():
                by_ip[host_ip] = np.concatenate([counts, np.zeros(new - old, dtype=np.int64)])
        self._nodes.extend([None] * (new - old))
        self._free_slots.extend(range(new - 1, old - 1, -1))
        self._capacity = new
        self._masks.clear()
        self._la_cache.clear()
        self._changed.clear()

    def _refresh_free(self, index: int) -> None:
        self._note_changed(index)
        self._free_cpu[index] = self._alloc_cpu[index] - self._used_cpu[index]
        self._free_mem[index] = self._alloc_mem[index] - self._used_mem[index]
        self._free_pods[index] = self._max_pods[index] - self._used_pods[index]
        self._free_cpu_nz[index] = self._alloc_cpu[index] - self._used_cpu_nz[index]
        self._free_mem_nz[index] = self._alloc_mem[index] - self._used_mem_nz[index]

    # --- pods ------------------------------------------------------------------------------

    def placed(self, key: PodKey) -> PlacedPod | None:
        return self._pods.get(key)

    def placed_pods(self) -> Iterator[PlacedPod]:
        return iter(tuple(self._pods.values()))

    def assume(self, pod: PodInfo, node: NodeName) -> None:
        """Count ``pod`` on ``node`` now, before its bind is written (kube-scheduler's assume)."""
        if pod.key in self._pods:
            raise ValueError(f"pod {pod.key} is already placed on {self._pods[pod.key].node}")
        self._place(PlacedPod(replace(pod, node_name=node), node, assumed=True))

    def forget(self, key: PodKey) -> None:
        """Undo an assume whose bind failed; a pod seen bound on the API stays."""
        placed = self._pods.get(key)
        if placed is not None and placed.assumed:
            self._unplace(key)

    def confirm(self, key: PodKey, node: NodeName) -> bool:
        """The API now reports an assumed pod bound to ``node``: count it as bound. False when
        the state holds something else for it (then call :meth:`add_pod`)."""
        placed = self._pods.get(key)
        if placed is None or placed.node != node:
            return False
        if placed.assumed:
            self._pods[key] = PlacedPod(placed.pod, node, assumed=False)
        return True

    def add_pod(self, pod: PodInfo) -> None:
        """A pod the API reports bound (``pod.node_name`` set); confirms an assumed one."""
        if pod.node_name is None:
            raise ValueError(f"pod {pod.key} is not bound to a node")
        if pod.key in self._pods:
            self._unplace(pod.key)
        self._place(PlacedPod(pod, pod.node_name, assumed=False))

    def remove_pod(self, key: PodKey) -> None:
        """A pod deleted, or finished (Succeeded/Failed pods hold no resources)."""
        if key in self._pods:
            self._unplace(key)

    def preemption_victims(self, pod: PodInfo) -> tuple[NodeName, list[PlacedPod]] | None:
        """A node where ``pod`` would fit once some pods of lower priority are gone, and those
        pods (kube-scheduler's simple case: lowest priority first, as few as needed; the node
        whose highest victim priority is lowest wins, then the one with fewest victims).
        None when removing every lower-priority pod of any node is not enough. Changes
        nothing."""
        best: tuple[tuple[int, int], NodeName, list[PlacedPod]] | None = None
        for node, keys in list(self._by_node.items()):
            index = self._index.get(node)
            if index is None:
                continue
            lower = sorted(
                (self._pods[k] for k in keys if self._pods[k].pod.priority < pod.priority),
                key=lambda placed: (placed.pod.priority, placed.pod.key),
            )
            removed: list[PlacedPod] = []
            try:
                for placed in lower:
                    self._unplace(placed.pod.key)
                    removed.append(placed)
                    if self.feasible(pod)[index]:
                        rank = (max(p.pod.priority for p in removed), len(removed))
                        if best is None or rank < best[0]:
                            best = (rank, node, list(removed))
                        break
            finally:
                for placed in removed:
                    self._place(placed)
        return None if best is None else (best[1], best[2])

    def _place(self, placed: PlacedPod) -> None:
        self._pods[placed.pod.key] = placed
        self._by_node.setdefault(placed.node, set()).add(placed.pod.key)
        index = self._index.get(placed.node)
        if index is not None:
            self._apply(placed, index, 1)

    def _unplace(self, key: PodKey) -> None:
        placed = self._pods.pop(key)
        keys = self._by_node[placed.node]
        keys.discard(key)
        if not keys:
            del self._by_node[placed.node]
        index = self._index.get(placed.node)
        if index is not None:
            self._apply(placed, index, -1)

    def _apply(self, placed: PlacedPod, index: int, sign: int) -> None:
        pod = placed.pod
        self._used_cpu[index] += sign * pod.cpu_milli
        self._used_mem[index] += sign * pod.memory_bytes
        self._used_pods[index] += sign
        self._used_cpu_nz[index] += sign * pod.score_cpu_milli
        self._used_mem_nz[index] += sign * pod.score_memory_bytes
        self._refresh_free(index)
        if pod.owner is not None:
            counts = self._owners.get(pod.owner)
            if counts is None:
                counts = self._owners[pod.owner] = np.zeros(self._capacity, dtype=np.int64)
            counts[index] += sign
            self._owner_totals[pod.owner] += sign
            if self._owner_totals[pod.owner] == 0:
                del self._owners[pod.owner], self._owner_totals[pod.owner]
        for port in pod.host_ports:
            by_ip = self._ports.setdefault((port.protocol, port.port), {})
            counts = by_ip.get(port.host_ip)
            if counts is None:
                counts = by_ip[port.host_ip] = np.zeros(self._capacity, dtype=np.int64)
            counts[index] += sign
            slot = (port.protocol, port.port, port.host_ip)
            self._port_totals[slot] += sign
            if self._port_totals[slot] == 0:
                del by_ip[port.host_ip], self._port_totals[slot]
                if not by_ip:
                    del self._ports[(port.protocol, port.port)]

    # --- reading ---------------------------------------------------------------------------

    def usage(self, name: NodeName) -> NodeUsage:
        """What the placed pods take from ``name`` (from the arrays; host ports from records)."""
        index = self._index[name]
        ports = tuple(
            port for key in self._by_node.get(name, ()) for port in self._pods[key].pod.host_ports
        )
        return NodeUsage(
            cpu_milli=int(self._used_cpu[index]),
            memory_bytes=int(self._used_mem[index]),
            pods=int(self._used_pods[index]),
            host_ports=ports,
        )

    def owner_counts(self, owner: str) -> dict[NodeName, int]:
        counts = self._owners.get(owner)
        if counts is None:
            return {}
        return {name: int(counts[i]) for name, i in self._index.items() if counts[i]}

    def feasible(self, pod: PodInfo) -> BoolArray:
        """One bool per node slot: may ``pod`` go there now."""
        mask = self._free_pods > 0
        mask &= self._static(pod).fits
        if pod.cpu_milli:
            mask &= self._free_cpu >= pod.cpu_milli
        if pod.memory_bytes:
            mask &= self._free_mem >= pod.memory_bytes
        if pod.host_ports:
            mask &= ~self._port_conflicts(pod.host_ports)
        verdict = self._inter_pod(pod)
        for refused in (verdict.affinity, verdict.anti_affinity, verdict.spread):
            for name in refused:
                mask[self._index[NodeName(name)]] = False
        return mask

    def _inter_pod(self, pod: PodInfo) -> InterPodVerdict:
        if not pod.spread and (
            pod.affinity is None
            or (pod.affinity.pod_affinity is None and pod.affinity.pod_anti_affinity is None)
        ):
            return InterPodVerdict()
        return inter_pod_verdict(
            pod, list(self.nodes()), ((p.pod, str(p.node)) for p in self.placed_pods())
        )

    def scores(self, pod: PodInfo, feasible: BoolArray, weights: ScoreWeights) -> FloatArray:
        """Weighted score per node slot; -1 where ``feasible`` is false."""
        score = self._least_allocated(pod.score_cpu_milli, pod.score_memory_bytes)
        if weights.least_allocated != 1:
            score = score * weights.least_allocated
        if weights.spread:
            counts = self._owners.get(pod.owner) if pod.owner is not None else None
            if counts is None:
                score = score + weights.spread * MAX_NODE_SCORE
            else:
                max_count = int(counts.max(where=feasible, initial=0))
                score = score + weights.spread * spread_array(counts, max_count)
        if pod.affinity is not None or pod.spread:
            preferred = preference_scores(
                pod, list(self.nodes()), ((p.pod, str(p.node)) for p in self.placed_pods())
            )
            if preferred:
                bonus = np.zeros(self._capacity, dtype=np.float64)
                for name, value in preferred.items():
                    bonus[self._index[NodeName(name)]] = value
                score = score + bonus
        return np.where(feasible, score, -1.0)

    def _least_allocated(self, cpu_request: int, memory_request: int) -> FloatArray:
        """LeastAllocated of every slot for these requests. Read-only: callers must not
        change it (it is the cache entry).

        Pods of one ReplicaSet ask for the same resources, and between two of them only the
        slot the first went to changed: so the array is cached per request pair and brought up
        to date by recomputing just the slots changed since (``_changed``), not all of them.
        """
        key = (cpu_request, memory_request)
        entry = self._la_cache.get(key)
        if entry is None:
            if len(self._la_cache) >= _LA_CACHE_ENTRIES:
                self._la_cache.clear()
            entry = self._la_cache[key] = _LaEntry(
                least_allocated_array(
                    cpu_allocatable=self._score_alloc_cpu,
                    memory_allocatable=self._score_alloc_mem,
                    cpu_free=self._free_cpu_nz,
                    memory_free=self._free_mem_nz,
                    cpu_request=cpu_request,
                    memory_request=memory_request,
                ),
                len(self._changed),
            )
        elif entry.seen < len(self._changed):
            slots = np.unique(np.array(self._changed[entry.seen :], dtype=np.intp))
            entry.scores[slots] = least_allocated_array(
                cpu_allocatable=self._score_alloc_cpu[slots],
                memory_allocatable=self._score_alloc_mem[slots],
                cpu_free=self._free_cpu_nz[slots],
                memory_free=self._free_mem_nz[slots],
                cpu_request=cpu_request,
                memory_request=memory_request,
            )
            entry.seen = len(self._changed)
        return entry.scores

    def _note_changed(self, index: int) -> None:
        self._changed.append(index)
        if len(self._changed) > _CHANGE_LOG_LIMIT:
            # Cheaper to recompute each cached array once than to keep a long log.
            self._changed.clear()
            self._la_cache.clear()

    def node_name(self, index: int) -> NodeName:
        node = self._nodes[index]
        assert node is not None
        return node.name

    def diagnose(self, pod: PodInfo) -> Counter[str]:
        """Why no node fits, counted per reason as Kubernetes counts them."""
        reasons: Counter[str] = Counter()
        remaining = self._present.copy()

        def take(failing: BoolArray, reason: str) -> None:
            hit = remaining & failing
            count = int(np.count_nonzero(hit))
            if count:
                reasons[reason] += count
                remaining[hit] = False

        take(~self._ready, REASON_NOT_READY)
        take(~self._schedulable, REASON_UNSCHEDULABLE)
        static = self._static(pod)
        for index in np.flatnonzero(remaining & ~static.tolerated):
            node = self._nodes[index]
            assert node is not None
            taint = untolerated_taint(node, pod.tolerations)
            assert taint is not None
            reasons[taint_reason(taint)] += 1
            remaining[index] = False
        take(~static.selected, REASON_NODE_SELECTOR)
        if pod.host_ports:
            take(self._port_conflicts(pod.host_ports), REASON_HOST_PORTS)
        verdict = self._inter_pod(pod)
        for refused, reason in (
            (verdict.affinity, REASON_POD_AFFINITY),
            (verdict.anti_affinity, REASON_POD_ANTI_AFFINITY),
            (verdict.spread, REASON_TOPOLOGY_SPREAD),
        ):
            refused_mask = np.zeros(self._capacity, dtype=np.bool_)
            for name in refused:
                refused_mask[self._index[NodeName(name)]] = True
            take(refused_mask, reason)
        # The resource filter names every resource a node lacks.
        for failing, reason in (
            (self._free_pods < 1, REASON_TOO_MANY_PODS),
            (self._free_cpu < pod.cpu_milli if pod.cpu_milli else None, REASON_CPU),
            (self._free_mem < pod.memory_bytes if pod.memory_bytes else None, REASON_MEMORY),
        ):
            if failing is not None:
                count = int(np.count_nonzero(remaining & failing))
                if count:
                    reasons[reason] += count
        return reasons

    def _static(self, pod: PodInfo) -> _StaticMask:
        signature = pod.signature
        mask = self._masks.get(signature)
        if mask is None:
            mask = self._masks[signature] = self._compute_static(pod)
        return mask

    def _compute_static(self, pod: PodInfo) -> _StaticMask:
        tolerated = self._present.copy()
        for index in self._tainted:
            node = self._nodes[index]
            assert node is not None
            if untolerated_taint(node, pod.tolerations) is not None:
                tolerated[index] = False
        selected = self._present.copy()
        if pod.node_selector or pod.signature[2]:
            for index in self._index.values():
                node = self._nodes[index]
                assert node is not None
                selected[index] = selector_matches(
                    node.labels, pod.node_selector
                ) and node_affinity_matches(pod, node)
        fits = self._present & self._ready & self._schedulable & tolerated & selected
        return _StaticMask(fits=fits, tolerated=tolerated, selected=selected)

    def _port_conflicts(self, ports: Iterable[HostPort]) -> BoolArray:
        conflict = np.zeros(self._capacity, dtype=np.bool_)
        for want in ports:
            for host_ip, counts in self._ports.get((want.protocol, want.port), {}).items():
                if host_ip == want.host_ip or _WILDCARD in (host_ip, want.host_ip):
                    conflict |= counts > 0
        return conflict


def _static_view(node: NodeInfo) -> object:
    return (dict(node.labels), node.hard_taints, node.ready, node.unschedulable)
