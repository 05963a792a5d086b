"""The endpoints controller: for every Service, its ready pods as (node address, host port, pod).

Sits between the pods' status (written by agents: Ready condition, ``status.hostPorts``) and
the node proxies: whoever builds a node's ``Sync`` turns each Service's endpoints into a
``schemas.protocol.ServiceRule`` with :meth:`ServiceEndpoints.to_service_rule`.

For a Service with a selector, an endpoint is a pod in its namespace that matches the selector,
is bound to a node, is not being deleted and is Ready. For each Service port, ``targetPort``
is resolved (a number, or a container port *name* looked up in the pod, per protocol) to a
container port, which maps to the host port the agent published for it (``status.hostPorts``;
on the host network, the container port itself). The address is the host IP of that mapping
when it is a specific one, else the node's address (InternalIP, then ``spec.address``). A pod
that published nothing for a port is no endpoint of that port: the proxy could not reach it.

Where they are stored — DECISION: ``schemas`` has no Endpoints kind and the supported kinds are
fixed by the design, so each Service's endpoints are kept in a ConfigMap named
``<service>.endpoints`` in the Service's namespace: label ``endpoints.capstan.io/service:
<service>``, annotation ``capstan.io/managed-by: endpoints-controller``, a controller
ownerReference to the Service (the garbage collector removes it with the Service), and one key
``endpoints.json`` holding a :class:`ServiceEndpoints` as JSON. Read it back with
:func:`read_endpoints`. Git sync must leave ConfigMaps with that label alone (they are derived
state, like Kubernetes' Endpoints objects). A ConfigMap of that name *without* the label is a
user's: the controller never overwrites it and reports the collision.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import ClassVar, Literal

from pydantic import Field

from reconciler.api import NotFound
from reconciler.controllers.runtime import (
    Controller,
    ControllerContext,
    Result,
    TerminalError,
)
from schemas import ConfigMap, Node, ObjectKey, ObjectMeta, OwnerReference, Pod, Service
from schemas.meta import KubeModel
from schemas.protocol import (
    Endpoint,
    ServicePortRule,
    ServiceRule,
    node_address_problem,
    wire_cluster_ip,
)

__all__ = [
    "ENDPOINTS_DATA_KEY",
    "ENDPOINTS_LABEL",
    "EndpointTarget",
    "EndpointsController",
    "EndpointsPort",
    "ServiceEndpoints",
    "compute_endpoints",
    "endpoints_config_map",
    "endpoints_config_map_name",
    "node_address",
    "read_endpoints",
]

ENDPOINTS_LABEL = "endpoints.capstan.io/service"
ENDPOINTS_DATA_KEY = "endpoints.json"
_MANAGED_BY = {"capstan.io/managed-by": "endpoints-controller"}
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - addresses read, not bound


class EndpointTarget(KubeModel):
    """One ready pod behind one Service port."""

    pod: str
    namespace: str
    node: str
    address: str
    host_port: int = Field(ge=1, le=65535)
    hostname: str | None = None
    """Set for a headless Service's pod whose ``subdomain`` is the Service: its own name."""


class EndpointsPort(KubeModel):
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: int
    node_port: int | None = None
    targets: list[EndpointTarget] = Field(default_factory=list)


class ServiceEndpoints(KubeModel):
    """A Service's ready endpoints, per Service port."""

    namespace: str
    name: str
    type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    ports: list[EndpointsPort] = Field(default_factory=list)

    def to_service_rule(self) -> ServiceRule:
        """What a node's proxy programs for this Service (``Sync.services``)."""
        return ServiceRule(
            namespace=self.namespace,
            name=self.name,
            type=self.type,
            cluster_ip=wire_cluster_ip(self.cluster_ip),
            ports=[
                ServicePortRule(
                    name=port.name,
                    protocol=port.protocol,
                    port=port.port,
                    node_port=port.node_port,
                    # An address a node reported that is not one never reaches the wire.
                    endpoints=[
                        Endpoint(address=t.address, port=t.host_port, hostname=t.hostname)
                        for t in port.targets
                        if node_address_problem(t.address) is None
                    ],
                )
                for port in self.ports
            ],
        )


def _serving(pod: Pod) -> bool:
    return (
        pod.spec.node_name is not None
        and pod.metadata.deletion_timestamp is None
        and pod.status is not None
        and pod.status.ready
    )


def node_address(node: Node | None) -> str | None:
    """Where a node is reached: its reported InternalIP, else its declared address."""
    if node is None:
        return None
    if node.status is not None:
        for address in node.status.addresses:
            if address.type == "InternalIP":
                return address.address
    return None if node.spec.is_local else node.spec.address


def _pod_hostname(service: Service, pod: Pod) -> str | None:
    """The per-pod name a headless Service gives ``pod`` (Kubernetes' rule: hostname set and
    subdomain equal to the Service's name), or None."""
    if service.spec.cluster_ip != "None" or pod.spec.subdomain != service.name:
        return None
    return pod.spec.hostname


def _target(
    pod: Pod,
    target_port: int | str,
    *,
    protocol: str,
    node: Node | None,
    hostname: str | None = None,
) -> EndpointTarget | None:
    container_port = pod.spec.port_number(target_port, protocol=protocol)
    if container_port is None:
        return None
    assert pod.spec.node_name is not None
    assert pod.status is not None
    address = node_address(node)
    if pod.spec.host_network:
        host_port = container_port
    else:
        mapping = next(
            (
                m
                for m in pod.status.host_ports
                if m.container_port == container_port and m.protocol == protocol
            ),
            None,
        )
        if mapping is None:
            return None
        host_port = mapping.host_port
        if mapping.host_ip not in _WILDCARDS:
            address = mapping.host_ip
    if address is None:
        return None
    return EndpointTarget(
        pod=pod.name,
        namespace=pod.namespace,
        node=pod.spec.node_name,
        address=address,
        host_port=host_port,
        hostname=hostname,
    )


def compute_endpoints(
    service: Service, pods: Iterable[Pod], *, nodes: Mapping[str, Node]
) -> ServiceEndpoints:
    """The Service's endpoints from the pods of its namespace and the nodes they run on."""
    selector = service.spec.selector
    serving = sorted(
        (
            pod
            for pod in pods
            if pod.namespace == service.namespace
            and selector
            and all(pod.labels.get(k) == v for k, v in selector.items())
            and _serving(pod)
        ),
        key=lambda p: p.name,
    )
    ports: list[EndpointsPort] = []
    for port in service.spec.ports:
        targets = []
        for pod in serving:
            assert pod.spec.node_name is not None
            target = _target(
                pod,
                port.target_port,
                protocol=port.protocol,
                node=nodes.get(pod.spec.node_name),
                hostname=_pod_hostname(service, pod),
            )
            if target is not None:
                targets.append(target)
        ports.append(
            EndpointsPort(
                name=port.name,
                protocol=port.protocol,
                port=port.port,
                node_port=port.node_port,
                targets=targets,
            )
        )
    return ServiceEndpoints(
        namespace=service.namespace,
        name=service.name,
        type=service.spec.proxy_type,
        cluster_ip=service.spec.cluster_ip,
        ports=ports,
    )


def endpoints_config_map_name(service_name: str) -> str:
    return f"{service_name}.endpoints"


def endpoints_config_map(service: Service, endpoints: ServiceEndpoints) -> ConfigMap:
    """The ConfigMap that stores ``endpoints`` (see the module docstring for why a ConfigMap)."""
    return ConfigMap(
        metadata=ObjectMeta(
            name=endpoints_config_map_name(service.name),
            namespace=service.namespace,
            labels={ENDPOINTS_LABEL: service.name},
            annotations=dict(_MANAGED_BY),
            owner_references=[
                OwnerReference(
                    api_version="v1",
                    kind="Service",
                    name=service.name,
                    uid=service.metadata.uid or "",
                    controller=True,
                )
            ],
        ),
        data={ENDPOINTS_DATA_KEY: _encode(endpoints)},
    )


def read_endpoints(config_map: ConfigMap) -> ServiceEndpoints | None:
    """The endpoints a ConfigMap written by this controller holds; None for any other."""
    if ENDPOINTS_LABEL not in config_map.labels or ENDPOINTS_DATA_KEY not in config_map.data:
        return None
    return ServiceEndpoints.model_validate_json(config_map.data[ENDPOINTS_DATA_KEY])


def _encode(endpoints: ServiceEndpoints) -> str:
    # Sorted keys and no whitespace: an unchanged set encodes to the same text, so a
    # reconcile that finds nothing new writes nothing.
    return json.dumps(
        endpoints.model_dump(mode="json", by_alias=True, exclude_none=True),
        sort_keys=True,
        separators=(",", ":"),
    )


class EndpointsController(Controller):
    name: ClassVar[str] = "endpoints"
    workers: ClassVar[int] = 2
    resync_period_s: ClassVar[float | None] = 30.0

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services = self.watch_own(Service)
        self.pods = self.watch(Pod, self._services_selecting)
        self.nodes = self.watch(Node, self._services_on_node)
        self.config_maps = self.watch(ConfigMap, self._service_of_config_map)

    # --- event mapping (which Services to look at) -----------------------------------------

    def _services_selecting(self, pod: Pod) -> list[ObjectKey]:
        return [
            svc.key
            for svc in self.services.list(namespace=pod.namespace)
            if svc.spec.selector
            and all(pod.labels.get(k) == v for k, v in svc.spec.selector.items())
        ]

    def _services_on_node(self, node: Node) -> list[ObjectKey]:
        keys: set[ObjectKey] = set()
        for pod in self.pods.by_index("node", node.name):
            keys.update(self._services_selecting(pod))
        return sorted(keys)

    def _service_of_config_map(self, config_map: ConfigMap) -> list[ObjectKey]:
        service = config_map.labels.get(ENDPOINTS_LABEL)
        return [ObjectKey("Service", config_map.namespace, service)] if service else []

    # --- reconcile ---------------------------------------------------------------------------

    def reconcile(self, key: ObjectKey) -> Result | None:
        service = self.services.get(key.name, namespace=key.namespace)
        cm_name = endpoints_config_map_name(key.name)
        existing = self.config_maps.get(cm_name, namespace=key.namespace)
        if existing is not None and ENDPOINTS_LABEL not in existing.labels:
            raise TerminalError(
                f"ConfigMap {key.namespace}/{cm_name} exists and is not managed by the "
                "endpoints controller; rename it so the Service's endpoints can be stored"
            )
        if service is None or not service.spec.selector:
            # Gone, or selector-less (its endpoints are not ours to compute, as in Kubernetes).
            if existing is not None:
                with contextlib.suppress(NotFound):
                    self.api.delete(
                        ConfigMap,
                        cm_name,
                        namespace=key.namespace,
                        resource_version=existing.metadata.resource_version,
                    )
            return None
        pods = self.pods.list(namespace=key.namespace)
        nodes = {
            name: node
            for name in {pod.spec.node_name for pod in pods if pod.spec.node_name}
            if (node := self.nodes.get(name)) is not None
        }
        endpoints = compute_endpoints(service, pods, nodes=nodes)
        desired = endpoints_config_map(service, endpoints)
        if existing is None:
            self.api.create(desired)
        elif (existing.data, existing.labels, existing.metadata.owner_references) != (
            desired.data,
            desired.labels,
            desired.metadata.owner_references,
        ):
            meta = existing.metadata.model_copy(
                update={
                    "labels": desired.metadata.labels,
                    "annotations": {**existing.metadata.annotations, **_MANAGED_BY},
                    "owner_references": desired.metadata.owner_references,
                }
            )
            self.api.update(existing.model_copy(update={"metadata": meta, "data": desired.data}))
        return None
