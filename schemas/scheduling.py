"""Scheduling inputs of the pod spec: affinity, topology spread, and PriorityClass.

Part of the pod spec (``schemas.pod``); read by the scheduler (``reconciler.scheduler``):
node affinity filters (required) and scores (preferred) nodes by their labels; pod affinity
and anti-affinity compare the pods already placed in the same topology domain (nodes sharing
the value of ``topologyKey``); ``topologySpreadConstraints`` bound the skew of matching pods
between domains. Field names and meaning are Kubernetes'.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from schemas._validation import PositiveInt, Problems, QualifiedName
from schemas.meta import KubeModel, KubeObject, LabelSelector

__all__ = [
    "Affinity",
    "NodeAffinity",
    "NodeSelector",
    "NodeSelectorRequirement",
    "NodeSelectorTerm",
    "PodAffinity",
    "PodAffinityTerm",
    "PodAntiAffinity",
    "PreferredSchedulingTerm",
    "PriorityClass",
    "TopologySpreadConstraint",
    "WeightedPodAffinityTerm",
]


class NodeSelectorRequirement(KubeModel):
    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> NodeSelectorRequirement:
        problems = Problems("NodeSelectorRequirement")
        if self.operator in ("In", "NotIn") and not self.values:
            problems.add(("values",), "selector_values", f"must be non-empty for {self.operator}")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            problems.add(("values",), "selector_values", f"must be empty for {self.operator}")
        if self.operator in ("Gt", "Lt") and (
            len(self.values) != 1 or not self.values[0].lstrip("-").isdigit()
        ):
            problems.add(("values",), "selector_values", f"must be one integer for {self.operator}")
        problems.raise_if_any()
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator == "In":
            return value in self.values
        if self.operator == "NotIn":
            return value not in self.values
        if self.operator == "Exists":
            return value is not None
        if self.operator == "DoesNotExist":
            return value is None
        if value is None or not value.lstrip("-").isdigit():
            return False
        bound = int(self.values[0])
        return int(value) > bound if self.operator == "Gt" else int(value) < bound


class NodeSelectorTerm(KubeModel):
    """All requirements must hold (``matchFields`` on ``metadata.name`` too)."""

    match_expressions: list[NodeSelectorRequirement] = Field(default_factory=list)
    match_fields: list[NodeSelectorRequirement] = Field(default_factory=list)

    def matches(self, labels: dict[str, str], *, node_name: str) -> bool:
        if not self.match_expressions and not self.match_fields:
            return False  # Kubernetes: an empty term matches no node
        fields = {"metadata.name": node_name}
        return all(r.matches(labels) for r in self.match_expressions) and all(
            r.matches(fields) for r in self.match_fields
        )


class NodeSelector(KubeModel):
    """Any one term must hold."""

    node_selector_terms: list[NodeSelectorTerm] = Field(min_length=1)

    def matches(self, labels: dict[str, str], *, node_name: str) -> bool:
        return any(t.matches(labels, node_name=node_name) for t in self.node_selector_terms)


class PreferredSchedulingTerm(KubeModel):
    weight: int = Field(ge=1, le=100)
    preference: NodeSelectorTerm


class NodeAffinity(KubeModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list
    )


class PodAffinityTerm(KubeModel):
    """Pods matching ``labelSelector`` (in ``namespaces``; default: the pod's own) on nodes
    sharing ``topologyKey``'s value."""

    label_selector: LabelSelector | None = None
    namespaces: list[str] = Field(default_factory=list)
    namespace_selector: LabelSelector | None = None
    topology_key: QualifiedName


class WeightedPodAffinityTerm(KubeModel):
    weight: int = Field(ge=1, le=100)
    pod_affinity_term: PodAffinityTerm


class PodAffinity(KubeModel):
    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(
        default_factory=list
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = Field(
        default_factory=list
    )


class PodAntiAffinity(PodAffinity):
    pass


class Affinity(KubeModel):
    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAntiAffinity | None = None


class TopologySpreadConstraint(KubeModel):
    max_skew: PositiveInt
    topology_key: QualifiedName
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    label_selector: LabelSelector | None = None
    min_domains: PositiveInt | None = None
    match_label_keys: list[str] = Field(default_factory=list)
    node_affinity_policy: Literal["Honor", "Ignore"] | None = None
    node_taints_policy: Literal["Honor", "Ignore"] | None = None


class PriorityClass(KubeObject):
    """scheduling.k8s.io/v1 PriorityClass: a name for a pod priority (higher goes first)."""

    NAMESPACED: ClassVar[bool] = False

    api_version: Literal["scheduling.k8s.io/v1"] = "scheduling.k8s.io/v1"
    kind: Literal["PriorityClass"] = "PriorityClass"
    value: int = Field(ge=-2147483648, le=1000000000)
    global_default: bool | None = None
    description: str | None = None
    preemption_policy: Literal["PreemptLowerPriority", "Never"] | None = None
