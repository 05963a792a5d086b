"""What to say about an unknown field: a Kubernetes field Capstan leaves out, or a typo.

Called by ``load._message`` for pydantic's ``extra_forbidden`` errors. Capstan's models are
strict (an unknown field is an error, never silently dropped), and most unknown
fields a Kubernetes user writes are real Kubernetes fields Capstan does not implement
(``affinity``, ``dnsPolicy``, ``imagePullSecrets``): "unknown field" alone reads as a typo and
sends them looking for one. So the message says which of the two it is: for a Kubernetes
field, what it does on Capstan or what to write instead (``FIELD_ADVICE``), never "remove it"
when leaving it out would change what runs; for a typo, the closest field the model has.
Every field Capstan reads is printed by ``capstan schema KIND``.

The lists are the fields of the Kubernetes v1.31 API objects Capstan models, by the name of
Capstan's model class; a model missing here just gets the typo check.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

_OBJECT = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})

KUBERNETES_FIELDS: Mapping[str, frozenset[str]] = {
    "ObjectMeta": frozenset(
        {
            "name",
            "generateName",
            "namespace",
            "selfLink",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "labels",
            "annotations",
            "ownerReferences",
            "finalizers",
            "managedFields",
        }
    ),
    "Deployment": _OBJECT,
    "ReplicaSet": _OBJECT,
    "Service": _OBJECT,
    "Pod": _OBJECT,
    "Namespace": _OBJECT,
    "ConfigMap": frozenset({"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"}),
    "Secret": frozenset(
        {
            "apiVersion",
            "kind",
            "metadata",
            "data",
            "stringData",
            "type",
            "immutable",
        }
    ),
    "ServiceAccount": frozenset(
        {
            "apiVersion",
            "kind",
            "metadata",
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        }
    ),
    "DeploymentSpec": frozenset(
        {
            "replicas",
            "selector",
            "template",
            "strategy",
            "minReadySeconds",
            "revisionHistoryLimit",
            "paused",
            "progressDeadlineSeconds",
        }
    ),
    "DeploymentStrategy": frozenset({"type", "rollingUpdate"}),
    "RollingUpdateDeployment": frozenset({"maxUnavailable", "maxSurge"}),
    "PodTemplateSpec": frozenset({"metadata", "spec"}),
    "PodSpec": frozenset(
        {
            "volumes",
            "initContainers",
            "containers",
            "ephemeralContainers",
            "restartPolicy",
            "terminationGracePeriodSeconds",
            "activeDeadlineSeconds",
            "dnsPolicy",
            "nodeSelector",
            "serviceAccountName",
            "serviceAccount",
            "automountServiceAccountToken",
            "nodeName",
            "hostNetwork",
            "hostPID",
            "hostIPC",
            "shareProcessNamespace",
            "securityContext",
            "imagePullSecrets",
            "hostname",
            "subdomain",
            "affinity",
            "schedulerName",
            "tolerations",
            "hostAliases",
            "priorityClassName",
            "priority",
            "dnsConfig",
            "readinessGates",
            "runtimeClassName",
            "enableServiceLinks",
            "preemptionPolicy",
            "overhead",
            "topologySpreadConstraints",
            "setHostnameAsFQDN",
            "os",
            "hostUsers",
            "schedulingGates",
            "resourceClaims",
            "resources",
        }
    ),
    "Container": frozenset(
        {
            "name",
            "image",
            "command",
            "args",
            "workingDir",
            "ports",
            "envFrom",
            "env",
            "resources",
            "resizePolicy",
            "restartPolicy",
            "volumeMounts",
            "volumeDevices",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "lifecycle",
            "terminationMessagePath",
            "terminationMessagePolicy",
            "imagePullPolicy",
            "securityContext",
            "stdin",
            "stdinOnce",
            "tty",
        }
    ),
    "ContainerPort": frozenset({"name", "hostPort", "containerPort", "protocol", "hostIP"}),
    "EnvVar": frozenset({"name", "value", "valueFrom"}),
    "EnvVarSource": frozenset({"fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef"}),
    "ResourceRequirements": frozenset({"limits", "requests", "claims"}),
    "Probe": frozenset(
        {
            "exec",
            "httpGet",
            "tcpSocket",
            "grpc",
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
            "terminationGracePeriodSeconds",
        }
    ),
    "SecurityContext": frozenset(
        {
            "capabilities",
            "privileged",
            "seLinuxOptions",
            "windowsOptions",
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "readOnlyRootFilesystem",
            "allowPrivilegeEscalation",
            "procMount",
            "seccompProfile",
            "appArmorProfile",
        }
    ),
    "PodSecurityContext": frozenset(
        {
            "seLinuxOptions",
            "windowsOptions",
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "supplementalGroups",
            "supplementalGroupsPolicy",
            "fsGroup",
            "sysctls",
            "fsGroupChangePolicy",
            "seccompProfile",
            "appArmorProfile",
            "seLinuxChangePolicy",
        }
    ),
    "Volume": frozenset(
        {
            "name",
            "hostPath",
            "emptyDir",
            "gcePersistentDisk",
            "awsElasticBlockStore",
            "gitRepo",
            "secret",
            "nfs",
            "iscsi",
            "glusterfs",
            "persistentVolumeClaim",
            "rbd",
            "flexVolume",
            "cinder",
            "cephfs",
            "flocker",
            "downwardAPI",
            "fc",
            "azureFile",
            "configMap",
            "vsphereVolume",
            "quobyte",
            "azureDisk",
            "photonPersistentDisk",
            "projected",
            "portworxVolume",
            "scaleIO",
            "storageos",
            "csi",
            "ephemeral",
            "image",
        }
    ),
    "VolumeMount": frozenset(
        {
            "name",
            "readOnly",
            "recursiveReadOnly",
            "mountPath",
            "subPath",
            "mountPropagation",
            "subPathExpr",
        }
    ),
    "ServiceSpec": frozenset(
        {
            "ports",
            "selector",
            "clusterIP",
            "clusterIPs",
            "type",
            "externalIPs",
            "sessionAffinity",
            "loadBalancerIP",
            "loadBalancerSourceRanges",
            "externalName",
            "externalTrafficPolicy",
            "healthCheckNodePort",
            "publishNotReadyAddresses",
            "sessionAffinityConfig",
            "ipFamilies",
            "ipFamilyPolicy",
            "allocateLoadBalancerNodePorts",
            "loadBalancerClass",
            "internalTrafficPolicy",
            "trafficDistribution",
        }
    ),
    "ServicePort": frozenset({"name", "protocol", "appProtocol", "port", "targetPort", "nodePort"}),
}


# What to write instead of (or what to know about) a Kubernetes field Capstan does not read,
# by model name and field. Advice to leave a field out is given only where that changes
# nothing that runs.
FIELD_ADVICE: Mapping[tuple[str, str], str] = {
    ("ObjectMeta", "managedFields"): (
        "the API server writes it (it comes from `kubectl get -o yaml`); leaving it out "
        "changes nothing"
    ),
    ("ObjectMeta", "selfLink"): (
        "the API server writes it (it comes from `kubectl get -o yaml`); leaving it out "
        "changes nothing"
    ),
    ("ServiceAccount", "secrets"): (
        "token Secrets are not kept in ServiceAccounts on Capstan; Capstan mounts each pod's "
        "token itself"
    ),
    ("PodSpec", "hostPID"): (
        "Capstan runs every pod in its own process namespace and cannot share the host's; "
        "to share processes between the pod's containers use shareProcessNamespace: true"
    ),
    ("PodSpec", "hostIPC"): "Capstan cannot share the host's IPC namespace with a pod",
    ("PodSpec", "runtimeClassName"): (
        "Capstan runs every container with the node's default Docker runtime"
    ),
    ("PodSpec", "schedulerName"): (
        "Capstan has one scheduler; steer placement with nodeSelector, affinity or tolerations"
    ),
    ("Volume", "hostPath"): (
        "Capstan does not mount node directories into pods; use emptyDir for scratch space, "
        "or a configMap or secret volume for files"
    ),
    **{
        ("Volume", source): (
            "a network or cloud disk Capstan cannot attach to a Docker host; keep data in an "
            "emptyDir (scratch) or outside the cluster"
        )
        for source in (
            "awsElasticBlockStore",
            "azureDisk",
            "azureFile",
            "cephfs",
            "cinder",
            "csi",
            "fc",
            "flexVolume",
            "flocker",
            "gcePersistentDisk",
            "glusterfs",
            "iscsi",
            "nfs",
            "photonPersistentDisk",
            "portworxVolume",
            "quobyte",
            "rbd",
            "scaleIO",
            "storageos",
            "vsphereVolume",
        )
    },
    ("EnvVarSource", "resourceFieldRef"): (
        "write the value (the container's resources) as env[].value instead"
    ),
    ("VolumeMount", "subPathExpr"): "use subPath with a fixed path instead",
}


def unknown_field_message(root: type[BaseModel], loc: Sequence[str | int]) -> str:
    """The message for an unknown field at ``loc`` (its last part) in an object of ``root``."""
    field = loc[-1] if loc else None
    parent = model_at(root, loc[:-1])
    if not isinstance(field, str) or parent is None:
        return "unknown field"
    if field in KUBERNETES_FIELDS.get(parent.__name__, frozenset()):
        kind = _kind_name(root)
        advice = FIELD_ADVICE.get((parent.__name__, field))
        reason = f": {advice}" if advice else ""
        return (
            f"not supported by Capstan: a Kubernetes field it does not implement{reason} "
            f"(`capstan schema {kind}` prints every field Capstan reads)"
        )
    known = [info.alias or name for name, info in parent.model_fields.items()]
    close = difflib.get_close_matches(field, known, n=1, cutoff=0.75)
    if close:
        return f"unknown field (did you mean {close[0]!r}?)"
    return "unknown field"


def _kind_name(root: type[BaseModel]) -> str:
    kind = root.model_fields.get("kind")
    default = kind.default if kind is not None else None
    return default if isinstance(default, str) else root.__name__


def model_at(root: type[BaseModel], path: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class of the value at ``path`` (aliases and list/dict indexes) in ``root``."""
    current: Any = root
    for part in path:
        if isinstance(part, int) or not _is_model(current):
            current = _item_type(current)
        else:
            current = _field_type(current, part)
        if current is None:
            return None
    current = _strip_optional(current)
    return current if _is_model(current) else None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _field_type(model: type[BaseModel], alias: str) -> Any:
    for name, info in model.model_fields.items():
        if (info.alias or name) == alias:
            return _strip_optional(info.annotation)
    return None


def _item_type(annotation: Any) -> Any:
    """The element type of a list/tuple/dict annotation (a dict key in ``loc`` is a string)."""
    args = typing.get_args(_strip_optional(annotation))
    if not args:
        return None
    return _strip_optional(args[-1])


def _strip_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _strip_optional(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _strip_optional(members[0])
    return annotation
