"""Writing objects: create, update and delete (controller-runtime's Writer).

Part of :class:`reconciler.api.Api` (see :mod:`reconciler.api._core`). Every write is one store
transaction guarded by a compare, so concurrent writers never overwrite each other silently.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any, overload

from reconciler.api import _podsecurity, _tokens
from reconciler.api._codec import (
    decode,
    encode,
    object_key,
)
from reconciler.api._core import (
    NAMESPACE_FINALIZER,
    RETRIES,
    SYSTEM_NAMESPACES,
    T,
    at_revision,
    check_immutable,
    random_suffix,
    spec_part,
    with_rv,
)
from reconciler.api._disruption import eviction_blocker
from reconciler.api._errors import (
    AlreadyExists,
    Conflict,
    DisruptionBudgetExceeded,
    Forbidden,
    NotFound,
    store_errors,
)
from reconciler.api._reader import Reader
from reconciler.api._service_ips import check_cluster_ip
from reconciler.api._types import (
    StoredObject,
)
from reconciler.api.clock import now_utc
from reconciler.store import (
    Compare,
    KeyValue,
    Op,
    RangeResult,
)
from schemas import (
    KubeObject,
    Namespace,
    Pod,
    Service,
    model_for,
)
from schemas.policy import PodDisruptionBudget

__all__ = ["Writer"]


class Writer(Reader):
    # -- writes ----------------------------------------------------------------------------

    @overload
    def create(self, obj: T) -> T: ...
    @overload
    def create(self, obj: Mapping[str, Any]) -> KubeObject: ...

    def create(self, obj: KubeObject | Mapping[str, Any]) -> KubeObject:
        """Store a new object. Sets uid, creationTimestamp, generation 1 and resourceVersion;
        fills ``metadata.name`` from ``generateName`` plus 5 random characters. Raises
        :class:`Invalid`, :class:`AlreadyExists`, :class:`NotFound` (no such namespace) or
        :class:`Forbidden` (the namespace is terminating)."""
        data = obj.to_dict() if isinstance(obj, KubeObject) else copy.deepcopy(dict(obj))
        model = self._model(data)
        meta: dict[str, Any] = dict(data.get("metadata") or {})
        data["metadata"] = meta
        generated = not meta.get("name") and bool(meta.get("generateName"))
        for _attempt in range(RETRIES):
            if generated:
                meta["name"] = f"{meta['generateName']}{random_suffix()}"
            try:
                return self._create_once(model, data)
            except AlreadyExists:
                if not generated:
                    raise
        raise AlreadyExists(f"no free name for generateName {meta.get('generateName')!r}")

    def _create_once(self, model: type[KubeObject], data: dict[str, Any]) -> KubeObject:
        meta = data["metadata"]
        if model.NAMESPACED and not meta.get("namespace"):
            meta["namespace"] = "default"
        for server_set in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(server_set, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_utc(self._clock).isoformat()
        meta["generation"] = 1
        if model is Namespace:
            meta["finalizers"] = sorted({*meta.get("finalizers", ()), NAMESPACE_FINALIZER})
            data["status"] = {"phase": "Active"}
        validated = self._validate(model, data, what=f"{model.__name__} {meta.get('name')!r}")
        if isinstance(validated, Service) and validated.spec.cluster_ip:
            check_cluster_ip(validated, self.list(Service).items)
        stored = validated.to_dict()
        key = object_key(model, validated.namespace, validated.name)
        for _attempt in range(RETRIES):
            compares = [Compare.version(key, "==", 0)]
            if model.NAMESPACED:
                guard, namespace = self._namespace_guard(validated.namespace)
                compares.append(guard)
                # Judged against the namespace the txn's compare pins: a level changed in
                # between fails the compare and the pod is judged again.
                _podsecurity.admit(validated, namespace)
            success = [Op.put(key, encode(stored)), *_tokens.index_ops(None, stored)]
            with store_errors():
                result = self._store.txn(compares, success, [Op.range(key)])
            if result.succeeded:
                return with_rv(validated, result.revision)
            existing = result.responses[0]
            assert isinstance(existing, RangeResult)
            if existing.kvs:
                raise AlreadyExists(f"{model.__name__} {validated.key} already exists")
            # The namespace changed between our read and the txn: look again.
        raise Conflict(f"namespace {validated.namespace!r} kept changing; retry")

    def _namespace_guard(self, namespace: str) -> tuple[Compare, Namespace]:
        ns_key = object_key(Namespace, "", namespace)
        with store_errors():
            kv = self._store.get(ns_key)
        if kv is None:
            raise NotFound(f"namespace {namespace!r} not found")
        ns = decode(Namespace, kv)
        if ns.metadata.deletion_timestamp is not None:
            raise Forbidden(f"namespace {namespace!r} is being terminated")
        return Compare.mod_revision(ns_key, "==", kv.mod_revision), ns

    def _namespace(self, namespace: str) -> Namespace | None:
        with store_errors():
            kv = self._store.get(object_key(Namespace, "", namespace))
        return None if kv is None else decode(Namespace, kv)

    @overload
    def update(self, obj: T) -> T: ...
    @overload
    def update(self, obj: Mapping[str, Any]) -> KubeObject: ...

    def update(self, obj: KubeObject | Mapping[str, Any]) -> KubeObject:
        """Replace spec and metadata; status is kept. ``metadata.resourceVersion`` must be the
        one read: a stale one raises :class:`Conflict`. ``generation`` bumps only when the
        spec changes; an update that changes nothing writes nothing. Removing the last
        finalizer of an object being deleted completes the delete."""
        data = obj.to_dict() if isinstance(obj, KubeObject) else copy.deepcopy(dict(obj))
        updated = self.update_document(data)
        return with_rv(updated.obj, updated.revision)

    def update_document(
        self,
        data: dict[str, Any],
        *,
        check_current: Callable[[Mapping[str, Any]], None] | None = None,
        recent: KeyValue | None = None,
    ) -> StoredObject:
        """:meth:`update` for a caller that hands over a freshly parsed document (the HTTP
        server): ``data`` is taken over and changed in place, and the result carries the
        stored bytes, so the caller can answer without encoding the object again.
        ``check_current(current)`` sees the stored object (its dict, no resourceVersion)
        before anything is merged; it may refuse by raising, or edit ``data`` (it may run
        twice). ``recent`` is a copy of the object from a watch cache: when it is at the
        requested resourceVersion it stands in for the store read, and the write's
        compare-and-swap confirms it was current (if not, the store is read and the update
        runs again, so every outcome is the one a store read would have given).

        WHY a second entry point: on the HTTP server's PUT path, ``update``'s defensive copy,
        its repeated model-to-dict conversions, a second read for the labels and a second
        encoding of the result cost more than the store write; this one does each once and
        lets a watch cache's copy stand in for the store read."""
        model = self._model(data)
        meta: dict[str, Any] = dict(data.get("metadata") or {})
        data["metadata"] = meta
        key = object_key(model, self._ns(model, meta.get("namespace")), str(meta.get("name")))
        rv_text = str(meta.get("resourceVersion") or "")
        if recent is not None and recent.key == key and rv_text == str(recent.mod_revision):
            try:
                written = self._update_at(model, key, data, recent, check_current, confirmed=False)
            except Exception:
                # A refusal judged on a copy that may be stale (invalid against it, managed
                # by Git in it) could be the wrong one, or in the wrong order: the path
                # below refuses again, in order, if the store agrees.
                written = None
            if written is not None:
                return written
        with store_errors():
            current_kv = self._store.get(key)
        if current_kv is not None and check_current is not None:
            check_current(json.loads(current_kv.value))
        # The order of the refusals is the API's contract: no resourceVersion (422) before
        # no such object (404) before a stale resourceVersion (409).
        rv = self._required_rv(data["metadata"])
        current_kv = at_revision(model, key, current_kv, rv, meta.get("name"))
        written = self._update_at(model, key, data, current_kv, None, confirmed=True)
        if written is None:
            raise Conflict(f"{model.__name__} {key} was modified; re-read and retry")
        return written

    def _update_at(
        self,
        model: type[KubeObject],
        key: str,
        data: dict[str, Any],
        current_kv: KeyValue,
        check_current: Callable[[Mapping[str, Any]], None] | None,
        *,
        confirmed: bool,
    ) -> StoredObject | None:
        """Merge ``data`` over ``current_kv`` and write it if the key is still at that
        revision; None if it is not (or, for an unconfirmed copy, if nothing would change:
        only the store can say whether "no change" is still true). ``data`` keeps the
        resourceVersion it was sent with, so a caller can run this again over a fresher
        copy."""
        current: dict[str, Any] = json.loads(current_kv.value)
        if check_current is not None:
            check_current(current)
        meta: dict[str, Any] = data["metadata"]
        cur_meta = current["metadata"]
        for immutable in (
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generateName",
        ):
            if immutable in cur_meta:
                meta[immutable] = cur_meta[immutable]
            else:
                meta.pop(immutable, None)
        if "status" in current:
            data["status"] = current["status"]
        else:
            data.pop("status", None)
        if spec_part(data) != spec_part(current):
            meta["generation"] = int(cur_meta.get("generation", 1)) + 1
        # Validated without the resourceVersion (the key's revision, never stored), which
        # goes back into ``data`` for a second run.
        sent_rv = meta.pop("resourceVersion", None)
        try:
            validated = self._validate(model, data, what=f"{model.__name__} {key}")
        finally:
            if sent_rv is not None:
                meta["resourceVersion"] = sent_rv
        stored = validated.to_dict()
        check_immutable(model, current, stored)
        if (
            isinstance(validated, Service)
            and validated.spec.cluster_ip
            and (validated.spec.cluster_ip != current.get("spec", {}).get("clusterIP"))
        ):
            check_cluster_ip(validated, self.list(Service).items)
        if _podsecurity.pod_spec_changed(validated, stored, current):
            _podsecurity.admit(validated, self._namespace(validated.namespace))
        if stored == current:
            if not confirmed:
                return None
            return StoredObject(validated, current_kv.value, current_kv.mod_revision)
        committed = self._commit(key, current_kv.mod_revision, current, stored)
        if committed is None:
            return None
        value, revision = committed
        return StoredObject(validated, value, revision)

    def evict(self, name: str, *, namespace: str | None = None) -> Pod:
        """Delete a pod unless that breaks a PodDisruptionBudget selecting it (Kubernetes'
        Eviction, ``pods/eviction``): :class:`DisruptionBudgetExceeded` then, and nothing
        changes. Returns the pod's last state; :class:`NotFound` if it is gone."""
        pod = self.get(Pod, name, namespace=namespace)
        budgets = self.list(PodDisruptionBudget, namespace=pod.namespace).items
        if budgets:
            pods = self.list(Pod, namespace=pod.namespace).items
            blocker = eviction_blocker(pod, budgets, pods, self._desired_replicas)
            if blocker is not None:
                raise DisruptionBudgetExceeded(blocker)
        # Guarded by the version read: a pod changed meanwhile (turned unready) is judged again.
        return self.delete(
            Pod, name, namespace=pod.namespace, resource_version=pod.metadata.resource_version
        )

    def _desired_replicas(self, kind: str, namespace: str, name: str) -> int | None:
        """The pod count a controller wants (Kubernetes' expected scale for budgets)."""
        if kind not in ("ReplicaSet", "StatefulSet", "Deployment"):
            return None
        try:
            owner = self.get(model_for("apps/v1", kind), name, namespace=namespace)
        except NotFound:
            return None
        replicas = getattr(getattr(owner, "spec", None), "replicas", None)
        return replicas if isinstance(replicas, int) else None

    def delete(
        self,
        kind: type[T],
        name: str,
        *,
        namespace: str | None = None,
        resource_version: str | int | None = None,
    ) -> T:
        """Delete an object and return its last state. With ``resource_version``, only if it is
        still that version (else :class:`Conflict`). An object with finalizers is only marked
        (``deletionTimestamp``; a Namespace turns Terminating) until they are removed.
        ownerReferences are left to the garbage collector."""
        ns = self._ns(kind, namespace)
        key = object_key(kind, ns, name)
        if kind is Namespace and name in SYSTEM_NAMESPACES:
            raise Forbidden(f"namespace {name!r} is a system namespace and cannot be deleted")
        for _attempt in range(RETRIES):
            with store_errors():
                kv = self._store.get(key)
            if kv is None:
                raise NotFound(f"{kind.__name__} {self._describe(kind, namespace, name)} not found")
            if resource_version is not None and kv.mod_revision != int(resource_version):
                raise Conflict(f"{kind.__name__} {name!r} changed (precondition failed)")
            current = json.loads(kv.value)
            guard = [Compare.mod_revision(key, "==", kv.mod_revision)]
            if current["metadata"].get("finalizers"):
                if current["metadata"].get("deletionTimestamp"):
                    return decode(kind, kv)
                marked = copy.deepcopy(current)
                marked["metadata"]["deletionTimestamp"] = now_utc(self._clock).isoformat()
                if kind is Namespace:
                    marked["status"] = {"phase": "Terminating"}
                with store_errors():
                    result = self._store.txn(guard, [Op.put(key, encode(marked))])
                if result.succeeded:
                    return with_rv(kind.model_validate(marked), result.revision)
                continue
            ops = [Op.delete(key), *_tokens.index_ops(current, None)]
            with store_errors():
                result = self._store.txn(guard, ops)
            if result.succeeded:
                return decode(kind, kv, revision=result.revision)
            if resource_version is not None:
                raise Conflict(f"{kind.__name__} {name!r} changed (precondition failed)")
        raise Conflict(f"{kind.__name__} {name!r} kept changing while deleting")
