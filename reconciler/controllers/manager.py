"""The controller manager: runs every controller (and the scheduler) on one API.

What ``capstan`` starts for the control plane: one :class:`~reconciler.api.Api`, one shared set
of informers, one clock, and the components listed in :func:`default_components`. Start order
matters: every component is built first (so its informers and handlers exist before the first
list), then the informers start and sync, then the components' workers start — a controller
never reconciles against a half-filled cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TypeVar

from reconciler.api import Api, Clock
from reconciler.controllers.cronjob import CronJobController
from reconciler.controllers.daemonset import DaemonSetController
from reconciler.controllers.deployment import DeploymentController
from reconciler.controllers.endpoints import EndpointsController
from reconciler.controllers.gc import GarbageCollector
from reconciler.controllers.ingress import IngressController
from reconciler.controllers.job import JobController
from reconciler.controllers.namespace import NamespaceController
from reconciler.controllers.node import NodeController
from reconciler.controllers.replicaset import ReplicaSetController
from reconciler.controllers.runtime import (
    Component,
    ComponentFactory,
    ControllerContext,
    InformerFactory,
    MemoryTrimmer,
)
from reconciler.controllers.serviceaccount import ServiceAccountController
from reconciler.controllers.servicelb import ServiceLoadBalancerController
from reconciler.controllers.statefulset import StatefulSetController
from reconciler.scheduler import Scheduler

__all__ = ["ControllerManager", "default_components"]

C = TypeVar("C")


def default_components() -> list[ComponentFactory]:
    """Everything the control plane runs. Add a component by adding its factory here (a class
    taking the context; pass options with ``functools.partial``)."""
    return [
        DeploymentController,
        ReplicaSetController,
        JobController,
        CronJobController,
        DaemonSetController,
        StatefulSetController,
        ServiceAccountController,
        NamespaceController,
        GarbageCollector,
        NodeController,
        EndpointsController,
        ServiceLoadBalancerController,
        IngressController,
        Scheduler,
        MemoryTrimmer,
    ]


class ControllerManager:
    def __init__(
        self,
        api: Api,
        *,
        clock: Clock | None = None,
        components: Sequence[ComponentFactory] | None = None,
    ) -> None:
        self.ctx = ControllerContext(api, InformerFactory(api), clock or api.clock)
        self._factories = list(components) if components is not None else default_components()
        self.components: list[Component] = []

    def start(self, *, sync_timeout_s: float = 30.0) -> None:
        self.components = [factory(self.ctx) for factory in self._factories]
        self.ctx.informers.start()
        if not self.ctx.informers.wait_synced(sync_timeout_s):
            self.ctx.informers.stop()
            raise TimeoutError(f"informers did not sync within {sync_timeout_s}s")
        for component in self.components:
            component.start()

    def stop(self) -> None:
        # Components first: their workers read the informers until they are gone.
        for component in reversed(self.components):
            component.stop()
        self.ctx.informers.stop()

    def component(self, kind: type[C]) -> C:
        """The running component of a type (tests and the CLI look inside)."""
        for component in self.components:
            if isinstance(component, kind):
                return component
        raise LookupError(f"no {kind.__name__} in this manager")

    def __enter__(self) -> ControllerManager:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
