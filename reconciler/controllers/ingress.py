"""The ingress controller: ``status.loadBalancer.ingress`` of every Ingress Capstan serves.

Watches Ingresses, IngressClasses and Nodes. Every node's agent serves the Ingresses of
Capstan's class (``schemas.networking.is_capstan_class``) on its HTTP/HTTPS ports (the
dispatcher sends them with each node's desired set), so an Ingress is reached at any Ready
node's address: those addresses, sorted, are its status, as k3s' ServiceLB does for
LoadBalancer Services. An Ingress of another class is left alone (its own controller owns its
status).
"""

from __future__ import annotations

from typing import ClassVar

from reconciler.api import Conflict, NotFound
from reconciler.controllers.runtime import Controller, ControllerContext, Result, TransientError
from reconciler.controllers.servicelb import ingress_addresses
from schemas import Node, ObjectKey
from schemas.networking import (
    Ingress,
    IngressClass,
    IngressLoadBalancerIngress,
    IngressLoadBalancerStatus,
    IngressStatus,
    is_capstan_class,
)

__all__ = ["IngressController"]


class IngressController(Controller):
    name: ClassVar[str] = "ingress"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.ingresses = self.watch_own(Ingress)
        self.classes = self.watch(IngressClass, self._every_ingress)
        self.nodes = self.watch(Node, self._every_ingress)

    def _every_ingress(self, _changed: object) -> list[ObjectKey]:
        return [ingress.key for ingress in self.ingresses.list()]

    def reconcile(self, key: ObjectKey) -> Result | None:
        self.await_own_writes(key)
        ingress = self.ingresses.get(key.name, namespace=key.namespace)
        if ingress is None:
            self.forget_writes(key)
            return None
        if not is_capstan_class(ingress, self.classes.list()):
            return None
        wanted = IngressLoadBalancerStatus(
            ingress=[
                IngressLoadBalancerIngress(ip=address)
                for address in ingress_addresses(self.nodes.list())
            ]
        )
        status = ingress.status or IngressStatus()
        if status.load_balancer == wanted:
            return None
        updated = ingress.model_copy(
            update={"status": status.model_copy(update={"load_balancer": wanted})}
        )
        try:
            written = self.api.update_status(updated)
        except NotFound:
            return None
        except Conflict as exc:
            raise TransientError(str(exc), delay=0.1) from exc
        self.note_write(key, self.ingresses, int(written.metadata.resource_version or 0))
        return None
