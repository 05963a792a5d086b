"""apps/v1 Deployment and ReplicaSet.

A Deployment from Git is turned by the deployment controller into ReplicaSets (one per pod
template revision), and each ReplicaSet by its controller into Pods. Both kinds require that
their selector matches their template's labels; the error points at the template labels.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from schemas._validation import IntOrPercent, NonNegativeInt, PositiveInt, Problems
from schemas.meta import Condition, KubeModel, KubeObject, LabelSelector
from schemas.pod import PodTemplateSpec

__all__ = [
    "Deployment",
    "DeploymentSpec",
    "DeploymentStatus",
    "DeploymentStrategy",
    "ReplicaSet",
    "ReplicaSetSpec",
    "ReplicaSetStatus",
    "RollingUpdateDeployment",
    "resolve_int_or_percent",
]


def resolve_int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """Resolve ``maxSurge``/``maxUnavailable`` against a replica count as Kubernetes does:
    surge rounds up, unavailability rounds down (``"25%"`` of 3 → 1 surge, 0 unavailable)."""
    if isinstance(value, int):
        return value
    scaled = int(value.rstrip("%")) * total
    return -(-scaled // 100) if round_up else scaled // 100


def _check_selector(problems: Problems, selector: LabelSelector, template: PodTemplateSpec) -> None:
    if selector.is_empty:
        problems.add(("selector",), "empty_selector", "must not be empty")
    elif not selector.matches(template.metadata.labels):
        problems.add(
            ("template", "metadata", "labels"),
            "selector_mismatch",
            "selector does not match template labels",
            dict(template.metadata.labels),
        )


class RollingUpdateDeployment(KubeModel):
    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = "25%"

    @model_validator(mode="after")
    def _not_both_zero(self) -> RollingUpdateDeployment:
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            problems = Problems("RollingUpdateDeployment")
            problems.add(
                ("maxUnavailable",),
                "rolling_update_zero",
                "may not be 0 when maxSurge is 0",
                self.max_unavailable,
            )
            problems.raise_if_any()
        return self


class DeploymentStrategy(KubeModel):
    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rolling_update: RollingUpdateDeployment | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_rolling_update(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("type", "RollingUpdate") != "RollingUpdate":
            return data
        if "rollingUpdate" in data or "rolling_update" in data:
            return data
        return {**data, "rollingUpdate": {}}

    @model_validator(mode="after")
    def _recreate_alone(self) -> DeploymentStrategy:
        if self.type == "Recreate" and self.rolling_update is not None:
            problems = Problems("DeploymentStrategy")
            problems.add(
                ("rollingUpdate",),
                "strategy_recreate",
                "may not be given when strategy type is Recreate",
            )
            problems.raise_if_any()
        return self


class DeploymentSpec(KubeModel):
    replicas: NonNegativeInt = 1
    selector: LabelSelector
    template: PodTemplateSpec
    strategy: DeploymentStrategy = Field(
        default_factory=lambda: DeploymentStrategy(
            type="RollingUpdate", rolling_update=RollingUpdateDeployment()
        )
    )
    min_ready_seconds: NonNegativeInt = 0
    revision_history_limit: NonNegativeInt = 10
    progress_deadline_seconds: PositiveInt = 600
    paused: bool = False

    @model_validator(mode="after")
    def _check(self) -> DeploymentSpec:
        problems = Problems("DeploymentSpec")
        _check_selector(problems, self.selector, self.template)
        if self.template.spec.restart_policy != "Always":
            problems.add(
                ("template", "spec", "restartPolicy"),
                "restart_policy",
                "must be Always in a Deployment",
                self.template.spec.restart_policy,
            )
        if self.progress_deadline_seconds <= self.min_ready_seconds:
            problems.add(
                ("progressDeadlineSeconds",),
                "progress_deadline",
                "must be greater than minReadySeconds",
                self.progress_deadline_seconds,
            )
        problems.raise_if_any()
        return self


class DeploymentStatus(KubeModel):
    observed_generation: int | None = None
    replicas: NonNegativeInt = 0
    updated_replicas: NonNegativeInt = 0
    ready_replicas: NonNegativeInt = 0
    available_replicas: NonNegativeInt = 0
    unavailable_replicas: NonNegativeInt = 0
    collision_count: NonNegativeInt | None = None
    conditions: list[Condition] = Field(default_factory=list)


class Deployment(KubeObject):
    NAMESPACED: ClassVar[bool] = True

    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["Deployment"] = "Deployment"
    spec: DeploymentSpec
    status: DeploymentStatus | None = None


class ReplicaSetSpec(KubeModel):
    replicas: NonNegativeInt = 1
    min_ready_seconds: NonNegativeInt = 0
    selector: LabelSelector
    template: PodTemplateSpec

    @model_validator(mode="after")
    def _check(self) -> ReplicaSetSpec:
        problems = Problems("ReplicaSetSpec")
        _check_selector(problems, self.selector, self.template)
        if self.template.spec.restart_policy != "Always":
            problems.add(
                ("template", "spec", "restartPolicy"),
                "restart_policy",
                "must be Always in a ReplicaSet",
                self.template.spec.restart_policy,
            )
        problems.raise_if_any()
        return self


class ReplicaSetStatus(KubeModel):
    replicas: NonNegativeInt = 0
    fully_labeled_replicas: NonNegativeInt = 0
    ready_replicas: NonNegativeInt = 0
    available_replicas: NonNegativeInt = 0
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)


class ReplicaSet(KubeObject):
    NAMESPACED: ClassVar[bool] = True

    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["ReplicaSet"] = "ReplicaSet"
    spec: ReplicaSetSpec
    status: ReplicaSetStatus | None = None
