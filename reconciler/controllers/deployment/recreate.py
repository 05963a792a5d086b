"""Recreate: every old pod gone before the new ReplicaSet gets any.

Called by the deployment controller (:mod:`reconciler.controllers.deployment._controller`)
for a Deployment with ``strategy.type: Recreate``, as Kubernetes' ``recreate.go``: scale the
old ReplicaSets to zero, wait until their pods are gone (their deletions wake the
Deployment), then create or scale the new one. Returns whether it wrote anything.
"""

from __future__ import annotations

from reconciler.controllers.deployment._view import PodView, ReplicaSetWrites
from schemas import Deployment, ReplicaSet

__all__ = ["recreate"]


def recreate(
    writes: ReplicaSetWrites,
    d: Deployment,
    new_rs: ReplicaSet | None,
    old: list[ReplicaSet],
    view: PodView,
) -> bool:
    running_old = [rs for rs in old if rs.spec.replicas > 0]
    for rs in running_old:
        writes.scale(d, rs, 0)
    if running_old:
        return True
    if view.count(old) > 0:
        return False  # wait for the old pods to be gone; their deletions wake us
    if new_rs is None:
        writes.ensure_new(d, None, old, replicas=d.spec.replicas)
        return True
    new_rs = writes.ensure_new(d, new_rs, old, replicas=new_rs.spec.replicas)
    if new_rs.spec.replicas != d.spec.replicas:
        writes.scale(d, new_rs, d.spec.replicas)
        return True
    return False
