"""Writing sub-resources: an object's status, and a pod's binding (controller-runtime's
StatusWriter and SubResourceWriter).

Part of :class:`reconciler.api.Api` (see :mod:`reconciler.api._core`).
"""

from __future__ import annotations

from typing import Any, Final

from reconciler.api._codec import (
    decode,
    encode,
    object_key,
)
from reconciler.api._core import (
    RETRIES,
    ApiCore,
    T,
    with_rv,
)
from reconciler.api._errors import (
    Conflict,
    NotFound,
    store_errors,
)
from reconciler.api.clock import now_utc
from reconciler.store import (
    Compare,
    Op,
    RangeResult,
)
from schemas import (
    Condition,
    Pod,
    PodStatus,
)

__all__ = ["StatusWriter"]

#: How :meth:`schemas.meta.KubeObject.to_dict` dumps an object, applied to its status alone.
_DUMP: Final[dict[str, Any]] = {"mode": "json", "by_alias": True, "exclude_none": True}


class StatusWriter(ApiCore):
    def update_status(self, obj: T) -> T:
        """Replace only ``status``; spec and metadata are kept. Stale resourceVersion →
        :class:`Conflict`. Nothing is written when the status is unchanged."""
        model = type(obj)
        meta = obj.metadata
        rv = self._required_rv({"resourceVersion": meta.resource_version})
        key = object_key(model, self._ns(model, meta.namespace), obj.name)
        current_kv, current = self._read_at(model, key, rv, {"name": obj.name})
        # Only the status is serialized, and the stored dict is copied one level deep: the
        # rest of it is read, never changed (a node's pod status reports come by thousands).
        status = getattr(obj, "status", None)
        new_status = None if status is None else status.model_dump(**_DUMP)
        data = dict(current)
        if new_status is None:
            data.pop("status", None)
        else:
            data["status"] = new_status
        validated = self._validate(model, data, what=f"{model.__name__} {key} status")
        if data == current:
            return with_rv(validated, current_kv.mod_revision)
        return self._replace(model, key, current_kv.mod_revision, current, validated)

    def bind(self, pod: Pod, node_name: str) -> Pod:
        """Assign a pod to a node (the Binding sub-resource): sets ``spec.nodeName`` and a
        ``PodScheduled=True`` condition in one txn guarded by the pod's resourceVersion. If the
        pod changed meanwhile but is still unbound, binds the fresh copy (no extra read in the
        common case). :class:`Conflict` if it is already bound, :class:`NotFound` if gone."""
        key = object_key(Pod, pod.namespace, pod.name)
        for _attempt in range(RETRIES):
            if pod.spec.node_name:
                raise Conflict(f"pod {pod.key} is already bound to {pod.spec.node_name}")
            status = pod.status or PodStatus()
            scheduled = Condition(
                type="PodScheduled",
                status="True",
                last_transition_time=now_utc(self._clock),
            )
            conditions = [c for c in status.conditions if c.type != "PodScheduled"]
            bound = pod.model_copy(
                update={
                    "spec": pod.spec.model_copy(update={"node_name": node_name}),
                    "status": status.model_copy(update={"conditions": [*conditions, scheduled]}),
                }
            )
            rv = int(pod.metadata.resource_version or 0)
            with store_errors():
                result = self._store.txn(
                    [Compare.mod_revision(key, "==", rv)],
                    [Op.put(key, encode(bound.to_dict()))],
                    [Op.range(key)],
                )
            if result.succeeded:
                return with_rv(bound, result.revision)
            fresh = result.responses[0]
            assert isinstance(fresh, RangeResult)
            if not fresh.kvs:
                raise NotFound(f"pod {pod.key} not found")
            latest = decode(Pod, fresh.kvs[0])
            if latest.metadata.uid != pod.metadata.uid:
                raise NotFound(f"pod {pod.key} was replaced by a new pod of the same name")
            pod = latest
        raise Conflict(f"pod {pod.key} kept changing while binding")
