"""The API: typed CRUD, watch, bind, events, leases and tokens over the store.

Everything above the store (controllers, scheduler, sync, CLI, the HTTP server) calls
:class:`Api`; nothing else touches :mod:`reconciler.store`. ``Api`` is a ``Reader``
(``_reader.py``), a ``Writer`` (``_writer.py``) and a ``StatusWriter`` (``_status_writer.py``),
as controller-runtime splits its client, over ``_core.py``; this module adds the start-up
(system namespaces), events, node leases and token authentication. Every write is one store
transaction guarded by a compare, so concurrent writers never overwrite each other silently.

WHY blocking: the store is blocking and thread-safe, and its group commit turns concurrent
writers into one fsync. Plain threads calling a blocking API get that batching for free (the
scheduler binds from a small pool; the replicaset controller creates pods from one), with no
event loop hop per call on the hot path; async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import builtins
import contextlib
import json
from collections.abc import Mapping

from reconciler.api import _tokens
from reconciler.api._core import (
    NAMESPACE_FINALIZER,
    SYSTEM_NAMESPACES,
    random_suffix,
)
from reconciler.api._errors import (
    AlreadyExists,
    NotFound,
    store_errors,
)
from reconciler.api._events import EventLog
from reconciler.api._leases import NodeLeases
from reconciler.api._records import EventRecord, NodeLease
from reconciler.api._status_writer import StatusWriter
from reconciler.api._writer import Writer
from reconciler.api.clock import Clock, SystemClock
from reconciler.store import (
    Store,
)
from schemas import (
    KubeObject,
    Namespace,
    ObjectMeta,
    ServiceAccount,
)

__all__ = ["NAMESPACE_FINALIZER", "SYSTEM_NAMESPACES", "Api", "random_suffix"]


class Api(Writer, StatusWriter):
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

    def renew_node_leases(self, renewals: Mapping[str, float], *, duration_s: int = 40) -> None:
        """Record the heartbeats of many nodes, each at its time (epoch seconds), in one
        store transaction (per ``MAX_TXN_OPS`` nodes): what the node dispatcher writes."""
        self._leases.renew_many(renewals, duration_s=duration_s)

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
