"""Policy kinds: PodDisruptionBudget (policy/v1), honoured by evictions; and kinds Capstan
accepts and stores but does not act on: HorizontalPodAutoscaler (autoscaling/v2) and
NetworkPolicy (networking.k8s.io/v1).

Repositories carry the last two beside their workloads; refusing them would make those
repositories unusable, and pretending to honour them would be worse. They load (their
``spec`` is kept as written, unchecked), are applied to the store like any object, and each
kind's ``NOT_ACTED_ON`` sentence says exactly what Capstan does instead — ``capstan validate``
prints it as a warning for every such object. See docs/workloads.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from schemas._validation import IntOrPercent, Problems
from schemas.meta import KubeModel, KubeObject, LabelSelector

__all__ = [
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "NotActedOn",
    "PodDisruptionBudget",
    "PodDisruptionBudgetSpec",
    "hpa_v2_from_v1",
]


class NotActedOn(KubeObject):
    """Base of the kinds stored but not acted on."""

    NOT_ACTED_ON: ClassVar[str] = ""

    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None


class HorizontalPodAutoscaler(NotActedOn):
    NOT_ACTED_ON: ClassVar[str] = (
        "stored, not acted on: Capstan does not autoscale; the target keeps the replicas "
        "written in its own manifest"
    )

    api_version: Literal["autoscaling/v2"] = "autoscaling/v2"
    kind: Literal["HorizontalPodAutoscaler"] = "HorizontalPodAutoscaler"


class PodDisruptionBudgetSpec(KubeModel):
    """How many of the selected pods must stay up through voluntary disruptions."""

    selector: LabelSelector | None = None
    min_available: IntOrPercent | None = None
    max_unavailable: IntOrPercent | None = None
    unhealthy_pod_eviction_policy: Literal["IfHealthyBudget", "AlwaysAllow"] | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> PodDisruptionBudgetSpec:
        if self.min_available is not None and self.max_unavailable is not None:
            problems = Problems("PodDisruptionBudgetSpec")
            problems.add(
                ("maxUnavailable",),
                "pdb_bounds",
                "minAvailable and maxUnavailable cannot both be set",
                self.max_unavailable,
            )
            problems.raise_if_any()
        return self


class PodDisruptionBudget(KubeObject):
    """policy/v1 PodDisruptionBudget: honoured by evictions (the API's Eviction, ``capstan node
    drain``; ``reconciler.api._disruption``). Rollouts follow their own ``maxUnavailable``,
    and a node lost or partitioned is not a voluntary disruption (as in Kubernetes)."""

    api_version: Literal["policy/v1"] = "policy/v1"
    kind: Literal["PodDisruptionBudget"] = "PodDisruptionBudget"
    spec: PodDisruptionBudgetSpec = Field(default_factory=PodDisruptionBudgetSpec)
    status: dict[str, Any] | None = None


class NetworkPolicy(NotActedOn):
    NOT_ACTED_ON: ClassVar[str] = (
        "stored, not enforced: every pod can reach every other pod and Service; "
        "no traffic is filtered"
    )

    api_version: Literal["networking.k8s.io/v1"] = "networking.k8s.io/v1"
    kind: Literal["NetworkPolicy"] = "NetworkPolicy"


def hpa_v2_from_v1(doc: Mapping[str, Any]) -> dict[str, Any]:
    """An ``autoscaling/v1`` HorizontalPodAutoscaler as the ``autoscaling/v2`` object
    Kubernetes serves for it: ``targetCPUUtilizationPercentage`` becomes a CPU Resource
    metric with that average utilization; everything else is kept."""
    converted = {**doc, "apiVersion": "autoscaling/v2"}
    spec = doc.get("spec")
    if isinstance(spec, Mapping):
        rest = {k: v for k, v in spec.items() if k != "targetCPUUtilizationPercentage"}
        target = spec.get("targetCPUUtilizationPercentage")
        if target is not None:
            rest["metrics"] = [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": target},
                    },
                }
            ]
        converted["spec"] = rest
    return converted
