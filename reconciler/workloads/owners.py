"""Which object controls which: the controller owner reference and the keys it wakes.

Used by the controllers' watch mappings (a ReplicaSet's event wakes its Deployment, a pod's
event the Deployment of its ReplicaSet) and by the auto-rollback, which watches the same
objects from the sync side. Pure functions over ``schemas`` models.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from schemas import KubeObject, ObjectKey, OwnerReference, Pod, ReplicaSet

__all__ = ["controller_ref", "deployment_keys_of_pod", "owner_keys"]


def controller_ref(obj: KubeObject) -> OwnerReference | None:
    return next((ref for ref in obj.metadata.owner_references if ref.controller), None)


def owner_keys(obj: KubeObject, kind: str) -> Iterable[ObjectKey]:
    ref = controller_ref(obj)
    if ref is not None and ref.kind == kind:
        yield ObjectKey(kind, obj.namespace, ref.name)


class _ReplicaSets(Protocol):
    def get(self, name: str, *, namespace: str | None = None) -> ReplicaSet | None: ...


def deployment_keys_of_pod(replicasets: _ReplicaSets, pod: Pod) -> Iterable[ObjectKey]:
    """The Deployment owning the ReplicaSet that owns ``pod`` (a pod's change wakes it)."""
    for rs_key in owner_keys(pod, "ReplicaSet"):
        rs = replicasets.get(rs_key.name, namespace=rs_key.namespace)
        if rs is not None:
            yield from owner_keys(rs, "Deployment")
