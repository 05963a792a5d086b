"""The namespace controller: finishes deleting a namespace by deleting everything in it.

``Api.delete(Namespace, ...)`` only marks a namespace Terminating (its finalizer holds it);
this controller then deletes the namespace's objects — workloads first, so their controllers
stop making more, then the rest and the namespace's Events — and, once nothing is left, removes
the finalizer, which completes the delete. The API refuses new objects in a terminating
namespace, so the emptying converges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from reconciler.api import NAMESPACE_FINALIZER, NotFound
from reconciler.controllers.runtime import Controller, ControllerContext, Result, TransientError
from schemas import (
    SUPPORTED_KINDS,
    Deployment,
    KubeObject,
    Namespace,
    ObjectKey,
    Pod,
    ReplicaSet,
    model_for,
)

__all__ = ["NAMESPACED_KINDS", "NamespaceController"]

_WORKLOADS: tuple[type[KubeObject], ...] = (Deployment, ReplicaSet, Pod)
#: Every namespaced kind the API serves, workloads first (owners before what they own, so
#: nothing is recreated meanwhile), then the rest in registry order.
NAMESPACED_KINDS: tuple[type[KubeObject], ...] = _WORKLOADS + tuple(
    model
    for model in (model_for(api_version, kind) for api_version, kind in SUPPORTED_KINDS)
    if model.NAMESPACED and model not in _WORKLOADS
)


class NamespaceController(Controller):
    name: ClassVar[str] = "namespace"
    workers: ClassVar[int] = 1

    def __init__(
        self, ctx: ControllerContext, *, kinds: Sequence[type[KubeObject]] = NAMESPACED_KINDS
    ) -> None:
        super().__init__(ctx)
        self.namespaces = self.watch_own(Namespace)
        self._kinds = tuple(kinds)

    def reconcile(self, key: ObjectKey) -> Result | None:
        ns = self.namespaces.get(key.name)
        if ns is None or ns.metadata.deletion_timestamp is None:
            return None
        remaining = 0
        for kind in self._kinds:
            for obj in self.api.list(kind, namespace=ns.name).items:
                try:
                    gone = self.api.delete(kind, obj.name, namespace=ns.name)
                except NotFound:
                    continue
                if gone.metadata.finalizers:
                    remaining += 1
        self.api.delete_events(namespace=ns.name)
        left = sum(len(self.api.list(kind, namespace=ns.name).items) for kind in self._kinds)
        if left or remaining:
            raise TransientError(
                f"namespace {ns.name}: {left} objects still being deleted", delay=1.0
            )
        try:
            fresh = self.api.get(Namespace, ns.name)
        except NotFound:
            return None
        finalizers = [f for f in fresh.metadata.finalizers if f != NAMESPACE_FINALIZER]
        if finalizers != fresh.metadata.finalizers:
            self.api.update(
                fresh.model_copy(
                    update={
                        "metadata": fresh.metadata.model_copy(update={"finalizers": finalizers})
                    }
                )
            )
        return None
