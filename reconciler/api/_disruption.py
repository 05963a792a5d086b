"""Whether evicting a pod keeps every PodDisruptionBudget that selects it (Kubernetes' Eviction).

Called by :meth:`reconciler.api.Api.evict` (the ``pods/eviction`` subresource over HTTP, and
``capstan node drain``) with the pod, the namespace's budgets and its pods. As in Kubernetes, a
budget counts the *healthy* pods it selects (Ready, not being deleted): with ``minAvailable``
the eviction is allowed while more than that many are healthy; with ``maxUnavailable`` while
fewer than that many of the expected pods are unhealthy or gone. The expected count is, as in
Kubernetes, the sum of the desired replicas of the selected pods' controllers (``replicas``
looks them up); when a pod has none, the count of selected pods. A percentage is of that
count and rounds up. A pod that is not
healthy itself may always be evicted (evicting it takes nothing that is up), as Kubernetes'
``unhealthyPodEvictionPolicy: AlwaysAllow``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from schemas import Pod
from schemas.policy import PodDisruptionBudget

__all__ = ["eviction_blocker"]


def _healthy(pod: Pod) -> bool:
    return (
        pod.metadata.deletion_timestamp is None
        and pod.status is not None
        and pod.status.phase == "Running"
        and pod.status.ready
    )


def _resolve(value: int | str, total: int) -> int:
    if isinstance(value, int):
        return value
    return math.ceil(int(value.rstrip("%")) * total / 100)


def _expected(selected: list[Pod], replicas: Callable[[str, str, str], int | None]) -> int:
    owners: set[tuple[str, str, str]] = set()
    for pod in selected:
        ref = next((r for r in pod.metadata.owner_references if r.controller), None)
        if ref is None:
            return len(selected)
        owners.add((ref.kind, pod.namespace, ref.name))
    counts = [replicas(*owner) for owner in sorted(owners)]
    if any(count is None for count in counts):
        return len(selected)
    return sum(count for count in counts if count is not None)


def eviction_blocker(
    pod: Pod,
    budgets: Iterable[PodDisruptionBudget],
    pods: Iterable[Pod],
    replicas: Callable[[str, str, str], int | None],
) -> str | None:
    """None when ``pod`` may be evicted now; else why not, naming the budget.
    ``replicas(kind, namespace, name)``: a controller's desired pod count, None if unknown."""
    if not _healthy(pod):
        return None
    pods = [p for p in pods if p.namespace == pod.namespace]
    for budget in budgets:
        selector = budget.spec.selector
        # A null selector selects nothing; an empty one every pod (policy/v1).
        if budget.namespace != pod.namespace or selector is None:
            continue
        if not selector.matches(pod.labels):
            continue
        selected = [p for p in pods if selector.matches(p.labels)]
        total = _expected(selected, replicas)
        healthy = sum(1 for p in selected if _healthy(p))
        if budget.spec.min_available is not None:
            desired = _resolve(budget.spec.min_available, total)
        elif budget.spec.max_unavailable is not None:
            desired = total - _resolve(budget.spec.max_unavailable, total)
        else:
            continue
        allowed = healthy - desired
        if allowed <= 0:
            return (
                f"Cannot evict pod as it would violate the pod's disruption budget "
                f"{budget.namespace}/{budget.name}: {healthy} healthy of {total}, "
                f"needs {desired}"
            )
    return None
