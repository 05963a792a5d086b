"""The API server's core: typed CRUD, watch, bind, events, leases and tokens over the store.

Everything above the store (controllers, scheduler, sync, CLI, a later HTTP server) calls
:class:`Api`; nothing else touches :mod:`reconciler.store`. Every write is one store transaction
guarded by a compare, so concurrent writers never overwrite each other silently.

WHY blocking: the store is blocking and thread-safe, and its group commit turns concurrent
writers into one fsync. Plain threads calling a blocking API get that batching for free (the
scheduler binds from a small pool; the replicaset controller creates pods from one), with no
event loop hop per call on the hot path. :class:`reconciler.api.AsyncApi` wraps each call in
``asyncio.to_thread`` for async callers.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import json
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

from pydantic import ValidationError

from reconciler.api import _podsecurity, _tokens
from reconciler.api._codec import (
    REGISTRY,
    decode,
    encode,
    invalid_from,
    kind_prefix,
    object_key,
)
from reconciler.api._disruption import eviction_blocker
from reconciler.api._errors import (
    AlreadyExists,
    Cause,
    Conflict,
    DisruptionBudgetExceeded,
    Forbidden,
    Invalid,
    NotFound,
    store_errors,
)
from reconciler.api._events import EventLog
from reconciler.api._leases import NodeLeases
from reconciler.api._records import EventRecord, NodeLease
from reconciler.api._service_ips import check_cluster_ip
from reconciler.api._types import (
    ObjectList,
    StoredObject,
    WatchEvent,
    WatchStream,
    event_kind,
)
from reconciler.api.clock import Clock, SystemClock, now_utc
from reconciler.store import (
    Compare,
    Event,
    KeyValue,
    Op,
    RangeResult,
    Revision,
    Store,
)
from schemas import (
    KUBERNETES_NAMESPACES,
    Condition,
    KubeObject,
    LabelSelector,
    Namespace,
    ObjectMeta,
    Pod,
    PodStatus,
    Service,
    ServiceAccount,
    UnsupportedKindError,
    model_for,
)
from schemas.policy import PodDisruptionBudget

__all__ = ["NAMESPACE_FINALIZER", "SYSTEM_NAMESPACES", "Api"]

T = TypeVar("T", bound=KubeObject)

#: Namespaces that always exist: created when the API starts, and never deletable.
SYSTEM_NAMESPACES = (*KUBERNETES_NAMESPACES, "capstan-system")
#: Put on every Namespace at create; the namespace controller removes it once the namespace is
#: empty, and only then does the delete complete (Kubernetes' ``spec.finalizers: [kubernetes]``).
NAMESPACE_FINALIZER = "capstan.io/namespace"

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet: no vowels
_RETRIES = 5


def random_suffix(length: int = 5) -> str:
    """``generateName``'s random part (Kubernetes' alphabet: no vowels, no look-alikes)."""
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(length))


def _spec_part(doc: Mapping[str, Any]) -> dict[str, Any]:
    # "spec" for generation purposes is everything but metadata and status: ConfigMap data,
    # Secret data and ServiceAccount fields count as spec changes too.
    return {k: v for k, v in doc.items() if k not in ("metadata", "status")}


#: Fields an update may not change, per kind, as apps/v1 has it: a workload's selector decides
#: which pods it owns, so changing it would orphan them (delete and recreate instead).
_IMMUTABLE: dict[str, tuple[tuple[str, ...], ...]] = {
    "Deployment": (("spec", "selector"),),
    "ReplicaSet": (("spec", "selector"),),
}


def _check_immutable(
    model: type[KubeObject], current: Mapping[str, Any], updated: Mapping[str, Any]
) -> None:
    kind = model.model_fields["kind"].default
    for path in _IMMUTABLE.get(str(kind), ()):
        before: Any = current
        after: Any = updated
        for part in path:
            before = before.get(part) if isinstance(before, Mapping) else None
            after = after.get(part) if isinstance(after, Mapping) else None
        if before != after:
            raise Invalid(
                f"{kind} {current['metadata'].get('name')!r} is invalid",
                (Cause(".".join(path), "field is immutable"),),
            )


def _with_rv(obj: T, revision: int) -> T:
    meta = obj.metadata.model_copy(update={"resource_version": str(revision)})
    return obj.model_copy(update={"metadata": meta})


class Api:
    """Typed access to every kind. Blocking and thread-safe.

    Creating it makes sure the system namespaces (``default``, ``capstan-system``) exist.
    ``clock`` stamps creation times, deletion times, events and leases.
    ``event_ttl_s`` is how long an Event lives after its last repeat.
    """

    def __init__(
        self, store: Store, *, clock: Clock | None = None, event_ttl_s: int = 3600
    ) -> None:
        self._store = store
        self._clock: Clock = clock or SystemClock()
        self._events = EventLog(store, clock=self._clock, ttl_s=event_ttl_s)
        self._leases = NodeLeases(store, clock=self._clock)
        for name in SYSTEM_NAMESPACES:
            with contextlib.suppress(AlreadyExists):
                self.create(Namespace(metadata=ObjectMeta(name=name)))

    @property
    def clock(self) -> Clock:
        return self._clock

    def current_revision(self) -> int:
        with store_errors():
            return int(self._store.revision())

    # -- reads -----------------------------------------------------------------------------

    def get(self, kind: type[T], name: str, *, namespace: str | None = None) -> T:
        """The object, or :class:`NotFound`. ``namespace`` defaults to ``default``."""
        key = object_key(kind, self._ns(kind, namespace), name)
        with store_errors():
            kv = self._store.get(key)
        if kv is None:
            raise NotFound(f"{kind.__name__} {self._describe(kind, namespace, name)} not found")
        return decode(kind, kv)

    def list(
        self,
        kind: type[T],
        *,
        namespace: str | None = None,
        label_selector: LabelSelector | Mapping[str, str] | None = None,
    ) -> ObjectList[T]:
        """Every object of a kind (in one namespace, or all when None) matching the selector,
        with the store revision of the read: watch from it for a gap-free list+watch."""
        with store_errors():
            result: RangeResult = self._store.range(kind_prefix(kind, namespace), prefix=True)
        selector = self._selector(label_selector)
        items = [decode(kind, kv) for kv in result.kvs]
        if selector is not None:
            items = [item for item in items if selector.matches(item.labels)]
        return ObjectList(tuple(items), str(result.revision))

    def watch(
        self,
        kind: type[T],
        *,
        namespace: str | None = None,
        from_revision: int | str | None = None,
    ) -> WatchStream[T]:
        """Changes after ``from_revision`` (default: now), in order, none missed, none twice.
        Iterating raises :class:`Expired` once that revision is compacted away: relist."""
        start = Revision(int(from_revision)) if from_revision is not None else None

        def convert(event: Event) -> WatchEvent[T]:
            kind_name = event_kind(event)
            if kind_name == "DELETED":
                assert event.prev_kv is not None
                obj = decode(kind, event.prev_kv, revision=event.revision)
            else:
                obj = decode(kind, event.kv)
            return WatchEvent(kind_name, obj, int(event.revision))

        with store_errors():
            watch = self._store.watch(
                kind_prefix(kind, namespace), prefix=True, from_revision=start
            )
        return WatchStream(watch, convert)

    def watch_kinds(
        self,
        kinds: Sequence[type[KubeObject]],
        *,
        from_revision: int | str | None = None,
    ) -> WatchStream[KubeObject]:
        """One stream of the changes to several kinds (all namespaces), in store order.

        What a controller manager's informers share: the store wakes and scans each watch on
        every commit, so one watch for nine kinds costs a ninth of nine watches."""
        models = {kind_prefix(kind, None): kind for kind in kinds}
        start = Revision(int(from_revision)) if from_revision is not None else None

        def convert(event: Event) -> WatchEvent[KubeObject] | None:
            key = event.kv.key
            model = models.get(key[: key.find("/", len(REGISTRY)) + 1])
            if model is None:
                return None
            kind_name = event_kind(event)
            if kind_name == "DELETED":
                assert event.prev_kv is not None
                obj = decode(model, event.prev_kv, revision=event.revision)
            else:
                obj = decode(model, event.kv)
            return WatchEvent(kind_name, obj, int(event.revision))

        with store_errors():
            watch = self._store.watch(REGISTRY, prefix=True, from_revision=start)
        return WatchStream(watch, convert)

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
        for _attempt in range(_RETRIES):
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
        for _attempt in range(_RETRIES):
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
                return _with_rv(validated, result.revision)
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
        return _with_rv(updated.obj, updated.revision)

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

        WHY a second entry point: measured on the bench's 32-client PUT, ``update`` spent
        ~0.15 ms per call deep-copying a dict nobody else holds and turning the validated
        model into a dict three times (here: once), and the server read the object a second
        time for its labels and encoded the returned model again. The store read itself is
        four SQLite statements, each a GIL hand-off under load (~100 futex calls per PUT
        with 32 clients); the watch cache already holds the object the client last read."""
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
        current_kv = _at_revision(model, key, current_kv, rv, meta.get("name"))
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
        if _spec_part(data) != _spec_part(current):
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
        _check_immutable(model, current, stored)
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

    def update_status(self, obj: T) -> T:
        """Replace only ``status``; spec and metadata are kept. Stale resourceVersion →
        :class:`Conflict`. Nothing is written when the status is unchanged."""
        model = type(obj)
        meta = obj.metadata
        rv = self._required_rv({"resourceVersion": meta.resource_version})
        key = object_key(model, self._ns(model, meta.namespace), obj.name)
        current_kv, current = self._read_at(model, key, rv, {"name": obj.name})
        data = copy.deepcopy(current)
        new_status = obj.to_dict().get("status")
        if new_status is None:
            data.pop("status", None)
        else:
            data["status"] = new_status
        validated = self._validate(model, data, what=f"{model.__name__} {key} status")
        return self._replace(model, key, current_kv.mod_revision, current, validated)

    def bind(self, pod: Pod, node_name: str) -> Pod:
        """Assign a pod to a node (the Binding sub-resource): sets ``spec.nodeName`` and a
        ``PodScheduled=True`` condition in one txn guarded by the pod's resourceVersion. If the
        pod changed meanwhile but is still unbound, binds the fresh copy (no extra read in the
        common case). :class:`Conflict` if it is already bound, :class:`NotFound` if gone."""
        key = object_key(Pod, pod.namespace, pod.name)
        for _attempt in range(_RETRIES):
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
                return _with_rv(bound, result.revision)
            fresh = result.responses[0]
            assert isinstance(fresh, RangeResult)
            if not fresh.kvs:
                raise NotFound(f"pod {pod.key} not found")
            latest = decode(Pod, fresh.kvs[0])
            if latest.metadata.uid != pod.metadata.uid:
                raise NotFound(f"pod {pod.key} was replaced by a new pod of the same name")
            pod = latest
        raise Conflict(f"pod {pod.key} kept changing while binding")

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
        for _attempt in range(_RETRIES):
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
                    return _with_rv(kind.model_validate(marked), result.revision)
                continue
            ops = [Op.delete(key), *_tokens.index_ops(current, None)]
            with store_errors():
                result = self._store.txn(guard, ops)
            if result.succeeded:
                return decode(kind, kv, revision=result.revision)
            if resource_version is not None:
                raise Conflict(f"{kind.__name__} {name!r} changed (precondition failed)")
        raise Conflict(f"{kind.__name__} {name!r} kept changing while deleting")

    # -- events and node heartbeats ---------------------------------------------------------

    def record_event(
        self,
        involved: KubeObject,
        *,
        reason: str,
        message: str,
        type: str = "Normal",
        source: str | None = None,
    ) -> EventRecord:
        """Record an Event about an object. A repeat (same object, reason, message, type) bumps
        ``count``. Events expire ``event_ttl_s`` after their last write (a store lease)."""
        return self._events.record(
            involved, reason=reason, message=message, type=type, source=source
        )

    def list_events(
        self, *, namespace: str | None = None, involved: KubeObject | None = None
    ) -> builtins.list[EventRecord]:
        return self._events.list(namespace=namespace, involved=involved)

    def delete_events(self, *, namespace: str) -> int:
        """Delete every Event of a namespace (the namespace controller's cascade)."""
        return self._events.delete_namespace(namespace=namespace)

    def renew_node_lease(
        self, node_name: str, *, now: float | None = None, duration_s: int = 40
    ) -> NodeLease:
        """Record a node heartbeat at ``now`` (epoch seconds; default the API clock). One
        unconditional write: only the node itself renews its lease."""
        return self._leases.renew(node_name, now=now, duration_s=duration_s)

    def get_node_lease(self, node_name: str) -> NodeLease | None:
        return self._leases.get(node_name)

    def list_node_leases(self) -> builtins.list[NodeLease]:
        return self._leases.list()

    def delete_node_lease(self, node_name: str) -> bool:
        return self._leases.delete(node_name)

    # -- authentication --------------------------------------------------------------------

    def authenticate_token(self, token: str) -> _tokens.Identity | None:
        """The service account a bearer token belongs to, or None. Checks the token's hash in
        constant time and that the service account still exists with the same uid."""
        parts = _tokens.split_token(token)
        if parts is None:
            return None
        with store_errors():
            kv = self._store.get(_tokens.TOKEN_INDEX_PREFIX + parts[0])
        if kv is None:
            return None
        identity = _tokens.check(json.loads(kv.value), parts[1])
        if identity is None:
            return None
        try:
            account = self.get(
                ServiceAccount, identity.service_account, namespace=identity.namespace
            )
        except NotFound:
            return None
        return identity if account.metadata.uid == identity.uid else None

    # -- helpers ---------------------------------------------------------------------------

    def _replace(
        self,
        model: type[T],
        key: str,
        rv: int,
        current: dict[str, Any],
        validated: T,
    ) -> T:
        stored = validated.to_dict()
        stored["metadata"].pop("resourceVersion", None)
        if stored == current:
            return _with_rv(validated, rv)
        committed = self._commit(key, rv, current, stored)
        if committed is None:
            raise Conflict(f"{model.__name__} {key} was modified; re-read and retry")
        return _with_rv(validated, committed[1])

    def _commit(
        self, key: str, rv: int, current: dict[str, Any], stored: dict[str, Any]
    ) -> tuple[bytes, int] | None:
        """Write ``stored`` over ``current`` if the key is still at ``rv``; the stored bytes
        and the revision of the write, or None if the key moved on. Removing the last
        finalizer of an object being deleted deletes it instead."""
        guard = [Compare.mod_revision(key, "==", rv)]
        meta = stored["metadata"]
        value = encode(stored)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            ops = [Op.delete(key), *_tokens.index_ops(current, None)]
        else:
            ops = [Op.put(key, value), *_tokens.index_ops(current, stored)]
        with store_errors():
            result = self._store.txn(guard, ops)
        if not result.succeeded:
            return None
        return value, int(result.revision)

    def _read_at(
        self, model: type[KubeObject], key: str, rv: int, meta: Mapping[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        with store_errors():
            kv = _at_revision(model, key, self._store.get(key), rv, meta.get("name"))
        current: dict[str, Any] = json.loads(kv.value)
        return kv, current

    @staticmethod
    def _required_rv(meta: Mapping[str, Any]) -> int:
        rv = meta.get("resourceVersion")
        if not rv or not str(rv).isdigit():
            raise Invalid(
                "update is invalid",
                (Cause("metadata.resourceVersion", "must be the resourceVersion read"),),
            )
        return int(rv)

    @staticmethod
    def _model(data: Mapping[str, Any]) -> type[KubeObject]:
        api_version, kind = data.get("apiVersion"), data.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            raise Invalid("object is invalid", (Cause("kind", "apiVersion and kind required"),))
        try:
            return model_for(api_version, kind)
        except UnsupportedKindError as exc:
            raise invalid_from(exc, what="object") from exc

    @staticmethod
    def _validate(model: type[T], data: dict[str, Any], *, what: str) -> T:
        try:
            return model.model_validate(data, by_name=False)
        except ValidationError as exc:
            raise invalid_from(exc, what=what) from exc

    @staticmethod
    def _ns(kind: type[KubeObject], namespace: str | None) -> str:
        if not kind.NAMESPACED:
            return ""
        return namespace or "default"

    @staticmethod
    def _selector(
        selector: LabelSelector | Mapping[str, str] | None,
    ) -> LabelSelector | None:
        if selector is None or isinstance(selector, LabelSelector):
            return selector
        return LabelSelector(match_labels=dict(selector))

    def _describe(self, kind: type[KubeObject], namespace: str | None, name: str) -> str:
        return f"{self._ns(kind, namespace)}/{name}" if kind.NAMESPACED else name


def _at_revision(
    model: type[KubeObject], key: str, kv: KeyValue | None, rv: int, name: object
) -> KeyValue:
    """``kv`` if the object exists at resourceVersion ``rv``: else 404, or 409 if stale."""
    if kv is None:
        raise NotFound(f"{model.__name__} {key.removeprefix(REGISTRY)} not found")
    if kv.mod_revision != rv:
        raise Conflict(
            f"{model.__name__} {name!r}: resourceVersion {rv} is stale "
            f"(now {kv.mod_revision}); re-read and retry"
        )
    return kv
