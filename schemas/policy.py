"""Kinds Capstan accepts and stores but does not act on: HorizontalPodAutoscaler
(autoscaling/v2), PodDisruptionBudget (policy/v1) and NetworkPolicy (networking.k8s.io/v1).

Repositories carry them beside their workloads; refusing them would make those repositories
unusable, and pretending to honour them would be worse. They load (their ``spec`` is kept as
written, unchecked), are applied to the store like any object, and each kind's
``NOT_ACTED_ON`` sentence says exactly what Capstan does instead — ``capstan validate`` prints
it as a warning for every such object. See docs/workloads.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from schemas.meta import KubeObject

__all__ = [
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "NotActedOn",
    "PodDisruptionBudget",
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


class PodDisruptionBudget(NotActedOn):
    NOT_ACTED_ON: ClassVar[str] = (
        "stored, not acted on: rollouts follow their own maxUnavailable and `capstan node "
        "drain` does not consult disruption budgets"
    )

    api_version: Literal["policy/v1"] = "policy/v1"
    kind: Literal["PodDisruptionBudget"] = "PodDisruptionBudget"


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
