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


# Where Capstan's storage comes from, for every volume plugin below that asks for another.
_USE_CLAIM = (
    "use a persistentVolumeClaim (Capstan keeps it in a Docker volume on the node it is bound "
    "to), or an emptyDir for scratch space"
)

#: In-tree volume plugins Kubernetes itself has removed: plugin -> (what it mounted, the
#: Kubernetes version that deprecated it, the version from which it no longer works, the CSI
#: driver that now serves it or ""). From Kubernetes' docs (concepts/storage/volumes) and its
#: API server's own warnings (pkg/api/pod/warnings.go). Kubernetes still accepts such a pod
#: but cannot mount the volume, so the pod never starts.
REMOVED_VOLUME_PLUGINS: Mapping[str, tuple[str, str, str, str]] = {
    "awsElasticBlockStore": ("an AWS EBS disk", "1.19", "1.27", "ebs.csi.aws.com"),
    "azureDisk": ("an Azure Disk", "1.19", "1.27", "disk.csi.azure.com"),
    "azureFile": ("an Azure Files share", "1.21", "1.30", "file.csi.azure.com"),
    "cephfs": ("a CephFS file system", "1.28", "1.31", ""),
    "cinder": ("an OpenStack Cinder disk", "1.11", "1.26", "cinder.csi.openstack.org"),
    "flocker": ("a Flocker dataset", "1.22", "1.25", ""),
    "gcePersistentDisk": ("a GCE persistent disk", "1.17", "1.28", "pd.csi.storage.gke.io"),
    "glusterfs": ("a GlusterFS volume", "1.25", "1.26", ""),
    "photonPersistentDisk": ("a VMware Photon disk", "1.11", "1.16", ""),
    "quobyte": ("a Quobyte volume", "1.22", "1.25", ""),
    "rbd": ("a Ceph RBD block device", "1.28", "1.31", ""),
    "scaleIO": ("a Dell EMC ScaleIO volume", "1.16", "1.22", ""),
    "storageos": ("a StorageOS volume", "1.22", "1.25", ""),
    "vsphereVolume": ("a vSphere VMDK disk", "1.19", "1.30", "csi.vsphere.vmware.com"),
}


#: The in-tree plugins Kubernetes no longer serves itself: the removed ones, and Portworx,
#: whose every operation Kubernetes hands to its CSI driver since v1.33 (CSIMigrationPortworx).
NOT_SERVED_IN_TREE: frozenset[str] = frozenset(REMOVED_VOLUME_PLUGINS) | {"portworxVolume"}


def _removed_advice(plugin: str) -> str:
    what, deprecated, removed, driver = REMOVED_VOLUME_PLUGINS[plugin]
    if driver:
        now = (
            f"Kubernetes removed its in-tree driver in v{removed} (deprecated in "
            f"v{deprecated}) and hands such volumes to the {driver} CSI driver, which "
            "only the cloud's own nodes can run"
        )
    else:
        now = (
            f"Kubernetes removed this plugin in v{removed} (deprecated in v{deprecated}) and "
            "can no longer mount it either"
        )
    return f"mounts {what} into the pod; {now}; {_USE_CLAIM}"


#: What each volume plugin Capstan does not serve is, and what to use instead.
VOLUME_PLUGIN_ADVICE: Mapping[str, str] = {
    **{plugin: _removed_advice(plugin) for plugin in REMOVED_VOLUME_PLUGINS},
    "portworxVolume": (
        "mounts a Portworx volume; deprecated in Kubernetes v1.25, and since v1.33 Kubernetes "
        "hands it to the Portworx CSI driver (pxd.portworx.com), which must run on every node; "
        f"{_USE_CLAIM}"
    ),
    "nfs": (
        "mounts an NFS export on the node; Capstan's agent mounts no network file system; "
        f"{_USE_CLAIM}"
    ),
    "iscsi": (
        "attaches an iSCSI disk to the node; Capstan's agent attaches no block devices; "
        f"{_USE_CLAIM}"
    ),
    "fc": (
        "attaches a Fibre Channel disk to the node; Capstan's agent attaches no block "
        f"devices; {_USE_CLAIM}"
    ),
    "flexVolume": (
        "runs a vendor driver binary installed on every node (an interface Kubernetes "
        f"deprecated in v1.23 for CSI); Capstan runs no volume drivers; {_USE_CLAIM}"
    ),
    "csi": f"an inline CSI volume needs a CSI driver on the node; Capstan runs none; {_USE_CLAIM}",
    "gitRepo": (
        "deprecated in Kubernetes v1.11 and disabled by default; as Kubernetes advises, clone "
        "the repository into an emptyDir from a container of the pod, or build the files into "
        "the image"
    ),
    "image": (
        "mounts the files of an OCI image; copy them into the container's own image, or into "
        "an emptyDir from a container of the pod"
    ),
}


_DRA_ADVICE = (
    "a Dynamic Resource Allocation claim (a GPU or other device) is prepared by a DRA "
    "driver running beside the kubelet, and Capstan's agent runs no DRA drivers on its "
    "Docker hosts, so nothing could satisfy it; for an NVIDIA GPU, configure the node's "
    "Docker with the NVIDIA container runtime as its default and run the pod on that node "
    "(nodeSelector)"
)


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
    ("PodSpec", "runtimeClassName"): (
        "Capstan runs every container with the node's default Docker runtime"
    ),
    ("PodSpec", "schedulerName"): (
        "Capstan has one scheduler; steer placement with nodeSelector, affinity or tolerations"
    ),
    **{("Volume", plugin): advice for plugin, advice in VOLUME_PLUGIN_ADVICE.items()},
    ("EnvVarSource", "resourceFieldRef"): (
        "write the value (the container's resources) as env[].value instead"
    ),
    ("VolumeMount", "subPathExpr"): "use subPath with a fixed path instead",
    # Dynamic Resource Allocation: a claim is satisfied by a DRA driver (a kubelet plugin that
    # publishes ResourceSlices and prepares devices over gRPC); Docker hosts run none.
    ("ResourceRequirements", "claims"): _DRA_ADVICE,
    ("PodSpec", "resourceClaims"): _DRA_ADVICE,
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
