"""The garbage collector: deletes objects whose owners are all gone.

Watches every kind. An object with ``ownerReferences`` is checked when it changes, and all of an
owner's dependents are checked when the owner is deleted (an index by owner uid). An owner
counts as present only if an object of that kind and name exists *with the referenced uid* — a
new object reusing the name is not the owner. Before deleting, the owner's absence is confirmed
with a live read (the cache may not yet show a just-created owner), and the delete carries the
dependent's resourceVersion as a precondition, so an object that was just re-owned survives.
Deletion is background propagation: dependents of dependents follow in later rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from reconciler.api import NotFound
from reconciler.controllers.runtime import (
    Controller,
    ControllerContext,
    Informer,
    InformerEvent,
    Result,
)
from schemas import (
    SUPPORTED_KINDS,
    KubeObject,
    ObjectKey,
    OwnerReference,
    UnsupportedKindError,
    model_for,
)

__all__ = ["ALL_KINDS", "GarbageCollector"]

#: Every kind the API serves: any of them may own or be owned.
ALL_KINDS: tuple[type[KubeObject], ...] = tuple(
    model_for(api_version, kind) for api_version, kind in SUPPORTED_KINDS
)
_BY_OWNER = "any-owner-uid"


class GarbageCollector(Controller):
    name: ClassVar[str] = "garbage-collector"
    workers: ClassVar[int] = 2
    #: Every owned object is checked again this often, a safety net only: the events above
    #: check each one that changes and every dependent of an owner deleted (Kubernetes'
    #: garbage collector has no periodic pass at all). Each pass visits every pod of the fleet.
    resync_period_s: ClassVar[float | None] = 300.0

    def __init__(
        self, ctx: ControllerContext, *, kinds: Sequence[type[KubeObject]] = ALL_KINDS
    ) -> None:
        super().__init__(ctx)
        self._informers: dict[str, Informer[Any]] = {}
        for kind in kinds:
            informer = self.watch_events(kind, self._on_event)
            informer.add_index(
                _BY_OWNER, lambda obj: [ref.uid for ref in obj.metadata.owner_references]
            )
            self._informers[kind.__name__] = informer

    def _on_event(self, event: InformerEvent[Any]) -> None:
        obj: KubeObject = event.object
        if event.type == "DELETED":
            for key in self._dependents(obj.metadata.uid or ""):
                self.queue.add(key)
        elif obj.metadata.owner_references:
            self.queue.add(obj.key)

    def _dependents(self, uid: str) -> list[ObjectKey]:
        return [
            dependent.key
            for informer in self._informers.values()
            for dependent in informer.by_index(_BY_OWNER, uid)
        ]

    def resync(self) -> None:
        for informer in self._informers.values():
            for obj in informer.list():
                if obj.metadata.owner_references:
                    self.queue.add(obj.key)

    def reconcile(self, key: ObjectKey) -> Result | None:
        informer = self._informers.get(key.kind)
        if informer is None:
            return None
        obj: KubeObject | None = informer.get(key.name, namespace=key.namespace or None)
        if obj is None or not obj.metadata.owner_references:
            return None
        if any(self._owner_exists(obj, ref) for ref in obj.metadata.owner_references):
            return None
        try:
            self.api.delete(
                type(obj),
                obj.name,
                namespace=obj.namespace or None,
                resource_version=obj.metadata.resource_version,
            )
        except NotFound:
            return None
        return None

    def _owner_exists(self, obj: KubeObject, ref: OwnerReference) -> bool:
        try:
            model = model_for(ref.api_version, ref.kind)
        except UnsupportedKindError:
            return True  # an owner we cannot look up is never assumed gone
        namespace = obj.namespace if model.NAMESPACED else None
        informer = self._informers.get(ref.kind)
        if informer is not None:
            cached = informer.get(ref.name, namespace=namespace)
            if cached is not None and cached.metadata.uid == ref.uid:
                return True
        try:
            live = self.api.get(model, ref.name, namespace=namespace)
        except NotFound:
            return False
        return live.metadata.uid == ref.uid
