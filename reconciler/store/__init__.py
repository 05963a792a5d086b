"""The etcd-like log under the API server: one interface, an embedded and an etcd backend.

Offers ``open_store(url)`` and the ``Store`` interface, the only way Capstan
reads or writes durable state (and only ``reconciler.api`` calls it). The
model is etcd v3's, so either backend can sit behind the API layer:

- every write gets the next global ``Revision``; a ``txn`` bumps it once and all
  its events share it; each key keeps ``create_revision``, ``mod_revision``,
  ``version``; deletes stay in the history until ``compact``;
- ``range(key, prefix=, at_revision=, limit=)`` answers with the kvs and the
  revision it read at; ``txn(compares, success, failure)`` compares
  mod_revision / create_revision / version / value (optimistic concurrency on
  ``resourceVersion``);
- ``watch(key, prefix=, from_revision=)`` delivers every event with a revision
  greater than ``from_revision``, in order, exactly once, with ``prev_kv``, or
  raises ``Compacted`` when that history is gone (the caller relists);
- leases: ``grant(ttl)``, ``keepalive``, ``revoke``; keys put with ``lease=`` are
  deleted when the lease ends, as ordinary DELETE events.

URLs: ``sqlite:///abs/path/state.db`` (embedded, the default for one machine)
and ``etcd://127.0.0.1:2379[,host:port...]`` (a real etcd v3 server; several
endpoints fail over in order).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from reconciler.store._base import Store, StoreWrapper, Watch
from reconciler.store._errors import (
    Compacted,
    CorruptStore,
    DuplicateKey,
    FutureRevision,
    LeaseNotFound,
    StorageFull,
    StoreError,
    Unavailable,
    ValueTooLarge,
)
from reconciler.store._types import (
    MAX_TXN_OPS,
    MAX_VALUE_BYTES,
    Compare,
    CompareOp,
    CompareTarget,
    DeleteResult,
    Event,
    EventType,
    KeyValue,
    LeaseID,
    Op,
    OpKind,
    PutResult,
    RangeResult,
    Revision,
    TxnResult,
)

__all__ = [
    "MAX_TXN_OPS",
    "MAX_VALUE_BYTES",
    "Compacted",
    "Compare",
    "CompareOp",
    "CompareTarget",
    "CorruptStore",
    "DeleteResult",
    "DuplicateKey",
    "Event",
    "EventType",
    "FutureRevision",
    "KeyValue",
    "LeaseID",
    "LeaseNotFound",
    "Op",
    "OpKind",
    "PutResult",
    "RangeResult",
    "Revision",
    "StorageFull",
    "Store",
    "StoreError",
    "StoreWrapper",
    "TxnResult",
    "Unavailable",
    "ValueTooLarge",
    "Watch",
    "open_store",
]


def open_store(url: str, *, clock: Callable[[], float] | None = None) -> Store:
    """Open the store a URL names.

    ``clock`` (wall-clock seconds, default ``time.time``) drives lease expiry in
    the embedded backend; etcd keeps its own time and ignores it.
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"sqlite store URL needs an absolute path (sqlite:///abs/path): {url}")
        from reconciler.store._sqlite import SqliteStore

        return SqliteStore(Path(unquote(parts.path)), clock=clock)
    if parts.scheme == "etcd":
        endpoints = [e.strip() for e in url.split("://", 1)[1].split(",") if e.strip()]
        if not endpoints:
            raise ValueError(f"etcd store URL names no endpoint: {url}")
        from reconciler.store._etcd import EtcdStore

        return EtcdStore(endpoints)
    raise ValueError(f"unknown store URL scheme {parts.scheme!r} (want sqlite:// or etcd://)")
