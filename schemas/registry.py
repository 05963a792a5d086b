"""Which kinds Capstan supports, and turning a parsed YAML/JSON document into a typed object.

Called by the source loader for every document of a commit, by the API server for every
request body and store read, and by the agent for objects on the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.apps import DaemonSet, Deployment, ReplicaSet, StatefulSet
from schemas.batch import CronJob, Job
from schemas.core import ConfigMap, Namespace, Secret, Service, ServiceAccount
from schemas.meta import KubeObject
from schemas.networking import Ingress, IngressClass
from schemas.node import Node
from schemas.pod import Pod
from schemas.policy import (
    HorizontalPodAutoscaler,
    NetworkPolicy,
    PodDisruptionBudget,
    hpa_v2_from_v1,
)
from schemas.rbac import ClusterRole, ClusterRoleBinding, Role, RoleBinding
from schemas.scheduling import PriorityClass
from schemas.storage import PersistentVolumeClaim

__all__ = [
    "SUPPORTED_KINDS",
    "UnsupportedKindError",
    "model_for",
    "parse_object",
    "resource_plural",
]

_MODELS: Final[dict[tuple[str, str], type[KubeObject]]] = {
    ("v1", "Namespace"): Namespace,
    ("v1", "Node"): Node,
    ("v1", "Pod"): Pod,
    ("v1", "Service"): Service,
    ("v1", "ServiceAccount"): ServiceAccount,
    ("v1", "ConfigMap"): ConfigMap,
    ("v1", "Secret"): Secret,
    ("apps/v1", "Deployment"): Deployment,
    ("apps/v1", "ReplicaSet"): ReplicaSet,
    ("apps/v1", "DaemonSet"): DaemonSet,
    ("apps/v1", "StatefulSet"): StatefulSet,
    ("v1", "PersistentVolumeClaim"): PersistentVolumeClaim,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): HorizontalPodAutoscaler,
    ("policy/v1", "PodDisruptionBudget"): PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): NetworkPolicy,
    ("networking.k8s.io/v1", "Ingress"): Ingress,
    ("networking.k8s.io/v1", "IngressClass"): IngressClass,
    ("batch/v1", "Job"): Job,
    ("batch/v1", "CronJob"): CronJob,
    ("rbac.authorization.k8s.io/v1", "Role"): Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): RoleBinding,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ClusterRoleBinding,
    ("scheduling.k8s.io/v1", "PriorityClass"): PriorityClass,
}

SUPPORTED_KINDS: Final[tuple[tuple[str, str], ...]] = tuple(_MODELS)

# Older apiVersions Kubernetes still serves, read as the version Capstan models (Kubernetes
# converts between them the same way).
_CONVERSIONS: Final[
    dict[tuple[str, str], tuple[str, Callable[[Mapping[str, Any]], dict[str, Any]]]]
] = {
    ("autoscaling/v1", "HorizontalPodAutoscaler"): ("autoscaling/v2", hpa_v2_from_v1),
}

# Kinds refused with a pointer to what to write instead (matched on kind, any apiVersion).
_REPLACEMENTS: Final[dict[str, str]] = {
    "ReplicationController": (
        "ReplicationController is the legacy form of ReplicaSet and is not supported; write an "
        "apps/v1 Deployment (or ReplicaSet) with the same template and "
        "selector: {matchLabels: <the selector's labels>}"
    ),
}


class UnsupportedKindError(ValueError):
    """A document of a kind (or apiVersion) Capstan does not know; lists the ones it does."""

    def __init__(self, api_version: str, kind: str) -> None:
        self.api_version = api_version
        self.kind = kind
        supported = ", ".join(f"{v}/{k}" for v, k in SUPPORTED_KINDS)
        replacement = _REPLACEMENTS.get(kind)
        #: What to write instead, for a kind Capstan refuses on purpose; None otherwise.
        self.replacement = replacement
        super().__init__(
            f"unsupported kind {kind!r} of apiVersion {api_version!r}; "
            + (replacement if replacement else f"supported: {supported}")
        )


def resource_plural(kind: str) -> str:
    """The REST resource name of a kind, as Kubernetes spells it: ``pods``,
    ``networkpolicies``, ``priorityclasses``, ``ingresses``."""
    lowered = kind.lower()
    if lowered == "endpoints":
        return lowered
    if lowered.endswith("s"):
        return lowered + "es"
    if lowered.endswith("y") and lowered[-2:-1] not in ("a", "e", "i", "o", "u"):
        return lowered[:-1] + "ies"
    return lowered + "s"


def model_for(api_version: str, kind: str) -> type[KubeObject]:
    """The model class of ``(apiVersion, kind)``; raise :class:`UnsupportedKindError`."""
    converted = _CONVERSIONS.get((api_version, kind))
    model = _MODELS.get((converted[0] if converted else api_version, kind))
    if model is None:
        raise UnsupportedKindError(api_version, kind)
    return model


def _type_field(doc: Mapping[str, Any], field: str) -> str:
    if field not in doc:
        raise ValidationError.from_exception_data(
            "KubeObject", [InitErrorDetails(type="missing", loc=(field,), input=dict(doc))]
        )
    value = doc[field]
    if not isinstance(value, str):
        raise ValidationError.from_exception_data(
            "KubeObject", [InitErrorDetails(type="string_type", loc=(field,), input=value)]
        )
    return value


def parse_object(doc: Mapping[str, Any]) -> KubeObject:
    """Validate one document (a YAML/JSON mapping) as the kind it names.

    Raises :class:`UnsupportedKindError` for unknown kinds and ``pydantic.ValidationError``
    (locs are Kubernetes field paths) for everything else. Does not default the namespace.
    """
    if not isinstance(doc, Mapping):
        raise ValidationError.from_exception_data(
            "KubeObject",
            [
                InitErrorDetails(
                    type=PydanticCustomError("object_type", "a manifest must be a mapping"),
                    loc=(),
                    input=doc,
                )
            ],
        )
    api_version = _type_field(doc, "apiVersion")
    kind = _type_field(doc, "kind")
    converted = _CONVERSIONS.get((api_version, kind))
    if converted is not None:
        doc = converted[1](doc)
        api_version = converted[0]
    # by_name=False: Python code may build models by their snake_case names, but a manifest
    # that says `container_port:` has an unknown field, as it would in Kubernetes.
    return model_for(api_version, kind).model_validate(
        doc if isinstance(doc, dict) else dict(doc), by_name=False
    )
