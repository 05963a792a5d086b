"""Containers: image, command, environment, ports, resources, probes, lifecycle, security.

Part of the pod spec (``schemas.pod``); the scheduler reads ``resources``, the agent turns the
rest into Docker containers and probes. Defaults are Kubernetes' own: probe period 10 s,
timeout 1 s, failureThreshold 3, successThreshold 1; imagePullPolicy ``Always`` for
``:latest`` or untagged images, else ``IfNotPresent``; protocol TCP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from schemas._validation import (
    ConfigKey,
    DNSLabel,
    DNSSubdomain,
    EnvVarName,
    LocalDescendingPath,
    NonNegativeInt,
    PortName,
    PortNumber,
    PortOrName,
    PositiveInt,
    Problems,
    QualifiedName,
    rule_error,
)
from schemas.meta import KubeModel
from schemas.quantity import Quantity

__all__ = [
    "Capabilities",
    "ConfigMapEnvSource",
    "ConfigMapKeySelector",
    "Container",
    "ContainerPort",
    "EnvFromSource",
    "EnvVar",
    "EnvVarSource",
    "ExecAction",
    "GRPCAction",
    "HTTPGetAction",
    "HTTPHeader",
    "ImagePullPolicy",
    "Lifecycle",
    "LifecycleHandler",
    "MountPropagation",
    "ObjectFieldSelector",
    "Probe",
    "Protocol",
    "ResourceRequirements",
    "SeccompProfile",
    "SecretEnvSource",
    "SecretKeySelector",
    "SecurityContext",
    "SleepAction",
    "TCPSocketAction",
    "VolumeMount",
    "default_image_pull_policy",
]

Protocol = Literal["TCP", "UDP", "SCTP"]
ImagePullPolicy = Literal["Always", "IfNotPresent", "Never"]
_STANDARD_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})


def default_image_pull_policy(image: str) -> ImagePullPolicy:
    """Kubernetes' default: ``Always`` for ``:latest`` or no tag, else ``IfNotPresent``."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    _, colon, tag = last.partition(":")
    return "Always" if not colon or tag == "latest" else "IfNotPresent"


# --- environment ---------------------------------------------------------------------------


class ConfigMapKeySelector(KubeModel):
    name: DNSSubdomain
    key: ConfigKey
    optional: bool | None = None


class SecretKeySelector(KubeModel):
    name: DNSSubdomain
    key: ConfigKey
    optional: bool | None = None


class ObjectFieldSelector(KubeModel):
    """``fieldRef``: a field of the pod itself, e.g. ``metadata.name``, ``status.podIP``."""

    field_path: str
    api_version: str | None = None


class EnvVarSource(KubeModel):
    config_map_key_ref: ConfigMapKeySelector | None = None
    secret_key_ref: SecretKeySelector | None = None
    field_ref: ObjectFieldSelector | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        given = [s for s in (self.config_map_key_ref, self.secret_key_ref, self.field_ref) if s]
        if len(given) != 1:
            raise rule_error(
                "one_of", "exactly one of configMapKeyRef, secretKeyRef or fieldRef must be given"
            )
        return self


class EnvVar(KubeModel):
    name: EnvVarName
    value: str | None = None
    value_from: EnvVarSource | None = None

    @model_validator(mode="after")
    def _value_or_source(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            problems = Problems("EnvVar")
            problems.add(("valueFrom",), "env_value", "may not be given when value is not empty")
            problems.raise_if_any()
        return self


class ConfigMapEnvSource(KubeModel):
    name: DNSSubdomain
    optional: bool | None = None


class SecretEnvSource(KubeModel):
    name: DNSSubdomain
    optional: bool | None = None


class EnvFromSource(KubeModel):
    prefix: str | None = None
    config_map_ref: ConfigMapEnvSource | None = None
    secret_ref: SecretEnvSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvFromSource:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise rule_error("one_of", "exactly one of configMapRef or secretRef must be given")
        return self


# --- ports, resources, probes --------------------------------------------------------------


class ContainerPort(KubeModel):
    name: PortName | None = None
    container_port: PortNumber
    host_port: PortNumber | None = None
    protocol: Protocol = "TCP"
    host_ip: str | None = Field(default=None, alias="hostIP")


def _resource_name_problem(name: str) -> str | None:
    if name in _STANDARD_RESOURCES or name.startswith("hugepages-") or "/" in name:
        return None
    return (
        f"{name!r} is not a supported resource: use cpu, memory, ephemeral-storage, "
        "hugepages-<size> or a domain-qualified extended resource"
    )


class ResourceRequirements(KubeModel):
    """``resources``. As in Kubernetes, a limit without a request sets the request."""

    requests: dict[QualifiedName, Quantity] = Field(default_factory=dict)
    limits: dict[QualifiedName, Quantity] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _requests_default_to_limits(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        limits = data.get("limits")
        requests = data.get("requests", {})
        if not isinstance(limits, Mapping) or not isinstance(requests, Mapping):
            return data
        missing = {k: v for k, v in limits.items() if k not in requests}
        if not missing:
            return data
        return {**data, "requests": {**requests, **missing}}

    @model_validator(mode="after")
    def _check(self) -> ResourceRequirements:
        problems = Problems("ResourceRequirements")
        for field in ("requests", "limits"):
            for name, quantity in getattr(self, field).items():
                problem = _resource_name_problem(name)
                if problem is not None:
                    problems.add((field, name), "resource_name", problem, name)
                elif quantity.value < 0:
                    problems.add(
                        (field, name), "resource_negative", "must not be negative", quantity.text
                    )
        for name, limit in self.limits.items():
            request = self.requests.get(name)
            if request is not None and request > limit:
                problems.add(
                    ("requests", name),
                    "request_above_limit",
                    f"must be less than or equal to the {name} limit ({limit.text})",
                    request.text,
                )
        problems.raise_if_any()
        return self


class HTTPHeader(KubeModel):
    name: str
    value: str


class HTTPGetAction(KubeModel):
    path: str = "/"
    port: PortOrName
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    http_headers: list[HTTPHeader] = Field(default_factory=list)


class TCPSocketAction(KubeModel):
    port: PortOrName
    host: str | None = None


class GRPCAction(KubeModel):
    """``grpc``: the gRPC health-checking protocol (grpc.health.v1) on ``port``."""

    port: PortNumber
    service: str | None = None


class ExecAction(KubeModel):
    command: list[str] = Field(min_length=1)


class SleepAction(KubeModel):
    seconds: NonNegativeInt


class Probe(KubeModel):
    """A health check: exactly one of ``httpGet``, ``tcpSocket``, ``exec``, ``grpc``."""

    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    exec_: ExecAction | None = Field(default=None, alias="exec")
    grpc: GRPCAction | None = None
    initial_delay_seconds: NonNegativeInt = 0
    period_seconds: PositiveInt = 10
    timeout_seconds: PositiveInt = 1
    success_threshold: PositiveInt = 1
    failure_threshold: PositiveInt = 3

    @model_validator(mode="after")
    def _one_handler(self) -> Probe:
        handlers = (self.http_get, self.tcp_socket, self.exec_, self.grpc)
        if sum(h is not None for h in handlers) != 1:
            raise rule_error(
                "one_of", "exactly one of httpGet, tcpSocket, exec or grpc must be given"
            )
        return self

    @property
    def port(self) -> int | str | None:
        """The port this probe connects to (``None`` for exec probes)."""
        if self.http_get is not None:
            return self.http_get.port
        if self.tcp_socket is not None:
            return self.tcp_socket.port
        if self.grpc is not None:
            return self.grpc.port
        return None


class LifecycleHandler(KubeModel):
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    exec_: ExecAction | None = Field(default=None, alias="exec")
    sleep: SleepAction | None = None

    @model_validator(mode="after")
    def _one_handler(self) -> LifecycleHandler:
        handlers = (self.http_get, self.tcp_socket, self.exec_, self.sleep)
        if sum(h is not None for h in handlers) != 1:
            raise rule_error(
                "one_of", "exactly one of httpGet, tcpSocket, exec or sleep must be given"
            )
        return self


class Lifecycle(KubeModel):
    post_start: LifecycleHandler | None = None
    pre_stop: LifecycleHandler | None = None


class Capabilities(KubeModel):
    add: list[str] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list)


class SeccompProfile(KubeModel):
    """``seccompProfile``: Docker's default profile (``RuntimeDefault``, also what Capstan
    applies when nothing is said) or none (``Unconfined``, only in a privileged namespace).
    ``Localhost`` profiles are not supported."""

    type: Literal["RuntimeDefault", "Unconfined"]


class SecurityContext(KubeModel):
    """The container security settings Capstan applies through Docker.

    Which values a pod may use is the Pod Security level of its namespace
    (:mod:`schemas.podsecurity`), checked by the loader, the API server and the agent.
    """

    run_as_user: NonNegativeInt | None = None
    run_as_group: NonNegativeInt | None = None
    run_as_non_root: bool | None = None
    read_only_root_filesystem: bool | None = None
    privileged: bool | None = None
    allow_privilege_escalation: bool | None = None
    capabilities: Capabilities | None = None
    seccomp_profile: SeccompProfile | None = None


#: ``mountPropagation``: how mounts made later under the volume's source travel between host
#: and container (Docker's bind propagation rprivate, rslave, rshared on the agent).
MountPropagation = Literal["None", "HostToContainer", "Bidirectional"]


class VolumeMount(KubeModel):
    """A volume in a container. ``subPath`` is a path inside the volume (never absolute, never
    ``..``); the agent checks again, after resolving symlinks, that it stays inside.
    ``mountPropagation: Bidirectional`` needs a privileged container, as in Kubernetes (the
    pod spec checks it)."""

    name: DNSLabel
    mount_path: str = Field(min_length=1)
    read_only: bool | None = None
    sub_path: LocalDescendingPath | None = None
    mount_propagation: MountPropagation | None = None


# --- containers ----------------------------------------------------------------------------


class Container(KubeModel):
    name: DNSLabel
    image: str = Field(min_length=1)
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    working_dir: str | None = None
    ports: list[ContainerPort] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    env_from: list[EnvFromSource] = Field(default_factory=list)
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    volume_mounts: list[VolumeMount] = Field(default_factory=list)
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle | None = None
    image_pull_policy: ImagePullPolicy = "IfNotPresent"
    security_context: SecurityContext | None = None
    stdin: bool | None = None
    tty: bool | None = None
    # Accepted, no effect: Capstan reports the exit code and the last log lines as the
    # termination message whatever these say (docs/gitops.md).
    termination_message_path: str | None = None
    termination_message_policy: Literal["File", "FallbackToLogsOnError"] | None = None
    # Only in initContainers: Always makes it a native sidecar, run alongside the containers.
    restart_policy: Literal["Always"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_pull_policy(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        if "imagePullPolicy" in data or "image_pull_policy" in data:
            return data
        image = data.get("image")
        if not isinstance(image, str):
            return data
        return {**data, "imagePullPolicy": default_image_pull_policy(image)}

    @model_validator(mode="after")
    def _check_probes(self) -> Container:
        problems = Problems("Container")
        names = {p.name for p in self.ports if p.name is not None}
        probes = (
            ("livenessProbe", self.liveness_probe),
            ("readinessProbe", self.readiness_probe),
            ("startupProbe", self.startup_probe),
        )
        for field, probe in probes:
            if probe is None:
                continue
            if isinstance(probe.port, str) and probe.port not in names:
                action = "httpGet" if probe.http_get is not None else "tcpSocket"
                problems.add(
                    (field, action, "port"),
                    "probe_port",
                    f"port name {probe.port!r} is not the name of a port of container "
                    f"{self.name!r}",
                    probe.port,
                )
            if field != "readinessProbe" and probe.success_threshold != 1:
                problems.add(
                    (field, "successThreshold"),
                    "probe_success_threshold",
                    "must be 1 for liveness and startup probes",
                    probe.success_threshold,
                )
        problems.raise_if_any()
        return self

    def port_number(self, port: int | str, *, protocol: str = "TCP") -> int | None:
        """Resolve a port number or a named port of this container; ``None`` if not found."""
        if isinstance(port, int):
            return port
        for candidate in self.ports:
            if candidate.name == port and candidate.protocol == protocol:
                return candidate.container_port
        return None
