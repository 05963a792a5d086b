"""Pod Security admission: the API's check that a pod spec meets its namespace's level.

Called by :class:`reconciler.api.Api` on every create, and on every update that changes a
pod spec, of a Pod or any kind with a pod template (Deployment, ReplicaSet, DaemonSet,
StatefulSet, Job, CronJob), whoever writes it (the sync of a commit, a
controller, an HTTP client), after schema validation and before the store write. The
checks are :mod:`schemas.podsecurity`'s; the level is the stored Namespace's
``pod-security.kubernetes.io/enforce`` label. A refusal is :class:`Forbidden` (403), worded
as Kubernetes' PodSecurity admission words it, with one cause per offending field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.api._codec import field_path
from reconciler.api._errors import Cause, Forbidden
from schemas import KubeObject, Namespace
from schemas.podsecurity import check_pod_spec, describe, namespace_level, pod_spec_of

__all__ = ["admit", "pod_spec_changed"]


def pod_spec_changed(
    obj: KubeObject, stored: Mapping[str, Any], current: Mapping[str, Any]
) -> bool:
    """Whether an update of ``obj`` (``stored`` → over ``current``) changes its pod spec.

    As in Kubernetes, an update that leaves the pod spec alone (labels, replicas) is not
    checked again: tightening a namespace's level does not freeze its existing objects.
    """
    held = pod_spec_of(obj)
    if held is None:
        return False
    path, _spec = held
    return _at(stored, path) != _at(current, path)


def admit(obj: KubeObject, namespace: Namespace | None) -> None:
    """Raise :class:`Forbidden` if ``obj`` holds a pod spec its namespace's level forbids."""
    held = pod_spec_of(obj)
    if held is None:
        return
    path, spec = held
    level = namespace_level(namespace.metadata.labels if namespace is not None else None)
    violations = check_pod_spec(spec, level=level)
    if not violations:
        return
    kind = obj.kind
    raise Forbidden(
        f'{kind} "{obj.name}" is forbidden: {describe(violations, level=level)}',
        tuple(Cause(field_path((*path, *v.loc)), v.message(level)) for v in violations),
    )


def _at(document: Mapping[str, Any], path: tuple[str | int, ...]) -> object:
    value: object = document
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value
