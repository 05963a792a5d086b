"""The endpoints controller: for every Service, its ready pods as (node address, host port, pod).

Sits between the pods' status (written by agents: Ready condition, ``status.hostPorts``) and
the node proxies: whoever builds a node's ``Sync`` turns each Service's endpoints into a
``schemas.protocol.ServiceRule`` with :meth:`ServiceEndpoints.to_service_rule`.

For a Service with a selector, an endpoint is a pod in its namespace that matches the selector,
is bound to a node, is not being deleted and is Ready (or, when the Service sets
``publishNotReadyAddresses``, has not finished: Running or Pending, as Kubernetes' endpoints
controller takes it). For each Service port, ``targetPort``
is resolved (a number, or a container port *name* looked up in the pod, per protocol) to a
container port, which maps to the host port the agent published for it (``status.hostPorts``;
on the host network, the container port itself). The address is the host IP of that mapping
when it is a specific one, else the node's address (InternalIP, then ``spec.address``). A pod
that published nothing for a port is no endpoint of that port: the proxy could not reach it.

Where they are stored (a ConfigMap ``<service>.endpoints`` per Service) and how they are read
back is :mod:`reconciler.workloads.endpoints`. A ConfigMap of that name *without* the
endpoints label is a user's: the controller never overwrites it and reports the collision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import ClassVar

from reconciler.api import NotFound
from reconciler.controllers.runtime import (
    Controller,
    ControllerContext,
    InformerEvent,
    Result,
    TerminalError,
)
from reconciler.workloads.endpoints import (
    ENDPOINTS_DATA_KEY,
    ENDPOINTS_LABEL,
    ENDPOINTS_MANAGED_BY,
    EndpointsPort,
    EndpointTarget,
    ServiceEndpoints,
    endpoints_config_map,
    endpoints_config_map_name,
    read_endpoints,
)
from schemas import ConfigMap, Node, ObjectKey, Pod, Service

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

_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - addresses read, not bound

#: The Pod informer's index of each pod's labels, one value per ``namespace/key=value``.
_BY_LABEL = "endpoints-label"


def _pod_labels(pod: Pod) -> list[str]:
    return [_label_value(pod.namespace, k, v) for k, v in pod.labels.items()]


def _label_value(namespace: str, key: str, value: str) -> str:
    return f"{namespace}/{key}={value}"


def _serving(pod: Pod, *, publish_not_ready: bool = False) -> bool:
    return (
        pod.spec.node_name is not None
        and pod.metadata.deletion_timestamp is None
        and pod.status is not None
        and (
            pod.status.ready
            or (publish_not_ready and pod.status.phase not in ("Succeeded", "Failed"))
        )
    )


def _endpoint_view(pod: Pod) -> tuple[object, ...]:
    """All that :func:`compute_endpoints` reads of a pod (its Node's address aside)."""
    status = pod.status
    return (
        pod.labels,
        pod.spec,
        pod.metadata.deletion_timestamp is None,
        status is not None and status.ready,
        status.phase if status is not None else None,
        status.host_ports if status is not None else None,
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
            and _serving(pod, publish_not_ready=service.spec.publish_not_ready_addresses)
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


class EndpointsController(Controller):
    name: ClassVar[str] = "endpoints"
    workers: ClassVar[int] = 2
    #: Every input (Services, Pods, Nodes, the endpoints ConfigMaps) is watched, and an
    #: informer relists rather than lose an event: the resync is a rare safety net (each
    #: one recomputes every Service over its pods), as in Kubernetes, where it is hours.
    resync_period_s: ClassVar[float | None] = 600.0

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services = self.watch_own(Service)
        self.pods = self.watch_events(Pod, self._on_pod)
        # A reconcile reads the pods its Service selects, not every pod of the namespace:
        # each pod's Ready change reconciles its Service, and a rollout has thousands.
        self.pods.add_index(_BY_LABEL, _pod_labels)
        self.nodes = self.watch_events(Node, self._on_node)
        self.config_maps = self.watch(ConfigMap, self._service_of_config_map)

    # --- event mapping (which Services to look at) -----------------------------------------

    def _services_selecting(self, pod: Pod) -> list[ObjectKey]:
        return [
            svc.key
            for svc in self.services.list(namespace=pod.namespace)
            if svc.spec.selector
            and all(pod.labels.get(k) == v for k, v in svc.spec.selector.items())
        ]

    def _on_pod(self, event: InformerEvent[Pod]) -> None:
        for key in self.pods_to_wake(event):
            self.queue.add(key)

    def pods_to_wake(self, event: InformerEvent[Pod]) -> list[ObjectKey]:
        """The Services to reconcile for a Pod event: those selecting the pod before or
        after it, unless nothing an endpoint reads of the pod changed.

        Agents rewrite a pod's status for much that no endpoint reads (a container's
        restart count, a condition's reason or time, the pod's start time), and each wake
        recomputes the Service over all of its pods."""
        old = event.old
        if old is None:
            return self._services_selecting(event.object)
        if event.type == "MODIFIED" and _endpoint_view(old) == _endpoint_view(event.object):
            return []
        keys = {*self._services_selecting(event.object), *self._services_selecting(old)}
        return sorted(keys)

    def _selected_pods(self, namespace: str, selector: Mapping[str, str]) -> list[Pod]:
        """The pods of ``namespace`` that carry every label of ``selector`` (not empty): the
        label index gives those carrying its first pair, which are checked for the rest."""
        (key, value), *rest = selector.items()
        return [
            pod
            for pod in self.pods.by_index(_BY_LABEL, _label_value(namespace, key, value))
            if all(pod.labels.get(k) == v for k, v in rest)
        ]

    def _on_node(self, event: InformerEvent[Node]) -> None:
        for key in self.services_to_wake(event):
            self.queue.add(key)

    def services_to_wake(self, event: InformerEvent[Node]) -> list[ObjectKey]:
        """The Services to reconcile for a Node event: those selecting a pod on the node,
        unless the node's address (all an endpoint reads of its Node) stayed the same.

        A node's status is written for its conditions and reports far more often than its
        address changes, and each wake recomputes every Service of its pods over all of
        their pods (every node's, so the cost grows with the fleet twice)."""
        if event.type == "MODIFIED" and (
            event.old is not None and node_address(event.old) == node_address(event.object)
        ):
            return []
        return self._services_on_node(event.object)

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
        # The ConfigMap cache must show this Service's last write before it is compared
        # with: from a cache without it, the same endpoints are written again against a
        # stale resourceVersion, and every Conflict's retry (with a backoff that grows to
        # minutes) reconciles the Service again long after the pods have settled.
        self.await_own_writes(key)
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
            self.forget_writes(key)
            if existing is not None:
                with contextlib.suppress(NotFound):
                    self.api.delete(
                        ConfigMap,
                        cm_name,
                        namespace=key.namespace,
                        resource_version=existing.metadata.resource_version,
                    )
            return None
        pods = self._selected_pods(key.namespace, service.spec.selector)
        nodes = {
            name: node
            for name in {pod.spec.node_name for pod in pods if pod.spec.node_name}
            if (node := self.nodes.get(name)) is not None
        }
        endpoints = compute_endpoints(service, pods, nodes=nodes)
        desired = endpoints_config_map(service, endpoints)
        if existing is None:
            written = self.api.create(desired)
        elif (existing.data, existing.labels, existing.metadata.owner_references) != (
            desired.data,
            desired.labels,
            desired.metadata.owner_references,
        ):
            meta = existing.metadata.model_copy(
                update={
                    "labels": desired.metadata.labels,
                    "annotations": {**existing.metadata.annotations, **ENDPOINTS_MANAGED_BY},
                    "owner_references": desired.metadata.owner_references,
                }
            )
            written = self.api.update(
                existing.model_copy(update={"metadata": meta, "data": desired.data})
            )
        else:
            return None
        self.note_write(key, self.config_maps, int(written.metadata.resource_version or 0))
        return None
