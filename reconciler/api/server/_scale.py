"""The ``scale`` subresource of Deployments and ReplicaSets: an ``autoscaling/v1 Scale`` view
of ``spec.replicas`` (what ``kubectl scale`` and autoscalers read and write).

Called by the REST handler for ``.../deployments/{name}/scale`` (GET, PUT, PATCH): the Scale
is computed from the object, and a write becomes a change of the object's ``spec.replicas``
that goes through the same path as any PATCH — the Git-is-truth guard included, so scaling
a Deployment from Git is the same 409 as editing it.
"""

from __future__ import annotations

import copy
from typing import Any

from reconciler.api.server._status import HttpError

__all__ = ["SCALABLE_KINDS", "scale_document", "with_scale"]

#: Kinds with a ``scale`` subresource.
SCALABLE_KINDS = frozenset({"Deployment", "ReplicaSet"})


def _selector_text(selector: Any) -> str:
    labels = selector.get("matchLabels") if isinstance(selector, dict) else None
    terms = [f"{k}={v}" for k, v in sorted((labels or {}).items())]
    for expression in (selector or {}).get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(expression.get("values") or [])
        terms.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": str(key),
                "DoesNotExist": f"!{key}",
            }.get(operator, str(key))
        )
    return ",".join(terms)


def scale_document(obj: dict[str, Any]) -> dict[str, Any]:
    """The ``Scale`` of a Deployment or ReplicaSet (its JSON form)."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: metadata[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in metadata
        },
        "spec": {"replicas": int(spec.get("replicas", 1))},
        "status": {
            "replicas": int(status.get("replicas", 0)),
            "selector": _selector_text(spec.get("selector")),
        },
    }


def with_scale(obj: dict[str, Any], scale: Any) -> dict[str, Any]:
    """``obj`` with the ``spec.replicas`` of ``scale`` (a Scale's JSON form); a Scale that
    names a resourceVersion pins the write to it. A 422 for a Scale without a ``spec`` or
    with replicas that are not a non-negative integer."""
    spec = scale.get("spec") if isinstance(scale, dict) else None
    # Go's JSON form leaves replicas out when it is 0 (omitempty): a spec without it means 0.
    replicas = spec.get("replicas", 0) if isinstance(spec, dict) else None
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise HttpError(
            422,
            f"Scale is invalid: spec.replicas: must be a non-negative integer, got {replicas!r}",
            reason="Invalid",
        )
    updated = copy.deepcopy(obj)
    updated.setdefault("spec", {})["replicas"] = replicas
    pinned = (scale.get("metadata") or {}).get("resourceVersion")
    if pinned:
        updated.setdefault("metadata", {})["resourceVersion"] = pinned
    return updated
