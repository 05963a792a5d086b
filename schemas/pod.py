"""v1 Pod: the pod spec (containers, volumes, scheduling), its template, and its status.

The pod spec is what flows furthest: from a Deployment's template through the ReplicaSet
controller and the scheduler to the agent on a node, which runs it and answers with a
:class:`PodStatus`. Defaults are Kubernetes' own (restartPolicy Always, grace period 30 s,
hostNetwork false). Containers live in ``schemas.container``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from schemas._validation import (
    ConfigKey,
    DNSLabel,
    DNSSubdomain,
    HostPath,
    LocalDescendingPath,
    NonNegativeInt,
    PortNumber,
    Problems,
    QualifiedName,
    rule_error,
)

# Containers moved to schemas.container; re-exported here so `from schemas.pod import
# Container` keeps working.
from schemas.container import (
    Capabilities,
    ConfigMapEnvSource,
    ConfigMapKeySelector,
    Container,
    ContainerPort,
    EnvFromSource,
    EnvVar,
    EnvVarSource,
    ExecAction,
    GRPCAction,
    HTTPGetAction,
    HTTPHeader,
    ImagePullPolicy,
    Lifecycle,
    LifecycleHandler,
    MountPropagation,
    ObjectFieldSelector,
    Probe,
    Protocol,
    ResourceRequirements,
    SeccompProfile,
    SecretEnvSource,
    SecretKeySelector,
    SecurityContext,
    SleepAction,
    TCPSocketAction,
    VolumeMount,
    default_image_pull_policy,
)
from schemas.core import LocalObjectReference
from schemas.meta import Condition, KubeModel, KubeObject, ObjectMeta, Timestamp
from schemas.quantity import Quantity
from schemas.scheduling import Affinity, TopologySpreadConstraint
from schemas.storage import PersistentVolumeClaimSpec

DEFAULT_SCHEDULER = "default-scheduler"

__all__ = [
    "DEFAULT_SCHEDULER",
    "TEMPLATE_CLAIM_VOLUMES",
    "Capabilities",
    "ConfigMapEnvSource",
    "ConfigMapKeySelector",
    "ConfigMapProjection",
    "ConfigMapVolumeSource",
    "Container",
    "ContainerPort",
    "ContainerState",
    "ContainerStateRunning",
    "ContainerStateTerminated",
    "ContainerStateWaiting",
    "ContainerStatus",
    "DownwardAPIProjection",
    "DownwardAPIVolumeFile",
    "EmptyDirVolumeSource",
    "EnvFromSource",
    "EnvVar",
    "EnvVarSource",
    "EphemeralVolumeClaimTemplate",
    "EphemeralVolumeSource",
    "ExecAction",
    "GRPCAction",
    "HTTPGetAction",
    "HTTPHeader",
    "HostAlias",
    "HostPathType",
    "HostPathVolumeSource",
    "HostPortMapping",
    "ImagePullPolicy",
    "KeyToPath",
    "Lifecycle",
    "LifecycleHandler",
    "MountPropagation",
    "ObjectFieldSelector",
    "PersistentVolumeClaimVolumeSource",
    "Pod",
    "PodDNSConfig",
    "PodDNSConfigOption",
    "PodSecurityContext",
    "PodSpec",
    "PodStatus",
    "PodTemplateSpec",
    "Probe",
    "ProjectedVolumeSource",
    "Protocol",
    "ResourceRequirements",
    "SeccompProfile",
    "SecretEnvSource",
    "SecretKeySelector",
    "SecretProjection",
    "SecretVolumeSource",
    "SecurityContext",
    "ServiceAccountTokenProjection",
    "SleepAction",
    "TCPSocketAction",
    "Toleration",
    "Volume",
    "VolumeMount",
    "VolumeProjection",
    "default_image_pull_policy",
]


# --- volumes -------------------------------------------------------------------------------


class KeyToPath(KubeModel):
    key: ConfigKey
    path: LocalDescendingPath = Field(min_length=1)
    mode: int | None = Field(default=None, ge=0, le=0o777)

    @model_validator(mode="after")
    def _not_dot_dot(self) -> KeyToPath:
        if self.path.startswith(".."):
            problems = Problems("KeyToPath")
            problems.add(("path",), "relative_path", "must not start with '..'", self.path)
            problems.raise_if_any()
        return self


class EmptyDirVolumeSource(KubeModel):
    medium: Literal["", "Memory"] | None = None
    size_limit: Quantity | None = None


class ConfigMapVolumeSource(KubeModel):
    name: DNSSubdomain
    items: list[KeyToPath] = Field(default_factory=list)
    default_mode: int | None = Field(default=None, ge=0, le=0o777)
    optional: bool | None = None


class SecretVolumeSource(KubeModel):
    secret_name: DNSSubdomain
    items: list[KeyToPath] = Field(default_factory=list)
    default_mode: int | None = Field(default=None, ge=0, le=0o777)
    optional: bool | None = None


#: Volume names a pod template may mount without declaring them: a StatefulSet's
#: ``volumeClaimTemplates``, set while the StatefulSet validates its template.
TEMPLATE_CLAIM_VOLUMES: ContextVar[frozenset[str]] = ContextVar(
    "TEMPLATE_CLAIM_VOLUMES", default=frozenset()
)


class PersistentVolumeClaimVolumeSource(KubeModel):
    """A PersistentVolumeClaim of the pod's namespace: a Docker named volume on the node the
    claim is bound to (the scheduler keeps the pod there)."""

    claim_name: DNSSubdomain
    read_only: bool = False


class ConfigMapProjection(KubeModel):
    name: DNSSubdomain
    items: list[KeyToPath] = Field(default_factory=list)
    optional: bool | None = None


class SecretProjection(KubeModel):
    name: DNSSubdomain
    items: list[KeyToPath] = Field(default_factory=list)
    optional: bool | None = None


class DownwardAPIVolumeFile(KubeModel):
    """A file holding a field of the pod (``metadata.name``, ``metadata.labels``, ...)."""

    path: LocalDescendingPath = Field(min_length=1)
    field_ref: ObjectFieldSelector
    mode: int | None = Field(default=None, ge=0, le=0o777)


class DownwardAPIProjection(KubeModel):
    items: list[DownwardAPIVolumeFile] = Field(default_factory=list)


class ServiceAccountTokenProjection(KubeModel):
    """Accepted; the agent writes no token file (Capstan issues no projected tokens)."""

    path: LocalDescendingPath = Field(min_length=1)
    audience: str | None = None
    expiration_seconds: int | None = Field(default=None, ge=600)


class VolumeProjection(KubeModel):
    config_map: ConfigMapProjection | None = None
    secret: SecretProjection | None = None
    downward_api: DownwardAPIProjection | None = Field(default=None, alias="downwardAPI")
    service_account_token: ServiceAccountTokenProjection | None = None

    @model_validator(mode="after")
    def _one_source(self) -> VolumeProjection:
        sources = (self.config_map, self.secret, self.downward_api, self.service_account_token)
        if sum(s is not None for s in sources) != 1:
            raise rule_error(
                "one_of",
                "exactly one of configMap, secret, downwardAPI or serviceAccountToken "
                "must be given",
            )
        return self


class ProjectedVolumeSource(KubeModel):
    """Several sources written into one directory (read-only in the containers)."""

    sources: list[VolumeProjection] = Field(default_factory=list)
    default_mode: int | None = Field(default=None, ge=0, le=0o777)


#: What must be at a ``hostPath`` volume's path before the pod starts; "" checks nothing.
HostPathType = Literal[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
]


class HostPathVolumeSource(KubeModel):
    """A file or directory of the node, bind-mounted into the containers. Only a namespace at
    the ``privileged`` Pod Security level may use one (``schemas.podsecurity``), and only on a
    node whose agent allows that level; the agent checks or creates the path as ``type`` says
    (``agent.kubelet.volumes``) before the container starts."""

    path: HostPath
    type: HostPathType | None = None


class EphemeralVolumeClaimTemplate(KubeModel):
    """The claim a generic ephemeral volume makes for its pod. Kubernetes names it
    ``<pod>-<volume>``; on Capstan it is the Docker named volume the agent creates for the
    pod's UID and removes with the pod (``agent.kubelet.podspec.ephemeral_volume_name``).
    ``storageClassName`` and the storage request are kept as written: Docker volumes have no
    classes and no size limit."""

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PersistentVolumeClaimSpec

    @model_validator(mode="after")
    def _check(self) -> EphemeralVolumeClaimTemplate:
        # As Kubernetes' ValidatePersistentVolumeClaimSpec: an access mode and a storage
        # request are required.
        problems = Problems("EphemeralVolumeClaimTemplate")
        if not self.spec.access_modes:
            problems.add(
                ("spec", "accessModes"), "missing", "at least 1 access mode is required", []
            )
        if "storage" not in self.spec.resources.requests:
            problems.add(
                ("spec", "resources", "requests", "storage"),
                "missing",
                "field required (the size the claim asks for)",
            )
        problems.raise_if_any()
        return self


class EphemeralVolumeSource(KubeModel):
    """A volume that lives exactly as long as its pod, made from a claim template: a Docker
    named volume of the pod on its node, kept across container restarts, removed with the
    pod. Unlike an emptyDir it is Docker's storage, not a directory under the agent's state."""

    volume_claim_template: EphemeralVolumeClaimTemplate


class Volume(KubeModel):
    """A pod volume: exactly one of ``emptyDir``, ``configMap``, ``secret``, ``projected``,
    ``persistentVolumeClaim``, ``ephemeral``, ``hostPath``."""

    name: DNSLabel
    empty_dir: EmptyDirVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    projected: ProjectedVolumeSource | None = None
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None
    ephemeral: EphemeralVolumeSource | None = None
    host_path: HostPathVolumeSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        sources = (
            self.empty_dir,
            self.config_map,
            self.secret,
            self.projected,
            self.persistent_volume_claim,
            self.ephemeral,
            self.host_path,
        )
        if sum(s is not None for s in sources) != 1:
            raise rule_error(
                "one_of",
                "exactly one of emptyDir, configMap, secret, projected, persistentVolumeClaim, "
                "ephemeral or hostPath must be given",
            )
        return self


class PodSecurityContext(KubeModel):
    """Pod-wide defaults for every container's security context (a container's own value
    wins). ``fsGroup`` is added to every container's groups and owns the pod's volumes."""

    run_as_user: NonNegativeInt | None = None
    run_as_group: NonNegativeInt | None = None
    run_as_non_root: bool | None = None
    fs_group: NonNegativeInt | None = None
    # The agent gives every volume to fsGroup when the pod starts, which is what both ask.
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = None
    seccomp_profile: SeccompProfile | None = None


# --- pod spec ------------------------------------------------------------------------------


class Toleration(KubeModel):
    key: QualifiedName | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None

    @model_validator(mode="after")
    def _check(self) -> Toleration:
        problems = Problems("Toleration")
        if self.operator == "Exists" and self.value:
            problems.add(
                ("value",), "toleration_value", "must be empty when operator is Exists", self.value
            )
        if self.key is None and self.operator != "Exists":
            problems.add(
                ("operator",),
                "toleration_operator",
                "must be Exists when key is empty",
                self.operator,
            )
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            problems.add(
                ("tolerationSeconds",),
                "toleration_seconds",
                "may only be given with effect NoExecute",
                self.toleration_seconds,
            )
        problems.raise_if_any()
        return self

    def tolerates(self, *, key: str, value: str | None, effect: str) -> bool:
        """Whether this toleration tolerates a taint with that key, value and effect."""
        if self.effect is not None and self.effect != effect:
            return False
        if self.key is None:
            return True
        if self.key != key:
            return False
        return self.operator == "Exists" or (self.value or "") == (value or "")


class HostAlias(KubeModel):
    """Extra lines of the pod's hosts file (Docker's ``--add-host``)."""

    ip: str = Field(min_length=1)
    hostnames: list[str] = Field(default_factory=list)


class PodDNSConfigOption(KubeModel):
    name: str = Field(min_length=1)
    value: str | None = None


class PodDNSConfig(KubeModel):
    """Docker's ``--dns``, ``--dns-search`` and ``--dns-option`` for the pod."""

    nameservers: list[str] = Field(default_factory=list)
    searches: list[str] = Field(default_factory=list)
    options: list[PodDNSConfigOption] = Field(default_factory=list)


class PodSpec(KubeModel):
    containers: list[Container] = Field(min_length=1)
    init_containers: list[Container] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)
    restart_policy: Literal["Always", "OnFailure", "Never"] = "Always"
    termination_grace_period_seconds: NonNegativeInt = 30
    node_selector: dict[QualifiedName, str] = Field(default_factory=dict)
    node_name: DNSSubdomain | None = None
    service_account_name: DNSSubdomain | None = None
    host_network: bool = False
    # The node's process and IPC namespaces (Docker's --pid=host, --ipc=host); like
    # hostNetwork, only at the privileged Pod Security level (schemas.podsecurity). None when
    # unset, so a pod that does not use them goes to an agent of an older release unchanged.
    host_pid: bool | None = Field(default=None, alias="hostPID")
    host_ipc: bool | None = Field(default=None, alias="hostIPC")
    tolerations: list[Toleration] = Field(default_factory=list)
    security_context: PodSecurityContext | None = None
    hostname: DNSLabel | None = None
    # With hostname, and a headless Service of this name in the pod's namespace selecting the
    # pod: the pod is reachable as <hostname>.<subdomain>.<namespace> (docs/services.md).
    subdomain: DNSLabel | None = None
    # The deprecated alias of serviceAccountName; it fills serviceAccountName when unset.
    service_account: DNSSubdomain | None = None
    # Capstan mounts no service account token, so false is what it does anyway.
    automount_service_account_token: bool | None = None
    # false: no <SERVICE>_SERVICE_HOST/_PORT variables in the containers.
    enable_service_links: bool | None = None
    # true: the containers share one process namespace (Docker's --pid=container:).
    share_process_namespace: bool | None = None
    # Capstan resolves Service names through the hosts file, so every policy but None reads
    # the node's resolv.conf; None uses only dnsConfig.
    dns_policy: Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"] | None = None
    dns_config: PodDNSConfig | None = None
    host_aliases: list[HostAlias] = Field(default_factory=list)
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    affinity: Affinity | None = None
    topology_spread_constraints: list[TopologySpreadConstraint] = Field(default_factory=list)
    # Capstan's one scheduler is Kubernetes' default one; another name is refused in _check.
    scheduler_name: str | None = None
    priority_class_name: str | None = None
    priority: int | None = None
    preemption_policy: Literal["PreemptLowerPriority", "Never"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _service_account_alias(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        # An empty name means unset, as in Kubernetes (the namespace's default account).
        data = {
            key: value
            for key, value in data.items()
            if not (key in ("serviceAccount", "serviceAccountName") and value == "")
        }
        if data.get("serviceAccount") and not data.get("serviceAccountName"):
            return {**data, "serviceAccountName": data["serviceAccount"]}
        return data

    @model_validator(mode="after")
    def _check(self) -> PodSpec:
        problems = Problems("PodSpec")
        self._check_aliases_and_dns(problems)
        self._check_host_namespaces(problems)
        self._check_container_names(problems)
        self._check_ports(problems)
        self._check_volumes(problems)
        if self.scheduler_name not in (None, DEFAULT_SCHEDULER):
            problems.add(
                ("schedulerName",),
                "scheduler_name",
                f"Capstan has one scheduler ({DEFAULT_SCHEDULER!r}, Kubernetes' default); steer "
                "placement with nodeSelector, affinity or tolerations",
                self.scheduler_name,
            )
        problems.raise_if_any()
        return self

    def _check_host_namespaces(self, problems: Problems) -> None:
        if self.host_pid and self.share_process_namespace:
            problems.add(
                ("shareProcessNamespace",),
                "share_process_namespace",
                "ShareProcessNamespace and HostPID cannot both be enabled",
                True,
            )

    def _check_aliases_and_dns(self, problems: Problems) -> None:
        if (
            self.service_account is not None
            and self.service_account_name is not None
            and self.service_account != self.service_account_name
        ):
            problems.add(
                ("serviceAccount",),
                "service_account",
                "is the old name of serviceAccountName and must equal it when both are given",
                self.service_account,
            )
        dns = self.dns_config
        if self.dns_policy == "None" and (dns is None or not dns.nameservers):
            problems.add(
                ("dnsConfig", "nameservers"),
                "missing",
                "is required when dnsPolicy is None",
            )
        for index, container in enumerate(self.containers):
            if container.restart_policy is not None:
                problems.add(
                    ("containers", index, "restartPolicy"),
                    "container_restart_policy",
                    "may only be set on initContainers (Always makes a native sidecar)",
                    container.restart_policy,
                )

    @property
    def sidecars(self) -> list[Container]:
        """Native sidecars: initContainers with restartPolicy Always, run with the containers."""
        return [c for c in self.init_containers if c.restart_policy == "Always"]

    def _all_containers(self) -> list[tuple[str, int, Container]]:
        return [("initContainers", i, c) for i, c in enumerate(self.init_containers)] + [
            ("containers", i, c) for i, c in enumerate(self.containers)
        ]

    def _check_container_names(self, problems: Problems) -> None:
        seen: set[str] = set()
        for field, index, container in self._all_containers():
            if container.name in seen:
                problems.add(
                    (field, index, "name"),
                    "duplicate_container",
                    f"container name {container.name!r} is used twice in this pod",
                    container.name,
                )
            seen.add(container.name)

    def _check_ports(self, problems: Problems) -> None:
        """Port names are unique in the pod. A port number may be listed twice (Kubernetes
        only warns: ingress-nginx names port 80 both ``http`` and ``https``), but published on
        a hostPort only once, as the node's Docker publishes one container port once."""
        names: set[str] = set()
        published: set[tuple[int, str]] = set()
        for index, container in enumerate(self.containers):
            for port_index, port in enumerate(container.ports):
                loc = ("containers", index, "ports", port_index)
                if port.name is not None:
                    if port.name in names:
                        problems.add(
                            (*loc, "name"),
                            "duplicate_port_name",
                            f"port name {port.name!r} is used twice in this pod",
                            port.name,
                        )
                    names.add(port.name)
                number = (port.container_port, port.protocol)
                if port.host_port is not None and number in published:
                    problems.add(
                        (*loc, "containerPort"),
                        "duplicate_port",
                        f"port {port.container_port}/{port.protocol} is published on a hostPort "
                        "twice in this pod; Capstan publishes a container port on one host port",
                        port.container_port,
                    )
                if port.host_port is not None:
                    published.add(number)
                if (
                    self.host_network
                    and port.host_port is not None
                    and port.host_port != port.container_port
                ):
                    # On the host's network there is no mapping: the container binds the port.
                    problems.add(
                        (*loc, "hostPort"),
                        "host_network_port",
                        "must equal containerPort when hostNetwork is true",
                        port.host_port,
                    )

    def _check_volumes(self, problems: Problems) -> None:
        declared: set[str] = set()
        for index, volume in enumerate(self.volumes):
            if volume.name in declared:
                problems.add(
                    ("volumes", index, "name"),
                    "duplicate_volume",
                    f"volume name {volume.name!r} is used twice",
                    volume.name,
                )
            declared.add(volume.name)
        for field, index, container in self._all_containers():
            for mount_index, mount in enumerate(container.volume_mounts):
                if mount.name not in declared and mount.name not in TEMPLATE_CLAIM_VOLUMES.get():
                    problems.add(
                        (field, index, "volumeMounts", mount_index, "name"),
                        "volume_not_found",
                        f"no volume named {mount.name!r} in spec.volumes",
                        mount.name,
                    )
                context = container.security_context
                if mount.mount_propagation == "Bidirectional" and not (
                    context is not None and context.privileged
                ):
                    # Kubernetes' rule: a shared mount lets the container mount onto the node.
                    problems.add(
                        (field, index, "volumeMounts", mount_index, "mountPropagation"),
                        "mount_propagation",
                        "Bidirectional mount propagation is available only to privileged "
                        "containers",
                        mount.mount_propagation,
                    )

    def container(self, name: str) -> Container | None:
        return next((c for c in self.containers if c.name == name), None)

    def port_number(self, port: int | str, *, protocol: str = "TCP") -> int | None:
        """Resolve a port number or a named port of any container (as a Service does)."""
        if isinstance(port, int):
            return port
        for container in self.containers:
            number = container.port_number(port, protocol=protocol)
            if number is not None:
                return number
        return None


class PodTemplateSpec(KubeModel):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PodSpec


# --- status --------------------------------------------------------------------------------


class ContainerStateWaiting(KubeModel):
    reason: str | None = None
    message: str | None = None


class ContainerStateRunning(KubeModel):
    started_at: Timestamp | None = None


class ContainerStateTerminated(KubeModel):
    exit_code: int
    signal: int | None = None
    reason: str | None = None
    message: str | None = None
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    container_id: str | None = Field(default=None, alias="containerID")


class ContainerState(KubeModel):
    """At most one of ``waiting``, ``running``, ``terminated`` (none means waiting)."""

    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> ContainerState:
        if sum(s is not None for s in (self.waiting, self.running, self.terminated)) > 1:
            raise rule_error("one_of", "at most one of waiting, running or terminated may be given")
        return self


class ContainerStatus(KubeModel):
    name: str
    state: ContainerState = Field(default_factory=ContainerState)
    last_state: ContainerState = Field(default_factory=ContainerState)
    ready: bool = False
    started: bool | None = None
    restart_count: NonNegativeInt = 0
    image: str
    # Kubernetes always sends imageID, "" until the runtime knows it; clients require it.
    image_id: str = Field(default="", alias="imageID")
    container_id: str | None = Field(default=None, alias="containerID")


class HostPortMapping(KubeModel):
    """Capstan: where the agent published a container port on the node (reported by it)."""

    container_name: str
    container_port: PortNumber
    protocol: Protocol = "TCP"
    host_ip: str = Field(alias="hostIP")
    host_port: PortNumber


class PodStatus(KubeModel):
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"] = "Pending"
    conditions: list[Condition] = Field(default_factory=list)
    message: str | None = None
    reason: str | None = None
    host_ip: str | None = Field(default=None, alias="hostIP")
    pod_ip: str | None = Field(default=None, alias="podIP")
    start_time: Timestamp | None = None
    container_statuses: list[ContainerStatus] = Field(default_factory=list)
    init_container_statuses: list[ContainerStatus] = Field(default_factory=list)
    host_ports: list[HostPortMapping] = Field(default_factory=list)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def ready(self) -> bool:
        condition = self.condition("Ready")
        return condition is not None and condition.status == "True"


class Pod(KubeObject):
    NAMESPACED: ClassVar[bool] = True

    api_version: Literal["v1"] = "v1"
    kind: Literal["Pod"] = "Pod"
    spec: PodSpec
    status: PodStatus | None = None
