"""RollingUpdate: move replicas to the new ReplicaSet within maxSurge and maxUnavailable.

Called by the deployment controller (:mod:`reconciler.controllers.deployment._controller`)
for a Deployment with ``strategy.type: RollingUpdate`` (the default), as Kubernetes'
``rolling.go``: scale the new ReplicaSet up within the surge budget, then the old ones down
by what availability (pods Ready for ``minReadySeconds``) can spare, unavailable old pods
first. Returns whether it wrote anything (a write is progress; none means the rollout rests).
"""

from __future__ import annotations

from reconciler.controllers.deployment._view import PodView, ReplicaSetWrites
from schemas import Deployment, ReplicaSet, resolve_int_or_percent

__all__ = ["rolling_update"]


def rolling_update(
    writes: ReplicaSetWrites,
    d: Deployment,
    new_rs: ReplicaSet | None,
    old: list[ReplicaSet],
    view: PodView,
) -> bool:
    replicas = d.spec.replicas
    rolling = d.spec.strategy.rolling_update
    surge = resolve_int_or_percent(rolling.max_surge, replicas, round_up=True) if rolling else 0
    unavailable = (
        resolve_int_or_percent(rolling.max_unavailable, replicas, round_up=False) if rolling else 0
    )
    if surge == 0 and unavailable == 0:
        unavailable = 1  # Kubernetes' rule: a rollout must be able to move
    all_rss = ([new_rs] if new_rs else []) + old
    # Surge counts the larger of what is asked for and what exists: pods of a ReplicaSet
    # that was just scaled down are still there until its controller deletes them.
    total = max(sum(rs.spec.replicas for rs in all_rss), view.count(all_rss))
    if new_rs is None:
        initial = max(min(replicas + surge - total, replicas), 0)
        writes.ensure_new(d, None, old, replicas=initial)
        return True
    new_rs = writes.ensure_new(d, new_rs, old, replicas=new_rs.spec.replicas)
    # Scale the new ReplicaSet up within the surge budget (or down to the target).
    if new_rs.spec.replicas > replicas:
        writes.scale(d, new_rs, replicas)
        return True
    if new_rs.spec.replicas < replicas:
        step = min(replicas + surge - total, replicas - new_rs.spec.replicas)
        if step > 0:
            writes.scale(d, new_rs, new_rs.spec.replicas + step)
            return True
    return _scale_down_old(
        writes, d, new_rs, old, view, replicas=replicas, max_unavailable=unavailable
    )


def _scale_down_old(
    writes: ReplicaSetWrites,
    d: Deployment,
    new_rs: ReplicaSet,
    old: list[ReplicaSet],
    view: PodView,
    *,
    replicas: int,
    max_unavailable: int,
) -> bool:
    active_old = [rs for rs in old if rs.spec.replicas > 0]
    if not active_old:
        return False
    min_available = replicas - max_unavailable
    available = {rs.metadata.uid: view.available([rs]) for rs in [new_rs, *old]}
    all_spec = sum(rs.spec.replicas for rs in [new_rs, *old])
    new_unavailable = max(new_rs.spec.replicas - available[new_rs.metadata.uid], 0)
    budget = all_spec - min_available - new_unavailable
    if budget <= 0:
        return False
    targets: dict[str, int] = {rs.metadata.uid or "": rs.spec.replicas for rs in active_old}
    # First drop old pods that serve nobody (not available): removing them costs no
    # availability. The replicaset controller deletes not-ready pods first, which is what
    # makes this safe.
    cleaned = 0
    for rs in active_old:
        uid = rs.metadata.uid or ""
        unhealthy = targets[uid] - min(available[rs.metadata.uid], targets[uid])
        step = min(unhealthy, budget - cleaned)
        if step > 0:
            targets[uid] -= step
            cleaned += step
    # Then scale healthy old pods down by what availability can spare.
    total_available = sum(available.values())
    spare = total_available - min_available
    scaled = 0
    for rs in active_old:
        uid = rs.metadata.uid or ""
        step = min(targets[uid], spare - scaled, budget - cleaned - scaled)
        if step > 0:
            targets[uid] -= step
            scaled += step
    changed = False
    for rs in active_old:
        target = targets[rs.metadata.uid or ""]
        if target != rs.spec.replicas:
            writes.scale(d, rs, target)
            changed = True
    return changed
