"""Affinity and topology spread: which nodes a pod's ``affinity`` and
``topologySpreadConstraints`` allow, and how much they prefer each.

Called by :class:`~reconciler.scheduler.state.ClusterState` (``feasible``, ``scores``,
``diagnose``) with the nodes and the pods placed so far; pure functions over plain data.
Kubernetes' rules: a node's topology domain is its value of ``topologyKey`` (a node without
the label is in no domain; ``kubernetes.io/hostname`` defaults to the node's name); pod terms
match pods of the listed namespaces (default: the pod's own; a ``namespaceSelector`` of ``{}``:
all) whose labels match ``labelSelector`` (none: no pod). Required pod affinity is met on a
node whose domain has a matching pod, or anywhere when no pod matches yet and the pod matches
its own term (the first of a group). A DoNotSchedule spread constraint refuses a node whose
domain would then hold more than ``maxSkew`` matching pods above the emptiest domain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reconciler.scheduler.nodeinfo import NodeInfo, PodInfo
from schemas.meta import LabelSelector
from schemas.scheduling import PodAffinityTerm, TopologySpreadConstraint

__all__ = [
    "REASON_POD_AFFINITY",
    "REASON_POD_ANTI_AFFINITY",
    "REASON_TOPOLOGY_SPREAD",
    "InterPodVerdict",
    "inter_pod_verdict",
    "node_affinity_matches",
    "preference_scores",
]

REASON_POD_AFFINITY = "node(s) didn't match pod affinity rules"
REASON_POD_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
REASON_TOPOLOGY_SPREAD = "node(s) didn't match pod topology spread constraints"
HOSTNAME_KEY = "kubernetes.io/hostname"


def _domain(node: NodeInfo, key: str) -> str | None:
    value = node.labels.get(key)
    if value is None and key == HOSTNAME_KEY:
        return str(node.name)
    return value


def node_affinity_matches(pod: PodInfo, node: NodeInfo) -> bool:
    """Required node affinity (``requiredDuringSchedulingIgnoredDuringExecution``)."""
    affinity = pod.affinity.node_affinity if pod.affinity is not None else None
    required = affinity.required_during_scheduling_ignored_during_execution if affinity else None
    return required is None or required.matches(dict(node.labels), node_name=str(node.name))


def _namespace(pod: PodInfo) -> str:
    return str(pod.key).split("/", 1)[0]


def _term_matches(
    term: PodAffinityTerm | TopologySpreadConstraint, owner: PodInfo, other: PodInfo
) -> bool:
    selector: LabelSelector | None = term.label_selector
    if selector is None:
        return False
    if isinstance(term, PodAffinityTerm):
        all_namespaces = term.namespace_selector is not None and term.namespace_selector.is_empty
        namespaces = set(term.namespaces) or {_namespace(owner)}
        if not all_namespaces and _namespace(other) not in namespaces:
            return False
    elif _namespace(other) != _namespace(owner):
        return False
    return selector.matches(dict(other.labels))


def _matching_domains(
    term: PodAffinityTerm,
    pod: PodInfo,
    by_name: dict[str, NodeInfo],
    others: Sequence[tuple[PodInfo, str]],
) -> set[str | None]:
    """The topology domains holding a pod the term matches (never None)."""
    domains = {
        _domain(by_name[node], term.topology_key)
        for other, node in others
        if _term_matches(term, pod, other)
    }
    return domains - {None}


@dataclass(frozen=True, slots=True)
class InterPodVerdict:
    """The nodes (by name) each inter-pod rule refuses."""

    affinity: frozenset[str] = frozenset()
    anti_affinity: frozenset[str] = frozenset()
    spread: frozenset[str] = frozenset()


def inter_pod_verdict(
    pod: PodInfo, nodes: Sequence[NodeInfo], placed: Iterable[tuple[PodInfo, str]]
) -> InterPodVerdict:
    """Which nodes required pod (anti-)affinity and DoNotSchedule spread refuse for ``pod``."""
    affinity = pod.affinity
    required = (
        affinity.pod_affinity.required_during_scheduling_ignored_during_execution
        if affinity is not None and affinity.pod_affinity is not None
        else []
    )
    anti = (
        affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution
        if affinity is not None and affinity.pod_anti_affinity is not None
        else []
    )
    hard_spread = [c for c in pod.spread if c.when_unsatisfiable == "DoNotSchedule"]
    if not required and not anti and not hard_spread:
        return InterPodVerdict()
    by_name = {str(node.name): node for node in nodes}
    others = [(other, node) for other, node in placed if other.key != pod.key and node in by_name]
    refused_affinity: set[str] = set()
    for term in required:
        domains = _matching_domains(term, pod, by_name, others)
        if not domains and _term_matches(term, pod, pod):
            continue  # the first pod of its group goes anywhere
        refused_affinity.update(
            name
            for name, node in by_name.items()
            if _domain(node, term.topology_key) not in domains
        )
    refused_anti: set[str] = set()
    for term in anti:
        domains = _matching_domains(term, pod, by_name, others)
        refused_anti.update(
            name for name, node in by_name.items() if _domain(node, term.topology_key) in domains
        )
    refused_spread: set[str] = set()
    for constraint in hard_spread:
        refused_spread.update(_skewed(pod, constraint, by_name, others))
    return InterPodVerdict(
        frozenset(refused_affinity), frozenset(refused_anti), frozenset(refused_spread)
    )


def _spread_counts(
    pod: PodInfo,
    constraint: TopologySpreadConstraint,
    by_name: dict[str, NodeInfo],
    others: Sequence[tuple[PodInfo, str]],
) -> Counter[str]:
    eligible = [n for n in by_name.values() if node_affinity_matches(pod, n)]
    counts: Counter[str] = Counter()
    for candidate in eligible:
        domain = _domain(candidate, constraint.topology_key)
        if domain is not None:
            counts[domain] += 0
    for other, node in others:
        domain = _domain(by_name[node], constraint.topology_key)
        if domain is not None and domain in counts and _term_matches(constraint, pod, other):
            counts[domain] += 1
    return counts


def _skewed(
    pod: PodInfo,
    constraint: TopologySpreadConstraint,
    by_name: dict[str, NodeInfo],
    others: Sequence[tuple[PodInfo, str]],
) -> set[str]:
    counts = _spread_counts(pod, constraint, by_name, others)
    fewest = min(counts.values(), default=0)
    if constraint.min_domains is not None and len(counts) < constraint.min_domains:
        fewest = 0
    itself = 1 if _term_matches(constraint, pod, pod) else 0
    refused = set()
    for name, node in by_name.items():
        domain = _domain(node, constraint.topology_key)
        if domain is None or domain not in counts:
            refused.add(name)  # no domain: the constraint cannot be checked there
        elif counts[domain] + itself - fewest > constraint.max_skew:
            refused.add(name)
    return refused


def preference_scores(
    pod: PodInfo, nodes: Sequence[NodeInfo], placed: Iterable[tuple[PodInfo, str]]
) -> dict[str, float] | None:
    """0-100 per node name from preferred node and pod (anti-)affinity and ScheduleAnyway
    spread; None when the pod states no preference."""
    affinity = pod.affinity
    node_terms = (
        affinity.node_affinity.preferred_during_scheduling_ignored_during_execution
        if affinity is not None and affinity.node_affinity is not None
        else []
    )
    pod_terms = [
        (weighted, 1)
        for weighted in (
            affinity.pod_affinity.preferred_during_scheduling_ignored_during_execution
            if affinity is not None and affinity.pod_affinity is not None
            else []
        )
    ] + [
        (weighted, -1)
        for weighted in (
            affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution
            if affinity is not None and affinity.pod_anti_affinity is not None
            else []
        )
    ]
    soft_spread = [c for c in pod.spread if c.when_unsatisfiable == "ScheduleAnyway"]
    if not node_terms and not pod_terms and not soft_spread:
        return None
    by_name = {str(node.name): node for node in nodes}
    others = [(other, node) for other, node in placed if other.key != pod.key and node in by_name]
    raw = dict.fromkeys(by_name, 0.0)
    for name, node in by_name.items():
        labels = dict(node.labels)
        raw[name] += sum(
            t.weight for t in node_terms if t.preference.matches(labels, node_name=name)
        )
    for weighted, sign in pod_terms:
        term = weighted.pod_affinity_term
        domains = _matching_domains(term, pod, by_name, others)
        for name, node in by_name.items():
            if _domain(node, term.topology_key) in domains:
                raw[name] += sign * weighted.weight
    for constraint in soft_spread:
        counts = _spread_counts(pod, constraint, by_name, others)
        for name, node in by_name.items():
            domain = _domain(node, constraint.topology_key)
            raw[name] -= counts.get(domain, 0) if domain is not None else 0
    low, high = min(raw.values(), default=0.0), max(raw.values(), default=0.0)
    if high == low:
        return dict.fromkeys(raw, 0.0)
    return {name: 100.0 * (value - low) / (high - low) for name, value in raw.items()}
