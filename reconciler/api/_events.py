"""Events: what controllers and the scheduler say about objects, kept for a while.

Behind ``Api.record_event`` / ``list_events`` / ``delete_events``. Stored at
``/registry/events/<namespace>/<involved name>.<digest>`` (the digest of the involved uid,
reason, message and type, so a repeat lands on the same key and bumps ``count``), each put with
a store lease so it expires on its own ``ttl_s`` after its last repeat.
"""

from __future__ import annotations

import hashlib
import threading

from reconciler.api._codec import REGISTRY
from reconciler.api._errors import Cause, Conflict, Invalid, store_errors
from reconciler.api._records import EventRecord, InvolvedObject
from reconciler.api.clock import Clock, now_utc
from reconciler.store import Compare, LeaseID, LeaseNotFound, Op, Store
from schemas import KubeObject

__all__ = ["EventLog"]

_EVENTS = f"{REGISTRY}events/"
_RETRIES = 5


class EventLog:
    def __init__(self, store: Store, *, clock: Clock, ttl_s: int) -> None:
        self._store = store
        self._clock = clock
        self._ttl_s = ttl_s
        self._lease: tuple[LeaseID, float] | None = None
        self._lease_lock = threading.Lock()

    def record(
        self,
        involved: KubeObject,
        *,
        reason: str,
        message: str,
        type: str = "Normal",
        source: str | None = None,
    ) -> EventRecord:
        """Record an Event about an object. A repeat (same object, reason, message, type) bumps
        ``count``. Events expire ``ttl_s`` after their last write (a store lease)."""
        if type not in ("Normal", "Warning"):
            raise Invalid("event is invalid", (Cause("type", "must be Normal or Warning"),))
        namespace = involved.namespace or "default"
        digest = hashlib.sha256(
            "\0".join((involved.metadata.uid or "", reason, message, type)).encode()
        ).hexdigest()[:16]
        name = f"{involved.name}.{digest}"
        key = f"{_EVENTS}{namespace}/{name}"
        now = now_utc(self._clock)
        for _attempt in range(_RETRIES):
            with store_errors():
                kv = self._store.get(key)
            if kv is None:
                record = EventRecord(
                    name=name,
                    namespace=namespace,
                    involved_object=InvolvedObject(
                        kind=involved.kind,
                        name=involved.name,
                        namespace=involved.namespace or None,
                        uid=involved.metadata.uid,
                        api_version=involved.api_version,
                    ),
                    reason=reason,
                    message=message,
                    type=type,  # type: ignore[arg-type]
                    count=1,
                    first_timestamp=now,
                    last_timestamp=now,
                    source=source,
                )
                compare = Compare.version(key, "==", 0)
            else:
                old = EventRecord.model_validate_json(kv.value)
                record = old.model_copy(update={"count": old.count + 1, "last_timestamp": now})
                compare = Compare.mod_revision(key, "==", kv.mod_revision)
            value = record.model_dump_json(by_alias=True, exclude_none=True).encode()
            lease = self._shared_lease()
            try:
                with store_errors():
                    result = self._store.txn([compare], [Op.put(key, value, lease=lease)])
            except LeaseNotFound:
                with self._lease_lock:
                    self._lease = None
                continue
            if result.succeeded:
                return record.model_copy(update={"resource_version": str(result.revision)})
        raise Conflict(f"event {name} kept changing")

    def _shared_lease(self) -> LeaseID:
        # One store lease per tenth of the TTL, shared by every event written in that window
        # (as the Kubernetes API server does for etcd): a lease per event would double the
        # writes. Granted for 1.1 x TTL so each event lives at least the TTL.
        now = self._clock.time()
        with self._lease_lock:
            lease = self._lease
            if lease is not None and now - lease[1] < self._ttl_s / 10:
                return lease[0]
            with store_errors():
                granted = self._store.grant(int(self._ttl_s * 1.1) + 1)
            self._lease = (granted, now)
            return granted

    def list(
        self, *, namespace: str | None = None, involved: KubeObject | None = None
    ) -> list[EventRecord]:
        prefix = f"{_EVENTS}{namespace}/" if namespace else _EVENTS
        with store_errors():
            result = self._store.range(prefix, prefix=True)
        records = [
            EventRecord.model_validate_json(kv.value).model_copy(
                update={"resource_version": str(kv.mod_revision)}
            )
            for kv in result.kvs
        ]
        if involved is not None:
            records = [
                r
                for r in records
                if r.involved_object.kind == involved.kind
                and r.involved_object.name == involved.name
                and (r.involved_object.namespace or "") == involved.namespace
            ]
        return records

    def delete_namespace(self, *, namespace: str) -> int:
        """Delete every Event of a namespace (the namespace controller's cascade)."""
        with store_errors():
            return self._store.delete(f"{_EVENTS}{namespace}/", prefix=True).deleted
