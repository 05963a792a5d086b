"""v1 Namespace, Service, ServiceAccount, ConfigMap and Secret.

Loaded from Git by the source, stored by the API server; Services become proxy rules on every
node (the endpoints controller resolves their ``targetPort`` against ready pods), ConfigMaps
and Secrets become files and environment in containers. Secret values never appear in a
``repr`` or a validation error.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from schemas._pslevels import ENFORCE_LABEL, level_problem
from schemas._validation import (
    ConfigKey,
    DNSLabel,
    DNSSubdomain,
    PortNumber,
    PortOrName,
    Problems,
    rule_error,
)
from schemas.container import Protocol
from schemas.meta import Condition, KubeModel, KubeObject, Labels, NameFormat, ObjectReference
from schemas.sealed import ENCRYPTED_ANNOTATION, ENCRYPTED_VALUE, armor_problem

__all__ = [
    "KUBERNETES_NAMESPACES",
    "ConfigMap",
    "LoadBalancerIngress",
    "LoadBalancerStatus",
    "LocalObjectReference",
    "Namespace",
    "NamespaceStatus",
    "Secret",
    "Service",
    "ServiceAccount",
    "ServicePort",
    "ServiceSpec",
    "ServiceStatus",
]

NODE_PORT_RANGE = range(30000, 32768)
#: The namespaces every Kubernetes cluster has; manifests may use them without defining them.
KUBERNETES_NAMESPACES = ("default", "kube-system", "kube-public")
_REDACTED = "[redacted]"


class NamespaceStatus(KubeModel):
    phase: Literal["Active", "Terminating"] = "Active"


class Namespace(KubeObject):
    """A namespace. Its label ``pod-security.kubernetes.io/enforce`` (privileged, baseline or
    restricted; baseline when absent) is the Pod Security level its pods must meet."""

    NAMESPACED: ClassVar[bool] = False
    NAME_FORMAT: ClassVar[NameFormat] = "dns1123-label"

    api_version: Literal["v1"] = "v1"
    kind: Literal["Namespace"] = "Namespace"
    status: NamespaceStatus | None = None

    @model_validator(mode="after")
    def _pod_security_level(self) -> Namespace:
        value = self.metadata.labels.get(ENFORCE_LABEL)
        problem = None if value is None else level_problem(value)
        if problem is not None:
            problems = Problems("Namespace")
            problems.add(
                ("metadata", "labels", ENFORCE_LABEL), "pod_security_level", problem, value
            )
            problems.raise_if_any()
        return self


def _target_port_optional(schema: dict[str, Any]) -> None:
    # targetPort is filled in before validation, so a manifest may leave it out.
    schema["required"] = [name for name in schema.get("required", []) if name != "targetPort"]


class ServicePort(KubeModel):
    """One Service port; ``targetPort`` defaults to ``port``, as in Kubernetes."""

    model_config = ConfigDict(json_schema_extra=_target_port_optional)

    # A DNS-1123 label (up to 63 characters); the 15-character IANA rule is for container ports.
    name: DNSLabel | None = None
    protocol: Protocol = "TCP"
    # Accepted, no effect: the node proxies forward bytes whatever the protocol above TCP.
    app_protocol: str | None = None
    port: PortNumber
    target_port: PortOrName
    node_port: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_target_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and "targetPort" not in data and "target_port" not in data:
            port = data.get("port")
            if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
                return {**data, "targetPort": port}
        return data

    @field_validator("node_port")
    @classmethod
    def _node_port_range(cls, value: int | None) -> int | None:
        if value == 0:
            return None  # As in Kubernetes: 0 asks for one to be allocated.
        if value is not None and value not in NODE_PORT_RANGE:
            raise rule_error(
                "node_port_range",
                f"must be in the node port range 30000-{NODE_PORT_RANGE.stop - 1}",
            )
        return value


def _key(data: Mapping[str, Any], alias: str, name: str) -> str:
    """The key ``data`` writes a field under: its alias, or its Python name."""
    return name if name in data and alias not in data else alias


def _given(data: Mapping[str, Any], alias: str, name: str | None = None) -> Any:
    """The value ``data`` gives a field, under its alias or its Python name."""
    return data.get(alias, data.get(name) if name else None)


class ServiceSpec(KubeModel):
    """A Service. ``LoadBalancer`` is served as k3s' ServiceLB does: a NodePort on every node,
    with the nodes' addresses reported in ``status.loadBalancer.ingress``."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    selector: Labels = Field(default_factory=dict)
    ports: list[ServicePort] = Field(default_factory=list)
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    # Capstan's Service network is IPv4 only, as a Kubernetes cluster without dual-stack: the
    # families and addresses below are accepted when they ask for no more than that.
    cluster_ips: list[str] = Field(default_factory=list, alias="clusterIPs", max_length=2)
    ip_family_policy: Literal["SingleStack", "PreferDualStack", "RequireDualStack"] | None = None
    ip_families: list[Literal["IPv4", "IPv6"]] = Field(default_factory=list, max_length=2)
    session_affinity: Literal["None", "ClientIP"] = "None"
    # Where traffic from outside (node ports) may go: `Cluster` (the default), a ready endpoint
    # on any node; `Local`, only the endpoints on the node the traffic reached, keeping the
    # client's address (the node proxy, agent.proxy, programs it from ServiceRule). Traffic
    # from inside (internalTrafficPolicy) goes to any node: its `Local` is refused
    # (_check_traffic_policies).
    external_traffic_policy: Literal["Cluster", "Local"] | None = None
    internal_traffic_policy: Literal["Cluster", "Local"] | None = None
    # The port a cloud load balancer probes for a LoadBalancer Service with
    # externalTrafficPolicy Local: accepted with Kubernetes' checks; Capstan serves
    # LoadBalancer as NodePorts on every node and allocates or serves no health port.
    health_check_node_port: int | None = Field(
        default=None, alias="healthCheckNodePort", ge=1, le=65535
    )
    # Pods that are not Ready are endpoints too (a StatefulSet's peers finding each other
    # before they serve: Argo CD's redis-ha); read by reconciler.controllers.endpoints.
    publish_not_ready_addresses: bool = False
    # Deprecated in Kubernetes (v1.24) and implementation-specific: ignored where the load
    # balancer cannot ask for an address. Capstan's ServiceLB serves the Service on every
    # node's own address, so it is kept as written and `capstan validate` warns
    # (reconciler.source.load's field notices).
    load_balancer_ip: str | None = Field(default=None, alias="loadBalancerIP")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Kubernetes' defaulting of a new Service on an IPv4 single-stack cluster: clusterIP
        from clusterIPs[0], ipFamilyPolicy SingleStack (RequireDualStack for a headless
        Service without selector), ipFamilies from clusterIPs, else the cluster's IPv4."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        cluster_ips = _given(data, "clusterIPs", "cluster_ips")
        # clusterIPs[0] is clusterIP (Kubernetes keeps the two in step).
        first = cluster_ips[0] if isinstance(cluster_ips, list) and cluster_ips else None
        if isinstance(first, str) and not _given(data, "clusterIP", "cluster_ip"):
            data["clusterIP"] = first
        policy = _given(data, "ipFamilyPolicy", "ip_family_policy")
        families = _given(data, "ipFamilies", "ip_families")
        if not isinstance(policy, str | None) or not isinstance(families, list | None):
            return data  # the field validators say what is wrong
        headless_selectorless = _given(data, "clusterIP", "cluster_ip") == "None" and not (
            _given(data, "selector")
        )
        if policy is None:
            policy = "RequireDualStack" if headless_selectorless else "SingleStack"
            data[_key(data, "ipFamilyPolicy", "ip_family_policy")] = policy
        families = list(families or [])
        for index, address in enumerate(cluster_ips if isinstance(cluster_ips, list) else []):
            if address == "None" or not isinstance(address, str):
                break
            family = "IPv6" if ":" in address else "IPv4"
            if index >= len(families) and family not in families:
                families.append(family)
        if not families:
            families = ["IPv4"]
        if headless_selectorless and len(families) == 1 and policy != "SingleStack":
            # Kubernetes lists both families for such a Service, even single-stack: it has
            # no address of its own, its endpoints have whatever family they have.
            families.append("IPv6" if families[0] == "IPv4" else "IPv4")
        data[_key(data, "ipFamilies", "ip_families")] = families
        return data

    @model_validator(mode="after")
    def _check(self) -> ServiceSpec:
        problems = Problems("ServiceSpec")
        self._check_families(problems)
        self._check_traffic_policies(problems)
        names: set[str] = set()
        numbers: set[tuple[int, str]] = set()
        for index, port in enumerate(self.ports):
            if port.name is None and len(self.ports) > 1:
                problems.add(
                    ("ports", index, "name"),
                    "missing",
                    "is required when a Service has more than one port",
                )
            if port.name is not None:
                if port.name in names:
                    problems.add(
                        ("ports", index, "name"),
                        "duplicate_port_name",
                        f"port name {port.name!r} is used twice",
                        port.name,
                    )
                names.add(port.name)
            if (port.port, port.protocol) in numbers:
                problems.add(
                    ("ports", index, "port"),
                    "duplicate_port",
                    f"port {port.port}/{port.protocol} is used twice",
                    port.port,
                )
            numbers.add((port.port, port.protocol))
            if port.node_port is not None and self.type == "ClusterIP":
                problems.add(
                    ("ports", index, "nodePort"),
                    "node_port_type",
                    "may not be given when type is ClusterIP",
                    port.node_port,
                )
        problems.raise_if_any()
        return self

    def _check_traffic_policies(self, problems: Problems) -> None:
        if self.internal_traffic_policy == "Local":
            problems.add(
                ("internalTrafficPolicy",),
                "traffic_policy",
                "'Local' (only the endpoints on the client's own node) is not implemented: "
                "Capstan's node proxies send a Service's traffic from inside the cluster to a "
                "ready endpoint on any node, which is what 'Cluster' means",
                self.internal_traffic_policy,
            )
        if self.health_check_node_port is not None and not (
            self.type == "LoadBalancer" and self.external_traffic_policy == "Local"
        ):
            # Kubernetes' own check (validateServiceExternalTrafficPolicy).
            problems.add(
                ("healthCheckNodePort",),
                "health_check_node_port",
                "may only be set when type is 'LoadBalancer' and externalTrafficPolicy is 'Local'",
                self.health_check_node_port,
            )

    def _check_families(self, problems: Problems) -> None:
        """Kubernetes' checks of the IP family fields (its validation and the Service
        allocator's), on a cluster whose only Service family is IPv4."""
        ipv4_only = "the Service network of a Capstan cluster is IPv4 only (single-stack)"
        seen: set[str] = set()
        for index, family in enumerate(self.ip_families):
            if family in seen:
                problems.add(("ipFamilies", index), "ip_families", f"{family} is listed twice")
            seen.add(family)
        if self.cluster_ips and self.cluster_ips[0] != self.cluster_ip:
            problems.add(
                ("clusterIPs", 0), "cluster_ips", "must equal clusterIP", self.cluster_ips[0]
            )
        if len(self.cluster_ips) > 1 and "None" in self.cluster_ips:
            problems.add(("clusterIPs",), "cluster_ips", "'None' must be the first and only value")
        elif len(self.cluster_ips) > 1 and len({":" in ip for ip in self.cluster_ips}) == 1:
            problems.add(
                ("clusterIPs",),
                "cluster_ips",
                "may specify no more than one IP for each IP family",
                self.cluster_ips,
            )
        for index, (address, family) in enumerate(
            zip(self.cluster_ips, self.ip_families, strict=False)
        ):
            if address != "None" and ("IPv6" if ":" in address else "IPv4") != family:
                problems.add(
                    ("clusterIPs", index),
                    "cluster_ips",
                    f"expected an {family} value as indicated by `ipFamilies[{index}]`",
                    address,
                )
        if self.ip_family_policy == "SingleStack":
            for what, given in (("cluster IPs", self.cluster_ips), ("IP families", seen)):
                if len(given) > 1:
                    problems.add(
                        ("ipFamilyPolicy",),
                        "ip_family_policy",
                        "must be 'RequireDualStack' or 'PreferDualStack' when multiple "
                        f"{what} are specified",
                        self.ip_family_policy,
                    )
        if problems or (self.cluster_ip == "None" and not self.selector):
            # A headless Service without selector has no address: any families go.
            return
        if self.ip_family_policy == "RequireDualStack":
            problems.add(
                ("ipFamilyPolicy",),
                "ip_family_policy",
                f"this cluster is not configured for dual-stack services: {ipv4_only}; "
                "write PreferDualStack (IPv4 here, both families on a dual-stack cluster) "
                "or SingleStack",
                self.ip_family_policy,
            )
        for index, family in enumerate(self.ip_families):
            if family == "IPv4":
                continue
            written = self.cluster_ips[index] if index < len(self.cluster_ips) else None
            problems.add(
                ("clusterIPs", index) if written is not None else ("ipFamilies", index),
                "ip_families",
                f"IPv6 is not configured on this cluster: {ipv4_only}; "
                + (
                    "give an IPv4 address, or leave clusterIP out to have one allocated"
                    if written is not None
                    else "list IPv4 only, or leave ipFamilies out"
                ),
                written or family,
            )

    @property
    def proxy_type(self) -> Literal["ClusterIP", "NodePort"]:
        """How a node's proxy serves it: LoadBalancer Services are NodePorts on every node."""
        return "ClusterIP" if self.type == "ClusterIP" else "NodePort"


class LoadBalancerIngress(KubeModel):
    ip: str | None = None
    hostname: str | None = None


class LoadBalancerStatus(KubeModel):
    ingress: list[LoadBalancerIngress] = Field(default_factory=list)


class ServiceStatus(KubeModel):
    conditions: list[Condition] = Field(default_factory=list)
    load_balancer: LoadBalancerStatus | None = None


class Service(KubeObject):
    NAMESPACED: ClassVar[bool] = True
    # Service names become DNS names and environment variables: DNS-1035 (start with a letter).
    NAME_FORMAT: ClassVar[NameFormat] = "dns1035-label"

    api_version: Literal["v1"] = "v1"
    kind: Literal["Service"] = "Service"
    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: ServiceStatus | None = None


class LocalObjectReference(KubeModel):
    name: DNSSubdomain


class ServiceAccount(KubeObject):
    NAMESPACED: ClassVar[bool] = True

    api_version: Literal["v1"] = "v1"
    kind: Literal["ServiceAccount"] = "ServiceAccount"
    automount_service_account_token: bool | None = None
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    # Accepted and kept, no effect: Kubernetes' list of token Secrets for the account, which it
    # no longer fills (v1.24) and enforces only under an admission plugin's annotation. Capstan
    # mounts each pod's token itself and lets a pod mount any Secret of its namespace.
    secrets: list[ObjectReference] = Field(default_factory=list)


def _check_base64(values: dict[str, str]) -> None:
    problems = Problems("data")
    for key, value in values.items():
        try:
            # Kubernetes decodes with Go's base64, which skips line breaks (wrapped PEM-style
            # values); anything else outside the standard alphabet is refused, as there.
            base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
        except (binascii.Error, ValueError):
            problems.add(
                (key,), "base64", "must be valid base64 (standard alphabet, padded)", _REDACTED
            )
    problems.raise_if_any()


def _check_sealed(secret: Secret) -> None:
    problems = Problems("Secret")
    marker = secret.metadata.annotations.get(ENCRYPTED_ANNOTATION)
    if marker != ENCRYPTED_VALUE:
        problems.add(
            ("metadata", "annotations", ENCRYPTED_ANNOTATION),
            "encrypted",
            f"must be {ENCRYPTED_VALUE!r} (the only encryption Capstan knows)",
            marker,
        )
    problems.raise_if_any()
    for field, values in (("data", secret.data), ("stringData", secret.string_data)):
        sealed = Problems("Secret")
        for key, value in values.items():
            problem = armor_problem(value)
            if problem is not None:
                sealed.add(
                    (field, key),
                    "encrypted",
                    f"{problem}; this Secret is annotated {ENCRYPTED_ANNOTATION}: "
                    f"{ENCRYPTED_VALUE}, encrypt it with `capstan secret encrypt`",
                    _REDACTED,
                )
        sealed.raise_if_any()


def _check_disjoint(first: dict[str, str], second: dict[str, str], *, field: str) -> None:
    problems = Problems("keys")
    for key in sorted(first.keys() & second.keys()):
        problems.add((field, key), "duplicate_key", f"key {key!r} is also in data", key)
    problems.raise_if_any()


class ConfigMap(KubeObject):
    NAMESPACED: ClassVar[bool] = True

    api_version: Literal["v1"] = "v1"
    kind: Literal["ConfigMap"] = "ConfigMap"
    data: dict[ConfigKey, str] = Field(default_factory=dict)
    binary_data: dict[ConfigKey, str] = Field(default_factory=dict)
    immutable: bool | None = None

    @field_validator("binary_data")
    @classmethod
    def _base64(cls, value: dict[str, str]) -> dict[str, str]:
        _check_base64(value)
        return value

    @model_validator(mode="after")
    def _disjoint(self) -> ConfigMap:
        _check_disjoint(self.data, self.binary_data, field="binaryData")
        return self


class Secret(KubeObject):
    """A Secret. ``data`` values are base64; ``stringData`` values are plain and win over
    ``data`` for the same key (as Kubernetes merges them on write)."""

    NAMESPACED: ClassVar[bool] = True

    api_version: Literal["v1"] = "v1"
    kind: Literal["Secret"] = "Secret"
    type: str = Field(default="Opaque", min_length=1)
    data: dict[ConfigKey, str] = Field(default_factory=dict, repr=False)
    string_data: dict[ConfigKey, str] = Field(default_factory=dict, repr=False)
    immutable: bool | None = None

    @field_validator("data", "string_data", mode="wrap")
    @classmethod
    def _redacted(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> dict[str, str]:
        # WARNING: pydantic puts the offending input into every error and its str(); for a
        # Secret that input is the secret. Re-raise with the input replaced.
        try:
            checked: dict[str, str] = handler(value)
        except ValidationError as exc:
            raise ValidationError.from_exception_data(
                "Secret",
                [
                    InitErrorDetails(
                        type=rule_error(error["type"], error["msg"]),
                        loc=error["loc"],
                        input=_REDACTED,
                    )
                    for error in exc.errors()
                ],
            ) from None
        return checked

    @field_validator("data")
    @classmethod
    def _base64(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        # An encrypted Secret (docs/secrets.md) holds age messages, not base64, in `data`.
        metadata = info.data.get("metadata")
        if metadata is None or ENCRYPTED_ANNOTATION not in metadata.annotations:
            _check_base64(value)
        return value

    @model_validator(mode="after")
    def _sealed(self) -> Secret:
        if ENCRYPTED_ANNOTATION in self.metadata.annotations:
            _check_sealed(self)
        return self

    def decoded(self) -> dict[str, bytes]:
        """The secret's values as bytes, ``stringData`` merged over ``data``."""
        values = {key: base64.b64decode(value) for key, value in self.data.items()}
        values.update({key: value.encode() for key, value in self.string_data.items()})
        return values
