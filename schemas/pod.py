"""v1 Pod: the pod spec (containers, volumes, scheduling), its template, and its status.

The pod spec is what flows furthest: from a Deployment's template through the ReplicaSet
controller and the scheduler to the agent on a node, which runs it and answers with a
:class:`PodStatus`. Defaults are Kubernetes' own (restartPolicy Always, grace period 30 s,
hostNetwork false). Containers live in ``schemas.container``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from schemas._validation import (
    ConfigKey,
    DNSLabel,
    DNSSubdomain,
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
    HTTPGetAction,
    HTTPHeader,
    ImagePullPolicy,
    Lifecycle,
    LifecycleHandler,
    ObjectFieldSelector,
    Probe,
    Protocol,
    ResourceRequirements,
    SecretEnvSource,
    SecretKeySelector,
    SecurityContext,
    SleepAction,
    TCPSocketAction,
    VolumeMount,
    default_image_pull_policy,
)
from schemas.meta import Condition, KubeModel, KubeObject, ObjectMeta, Timestamp
from schemas.quantity import Quantity

__all__ = [
    "Capabilities",
    "ConfigMapEnvSource",
    "ConfigMapKeySelector",
    "ConfigMapVolumeSource",
    "Container",
    "ContainerPort",
    "ContainerState",
    "ContainerStateRunning",
    "ContainerStateTerminated",
    "ContainerStateWaiting",
    "ContainerStatus",
    "EmptyDirVolumeSource",
    "EnvFromSource",
    "EnvVar",
    "EnvVarSource",
    "ExecAction",
    "HTTPGetAction",
    "HTTPHeader",
    "HostPortMapping",
    "ImagePullPolicy",
    "KeyToPath",
    "Lifecycle",
    "LifecycleHandler",
    "ObjectFieldSelector",
    "Pod",
    "PodSecurityContext",
    "PodSpec",
    "PodStatus",
    "PodTemplateSpec",
    "Probe",
    "Protocol",
    "ResourceRequirements",
    "SecretEnvSource",
    "SecretKeySelector",
    "SecretVolumeSource",
    "SecurityContext",
    "SleepAction",
    "TCPSocketAction",
    "Toleration",
    "Volume",
    "VolumeMount",
    "default_image_pull_policy",
]


# --- volumes -------------------------------------------------------------------------------


class KeyToPath(KubeModel):
    key: ConfigKey
    path: str = Field(min_length=1)
    mode: int | None = Field(default=None, ge=0, le=0o777)

    @model_validator(mode="after")
    def _relative_path(self) -> KeyToPath:
        if self.path.startswith("/") or ".." in self.path.split("/"):
            problems = Problems("KeyToPath")
            problems.add(
                ("path",), "relative_path", "must be a relative path without '..'", self.path
            )
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


class Volume(KubeModel):
    """A pod volume: exactly one of ``emptyDir``, ``configMap``, ``secret``."""

    name: DNSLabel
    empty_dir: EmptyDirVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        if sum(s is not None for s in (self.empty_dir, self.config_map, self.secret)) != 1:
            raise rule_error("one_of", "exactly one of emptyDir, configMap or secret must be given")
        return self


class PodSecurityContext(KubeModel):
    run_as_user: NonNegativeInt | None = None
    run_as_group: NonNegativeInt | None = None
    run_as_non_root: bool | None = None
    fs_group: NonNegativeInt | None = None


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
    tolerations: list[Toleration] = Field(default_factory=list)
    security_context: PodSecurityContext | None = None
    hostname: DNSLabel | None = None

    @model_validator(mode="after")
    def _check(self) -> PodSpec:
        problems = Problems("PodSpec")
        self._check_container_names(problems)
        self._check_ports(problems)
        self._check_volumes(problems)
        problems.raise_if_any()
        return self

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
        names: set[str] = set()
        numbers: set[tuple[int, str]] = set()
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
                if (port.container_port, port.protocol) in numbers:
                    problems.add(
                        (*loc, "containerPort"),
                        "duplicate_port",
                        f"port {port.container_port}/{port.protocol} is used twice in this pod",
                        port.container_port,
                    )
                numbers.add((port.container_port, port.protocol))
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
                if mount.name not in declared:
                    problems.add(
                        (field, index, "volumeMounts", mount_index, "name"),
                        "volume_not_found",
                        f"no volume named {mount.name!r} in spec.volumes",
                        mount.name,
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
