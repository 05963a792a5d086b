"""The service load-balancer controller: node ports for NodePort and LoadBalancer Services, and
a LoadBalancer's address list, as k3s' ServiceLB serves ``type: LoadBalancer`` on bare hosts.

Watches Services and Nodes. For a Service of type NodePort or LoadBalancer, each port Git left
without ``nodePort`` gets the lowest free one of the node port range (free: no Service uses it
for that protocol), written into the Service's spec as Kubernetes' API server allocates it; the
sync engine keeps such server-filled values (``reconciler.diff``). Node proxies then serve the
port on every node (``ServiceSpec.proxy_type``). For a LoadBalancer Service,
``status.loadBalancer.ingress`` lists the addresses of the Ready nodes, sorted.

One worker: allocations are decided one Service at a time from a cache that already shows the
previous one's write, so two Services never take the same port.
"""

from __future__ import annotations

from typing import ClassVar

from reconciler.api import Conflict, NotFound
from reconciler.controllers.endpoints import node_address
from reconciler.controllers.runtime import Controller, ControllerContext, Result, TransientError
from schemas import LoadBalancerIngress, LoadBalancerStatus, Node, ObjectKey, Service
from schemas.core import NODE_PORT_RANGE, ServiceStatus

__all__ = ["ServiceLoadBalancerController", "free_node_ports", "ingress_addresses"]

_CACHE_WAIT_S = 5.0


def free_node_ports(service: Service, services: list[Service]) -> dict[int, int]:
    """Port index → node port for each port of ``service`` that needs one and has none."""
    if service.spec.proxy_type != "NodePort":
        return {}
    taken = {
        (port.node_port, port.protocol)
        for other in services
        if other.key != service.key
        for port in other.spec.ports
        if port.node_port is not None
    }
    taken.update((port.node_port, port.protocol) for port in service.spec.ports if port.node_port)
    chosen: dict[int, int] = {}
    for index, port in enumerate(service.spec.ports):
        if port.node_port is not None:
            continue
        number = next((n for n in NODE_PORT_RANGE if (n, port.protocol) not in taken), None)
        if number is None:
            raise TransientError("the node port range is exhausted", delay=30.0)
        taken.add((number, port.protocol))
        chosen[index] = number
    return chosen


def ingress_addresses(nodes: list[Node]) -> list[str]:
    """The addresses a LoadBalancer Service answers on: every Ready node's, sorted."""
    addresses = set()
    for node in nodes:
        ready = node.status.condition("Ready") if node.status is not None else None
        address = node_address(node)
        if ready is not None and ready.status == "True" and address is not None:
            addresses.add(address)
    return sorted(addresses)


class ServiceLoadBalancerController(Controller):
    name: ClassVar[str] = "servicelb"
    workers: ClassVar[int] = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services = self.watch_own(Service)
        self.nodes = self.watch(Node, self._load_balancers)

    def _load_balancers(self, _node: Node) -> list[ObjectKey]:
        return [s.key for s in self.services.list() if s.spec.type == "LoadBalancer"]

    def reconcile(self, key: ObjectKey) -> Result | None:
        self.await_own_writes(key)
        service = self.services.get(key.name, namespace=key.namespace)
        if service is None:
            self.forget_writes(key)
            return None
        chosen = free_node_ports(service, self.services.list())
        if chosen:
            ports = [
                port.model_copy(update={"node_port": chosen[i]}) if i in chosen else port
                for i, port in enumerate(service.spec.ports)
            ]
            spec = service.spec.model_copy(update={"ports": ports})
            service = self._write(key, service.model_copy(update={"spec": spec}), status=False)
            if service is None:
                return None
        if service.spec.type == "LoadBalancer":
            wanted = LoadBalancerStatus(
                ingress=[LoadBalancerIngress(ip=a) for a in ingress_addresses(self.nodes.list())]
            )
            status = service.status or ServiceStatus()
            if status.load_balancer != wanted:
                updated = status.model_copy(update={"load_balancer": wanted})
                self._write(key, service.model_copy(update={"status": updated}), status=True)
        return None

    def _write(self, key: ObjectKey, service: Service, *, status: bool) -> Service | None:
        try:
            written = self.api.update_status(service) if status else self.api.update(service)
        except NotFound:
            return None
        except Conflict as exc:
            raise TransientError(str(exc), delay=0.1) from exc
        revision = int(written.metadata.resource_version or 0)
        self.note_write(key, self.services, revision)
        # The next Service's allocation reads this one's ports from the cache.
        if not self.services.wait_for_revision(revision, _CACHE_WAIT_S):
            raise TransientError("Service cache is behind this controller's writes", delay=0.1)
        return written
