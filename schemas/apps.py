"""apps/v1 Deployment, ReplicaSet, DaemonSet and StatefulSet.

A Deployment from Git is turned by the deployment controller into ReplicaSets (one per pod
template revision), and each ReplicaSet by its controller into Pods. Both kinds require that
their selector matches their template's labels; the error points at the template labels.
A DaemonSet is turned by its controller into one pod per matching node; a StatefulSet into
pods with stable names and a PersistentVolumeClaim per pod and claim template.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, ModelWrapValidatorHandler, model_validator

from schemas._validation import IntOrPercent, NonNegativeInt, PositiveInt, Problems
from schemas.meta import Condition, KubeModel, KubeObject, LabelSelector, ObjectMeta
from schemas.pod import TEMPLATE_CLAIM_VOLUMES, PodTemplateSpec
from schemas.storage import PersistentVolumeClaimSpec

__all__ = [
    "DaemonSet",
    "DaemonSetSpec",
    "DaemonSetStatus",
    "DaemonSetUpdateStrategy",
    "Deployment",
    "DeploymentSpec",
    "DeploymentStatus",
    "DeploymentStrategy",
    "PersistentVolumeClaimTemplate",
    "ReplicaSet",
    "ReplicaSetSpec",
    "ReplicaSetStatus",
    "RollingUpdateDaemonSet",
    "RollingUpdateDeployment",
    "StatefulSet",
    "StatefulSetSpec",
    "StatefulSetStatus",
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


class RollingUpdateDaemonSet(KubeModel):
    max_unavailable: IntOrPercent = 1
    max_surge: IntOrPercent = 0

    @model_validator(mode="after")
    def _no_surge(self) -> RollingUpdateDaemonSet:
        if self.max_surge not in (0, "0%"):
            problems = Problems("RollingUpdateDaemonSet")
            problems.add(
                ("maxSurge",),
                "not_supported",
                "must be 0 in Capstan: a node runs one pod of a DaemonSet at a time "
                "(its host ports and volumes could not be shared by two)",
                self.max_surge,
            )
            problems.raise_if_any()
        return self


class DaemonSetUpdateStrategy(KubeModel):
    type: Literal["RollingUpdate", "OnDelete"] = "RollingUpdate"
    rolling_update: RollingUpdateDaemonSet | None = None


class DaemonSetSpec(KubeModel):
    selector: LabelSelector
    template: PodTemplateSpec
    update_strategy: DaemonSetUpdateStrategy = Field(default_factory=DaemonSetUpdateStrategy)
    min_ready_seconds: NonNegativeInt = 0
    revision_history_limit: NonNegativeInt = 10

    @model_validator(mode="after")
    def _check(self) -> DaemonSetSpec:
        problems = Problems("DaemonSetSpec")
        _check_selector(problems, self.selector, self.template)
        if self.template.spec.restart_policy != "Always":
            problems.add(
                ("template", "spec", "restartPolicy"),
                "restart_policy",
                "must be Always in a DaemonSet",
                self.template.spec.restart_policy,
            )
        problems.raise_if_any()
        return self

    @property
    def max_unavailable(self) -> IntOrPercent:
        rolling = self.update_strategy.rolling_update
        return rolling.max_unavailable if rolling is not None else 1


class DaemonSetStatus(KubeModel):
    current_number_scheduled: NonNegativeInt = 0
    desired_number_scheduled: NonNegativeInt = 0
    number_misscheduled: NonNegativeInt = 0
    number_ready: NonNegativeInt = 0
    number_available: NonNegativeInt = 0
    number_unavailable: NonNegativeInt = 0
    updated_number_scheduled: NonNegativeInt = 0
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)


class DaemonSet(KubeObject):
    NAMESPACED: ClassVar[bool] = True

    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["DaemonSet"] = "DaemonSet"
    spec: DaemonSetSpec
    status: DaemonSetStatus | None = None


class PersistentVolumeClaimTemplate(KubeModel):
    """One of a StatefulSet's ``volumeClaimTemplates``: a claim ``<name>-<set>-<ordinal>`` per
    pod, mounted as the volume ``<name>``."""

    # Written by `kubectl get -o yaml` and some charts; the template is a claim of that kind.
    api_version: Literal["v1"] | None = None
    kind: Literal["PersistentVolumeClaim"] | None = None
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PersistentVolumeClaimSpec = Field(default_factory=PersistentVolumeClaimSpec)


class RollingUpdateStatefulSetStrategy(KubeModel):
    partition: NonNegativeInt = 0
    max_unavailable: IntOrPercent = 1


class StatefulSetUpdateStrategy(KubeModel):
    type: Literal["RollingUpdate", "OnDelete"] = "RollingUpdate"
    rolling_update: RollingUpdateStatefulSetStrategy | None = None


class StatefulSetPersistentVolumeClaimRetentionPolicy(KubeModel):
    when_deleted: Literal["Retain", "Delete"] = "Retain"
    when_scaled: Literal["Retain", "Delete"] = "Retain"


class StatefulSetOrdinals(KubeModel):
    start: NonNegativeInt = 0


class StatefulSetSpec(KubeModel):
    replicas: NonNegativeInt = 1
    selector: LabelSelector
    template: PodTemplateSpec
    service_name: str | None = None
    volume_claim_templates: list[PersistentVolumeClaimTemplate] = Field(default_factory=list)
    pod_management_policy: Literal["OrderedReady", "Parallel"] = "OrderedReady"
    update_strategy: StatefulSetUpdateStrategy = Field(default_factory=StatefulSetUpdateStrategy)
    persistent_volume_claim_retention_policy: StatefulSetPersistentVolumeClaimRetentionPolicy = (
        Field(default_factory=StatefulSetPersistentVolumeClaimRetentionPolicy)
    )
    min_ready_seconds: NonNegativeInt = 0
    revision_history_limit: NonNegativeInt = 10
    ordinals: StatefulSetOrdinals | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _claims_are_volumes(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        # The template mounts its claim templates by name without declaring them as volumes.
        names: set[str] = set()
        if isinstance(data, dict):
            for claim in data.get("volumeClaimTemplates") or []:
                meta = claim.get("metadata") if isinstance(claim, dict) else None
                if isinstance(meta, dict) and isinstance(meta.get("name"), str):
                    names.add(meta["name"])
        token = TEMPLATE_CLAIM_VOLUMES.set(frozenset(names))
        try:
            return handler(data)
        finally:
            TEMPLATE_CLAIM_VOLUMES.reset(token)

    @model_validator(mode="after")
    def _check(self) -> StatefulSetSpec:
        problems = Problems("StatefulSetSpec")
        _check_selector(problems, self.selector, self.template)
        if self.template.spec.restart_policy != "Always":
            problems.add(
                ("template", "spec", "restartPolicy"),
                "restart_policy",
                "must be Always in a StatefulSet",
                self.template.spec.restart_policy,
            )
        # A template volume named like a claim template is replaced by the claim in each pod,
        # as Kubernetes does.
        for index, claim in enumerate(self.volume_claim_templates):
            if not claim.metadata.name:
                problems.add(
                    ("volumeClaimTemplates", index, "metadata", "name"), "missing", "Field required"
                )
        problems.raise_if_any()
        return self

    @property
    def first_ordinal(self) -> int:
        return self.ordinals.start if self.ordinals is not None else 0

    @property
    def partition(self) -> int:
        rolling = self.update_strategy.rolling_update
        return rolling.partition if rolling is not None else 0


class StatefulSetStatus(KubeModel):
    observed_generation: int | None = None
    replicas: NonNegativeInt = 0
    ready_replicas: NonNegativeInt = 0
    current_replicas: NonNegativeInt = 0
    updated_replicas: NonNegativeInt = 0
    available_replicas: NonNegativeInt = 0
    current_revision: str | None = None
    update_revision: str | None = None
    collision_count: NonNegativeInt | None = None
    conditions: list[Condition] = Field(default_factory=list)


class StatefulSet(KubeObject):
    NAMESPACED: ClassVar[bool] = True

    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["StatefulSet"] = "StatefulSet"
    spec: StatefulSetSpec
    status: StatefulSetStatus | None = None
