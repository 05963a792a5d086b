"""Leader election and fencing for several ``capstan up`` replicas sharing one store.

Called by ``reconciler.app``: every replica runs a ``LeaderElector``; the one holding the
leader key runs the sync loop, controllers, scheduler and node dispatch, the others only
serve the HTTP API. The semantics are Kubernetes' leaderelection on a Lease object, kept on
a store lease (an etcd lease on etcd, the embedded lease table on SQLite):

- the leader key ``/capstan/leader`` holds the holder's identity and acquire time and is
  attached to a store lease of ``lease_duration_s``: when the holder dies, the store deletes
  the key after at most one lease duration, and the candidates (each retrying every
  ``retry_period_s``, and woken at once by a watch on the key) race to create it again with
  a ``create_revision == 0`` transaction;
- the holder keeps the lease alive every ``retry_period_s``; when no renewal succeeded for
  ``renew_deadline_s`` (shorter than the lease, so it gives up before anyone else can take
  over) or the lease or key is gone, it has lost: ``on_stopped_leading`` runs and the
  elector ends (Kubernetes components exit there, and so does ``capstan up``);
- the *term* is the leader key's ``create_revision``: it rises with every new leader.
  ``FencedStore`` conditions every write on the key still having that create_revision, so
  a leader paused past its lease (SIGSTOP, a long GC, a VM freeze) cannot write once it
  wakes; the agents refuse desired sets from an older term for the same reason.

Each replica also registers itself under ``/capstan/replicas/`` on a lease of its own, so
``capstan status`` can show every live replica beside the leader (``read_control_plane``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.store._base import Store, StoreWrapper, Watch
from reconciler.store._errors import LeaseNotFound, StoreError
from reconciler.store._types import (
    Compare,
    DeleteResult,
    EventType,
    KeyValue,
    LeaseID,
    Op,
    OpKind,
    PutResult,
    Revision,
    TxnResult,
)

__all__ = [
    "LEADER_KEY",
    "REPLICAS_PREFIX",
    "ControlPlaneView",
    "ElectionSettings",
    "Fenced",
    "FencedStore",
    "LeaderElector",
    "Leadership",
    "ReplicaInfo",
    "default_identity",
    "process_alive",
    "read_control_plane",
]

_log = logging.getLogger(__name__)

#: Outside ``/registry/``: not an API object, so the API's caches skip it.
LEADER_KEY = "/capstan/leader"
REPLICAS_PREFIX = "/capstan/replicas/"


class Fenced(StoreError):
    """A write refused because the writer is no longer the leader (its term ended)."""


@dataclass(frozen=True, slots=True)
class ElectionSettings:
    """Kubernetes' leaderelection defaults; ``renew_deadline_s`` < ``lease_duration_s``."""

    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, "
                f"got {self.retry_period_s} / {self.renew_deadline_s} / {self.lease_duration_s}"
            )

    @property
    def lease_ttl(self) -> int:
        """The store lease's TTL: whole seconds, never shorter than the lease duration."""
        return max(1, math.ceil(self.lease_duration_s))


@dataclass(frozen=True, slots=True)
class Leadership:
    """One term: who holds it, since when, and the ``term`` that fences its writes."""

    identity: str
    term: int
    acquired_at: datetime
    lease: LeaseID


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    identity: str
    host: str
    pid: int
    listen: str | None
    started_at: datetime


@dataclass(frozen=True, slots=True)
class ControlPlaneView:
    """What ``capstan status`` shows: the leader (None while nobody holds the key) and the
    live replicas."""

    leader: str | None
    leader_since: datetime | None
    term: int | None
    lease_duration_s: float | None
    replicas: tuple[ReplicaInfo, ...]


def default_identity() -> str:
    """``host_pid``, unique per process (as client-go's hostname plus a random suffix)."""
    return f"{socket.gethostname()}_{os.getpid()}"


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def read_control_plane(store: Store) -> ControlPlaneView:
    """The leader key and the registered replicas, as one view (reads only)."""
    leader = store.get(LEADER_KEY)
    body: dict[str, Any] = {}
    if leader is not None:
        try:
            body = json.loads(leader.value)
        except ValueError:
            body = {}
    replicas = []
    for kv in store.range(REPLICAS_PREFIX, prefix=True).kvs:
        try:
            data = json.loads(kv.value)
            replicas.append(
                ReplicaInfo(
                    identity=str(data["identity"]),
                    host=str(data.get("host", "")),
                    pid=int(data.get("pid", 0)),
                    listen=data.get("listen"),
                    started_at=_parse_time(data.get("startedAt")) or datetime.fromtimestamp(0, UTC),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return ControlPlaneView(
        leader=str(body["holderIdentity"]) if "holderIdentity" in body else None,
        leader_since=_parse_time(body.get("acquireTime")),
        term=int(leader.create_revision) if leader is not None else None,
        lease_duration_s=body.get("leaseDurationSeconds"),
        replicas=tuple(sorted(replicas, key=lambda r: r.identity)),
    )


class FencedStore(StoreWrapper):
    """A view of ``inner`` whose writes succeed only while ``term`` is the leader's term.

    Every put, delete and transaction becomes a transaction with one more compare: the
    leader key's create_revision equals ``term``. When that compare is what failed, the
    write raises ``Fenced`` (and ``on_fenced`` runs) instead of returning a result;
    ``refused`` counts those writes and the first one is logged with its key, so a deposed
    leader's log says that the store turned it away. Reads, watches and leases pass
    through. ``close`` leaves ``inner`` open: it is shared.
    """

    def __init__(
        self, inner: Store, *, term: int, on_fenced: Callable[[], None] | None = None
    ) -> None:
        super().__init__(inner)
        self.term = term
        self._on_fenced = on_fenced
        self._fence = Compare.create_revision(LEADER_KEY, "==", term)
        self._refused_lock = threading.Lock()
        #: Writes of this term the store refused because another term had begun.
        self.refused = 0

    def _fenced(self, key: str) -> Fenced:
        with self._refused_lock:
            self.refused += 1
            first = self.refused == 1
        if first:
            _log.warning(
                "term %d is over: the store refused a write to %s (fenced by the leader key)",
                self.term,
                key,
            )
        if self._on_fenced is not None:
            self._on_fenced()
        return Fenced(f"term {self.term} is over: another replica leads; write to {key} refused")

    def _still_leader(self) -> bool:
        kv = self._inner.get(LEADER_KEY)
        return kv is not None and int(kv.create_revision) == self.term

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        if any(op.kind is not OpKind.RANGE for op in failure):
            # A failure branch that writes would run exactly when the fence fails.
            raise ValueError("a fenced transaction's failure branch may only read")
        result = self._inner.txn([*compares, self._fence], success, failure)
        if not result.succeeded and not self._still_leader():
            raise self._fenced(success[0].key if success else "(nothing)")
        return result

    def _write(self, op: Op) -> TxnResult:
        result = self._inner.txn([self._fence], [op])
        if not result.succeeded:
            raise self._fenced(op.key)
        return result

    def put(self, key: str, value: bytes, *, lease: LeaseID | None = None) -> PutResult:
        response = self._write(Op.put(key, value, lease=lease)).responses[0]
        assert isinstance(response, PutResult)
        return response

    def delete(self, key: str, *, prefix: bool = False) -> DeleteResult:
        response = self._write(Op.delete(key, prefix=prefix)).responses[0]
        assert isinstance(response, DeleteResult)
        return response

    def compact(self, revision: Revision) -> None:
        if not self._still_leader():
            raise self._fenced(f"(compaction to revision {revision})")
        self._inner.compact(revision)

    def close(self) -> None:
        return None


class LeaderElector:
    """Campaigns for the leader key, then renews it until it is lost or ``stop`` is called.

    ``start()`` makes the first attempt in the caller's thread (so a replica that can lead
    at once — always the case on the embedded store — has its components running when
    ``start`` returns), then campaigns and renews on a daemon thread. ``on_started_leading``
    runs once when the key is won; ``on_stopped_leading`` once when it is lost or released.
    An elector leads at most one term: after losing, it ends (the process is expected to
    exit and be restarted, as Kubernetes components are).
    """

    def __init__(
        self,
        store: Store,
        *,
        identity: str,
        settings: ElectionSettings | None = None,
        on_started_leading: Callable[[Leadership], None],
        on_stopped_leading: Callable[[Leadership], None],
        listen: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.identity = identity
        self.settings = settings or ElectionSettings()
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._listen = listen
        self._monotonic = monotonic
        self._stopped = threading.Event()
        self._lost = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._renewer: threading.Thread | None = None
        self._watch: Watch | None = None
        self._replica_lease: LeaseID | None = None
        self._started_at = datetime.now(UTC)
        self.leadership: Leadership | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._register()
        self._attempt()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop campaigning; a leader stops its components and releases the key at once
        (client-go's ReleaseOnCancel), so a follower need not wait for the lease to run out."""
        self._stopped.set()
        for thread in (self._thread, self._renewer):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=self.settings.retry_period_s + 15)
        self._step_down(release=True)
        if self._replica_lease is not None:
            try:
                self._store.revoke(self._replica_lease)
            except StoreError as exc:
                _log.info("could not unregister replica %s: %s", self.identity, exc)
            self._replica_lease = None

    def lose(self) -> None:
        """Called when a write was fenced: this term is over, whatever the renew loop thinks."""
        self._lost.set()

    @property
    def is_leader(self) -> bool:
        return self.leadership is not None

    # -- campaign ------------------------------------------------------------------------------

    def _register(self) -> None:
        lease = self._store.grant(self.settings.lease_ttl)
        body = {
            "identity": self.identity,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "listen": self._listen,
            "startedAt": _iso(self._started_at),
        }
        self._store.put(REPLICAS_PREFIX + self.identity, json.dumps(body).encode(), lease=lease)
        self._replica_lease = lease

    def _keep_registered(self) -> None:
        if self._replica_lease is None:
            return
        try:
            self._store.keepalive(self._replica_lease)
        except LeaseNotFound:
            self._register()

    def _attempt(self) -> bool:
        """One try at the key; True when this replica now leads."""
        held = self._store.get(LEADER_KEY)
        if held is not None and not self._take_from_dead_holder(held):
            return False
        lease = self._store.grant(self.settings.lease_ttl)
        acquired = datetime.now(UTC)
        body = {
            "holderIdentity": self.identity,
            "acquireTime": _iso(acquired),
            "leaseDurationSeconds": self.settings.lease_duration_s,
        }
        result = self._store.txn(
            [Compare.create_revision(LEADER_KEY, "==", 0)],
            [Op.put(LEADER_KEY, json.dumps(body).encode(), lease=lease)],
        )
        if not result.succeeded:
            self._store.revoke(lease)
            return False
        leadership = Leadership(
            identity=self.identity, term=int(result.revision), acquired_at=acquired, lease=lease
        )
        with self._lock:
            self.leadership = leadership
        self._lost.clear()
        self._renewed = self._monotonic()
        _log.warning("%s became the leader (term %d)", self.identity, leadership.term)
        # Renewing starts before the components do: starting them may take longer than
        # the lease (informers listing a large store).
        self._renewer = threading.Thread(
            target=self._renew_until_lost, args=(leadership,), name="leader-renew", daemon=True
        )
        self._renewer.start()
        try:
            self._on_started(leadership)
        except BaseException:
            self._step_down(release=True)
            raise
        return True

    def _take_from_dead_holder(self, held: KeyValue) -> bool:
        """Delete the key of a holder that ran on this host and whose process is gone.

        A ``capstan up`` restarted after ``kill -9`` on one host (always so on the embedded
        store) need not wait out its predecessor's lease. The delete is conditioned on the
        key being unchanged, so it never removes a newer holder's key.
        """
        try:
            holder = str(json.loads(held.value)["holderIdentity"])
        except (ValueError, KeyError, TypeError):
            return False
        host, _, pid_text = holder.rpartition("_")
        if host != socket.gethostname() or not pid_text.isdigit():
            return False
        pid = int(pid_text)
        if pid == os.getpid() or process_alive(pid):
            return False
        _log.warning("leader %s is not running any more on this host; taking over", holder)
        self._store.txn(
            [Compare.mod_revision(LEADER_KEY, "==", int(held.mod_revision))],
            [Op.delete(LEADER_KEY)],
        )
        return True

    def _run(self) -> None:
        """Campaign until this replica leads (the renewer thread takes over) or stops."""
        while not self._stopped.is_set() and self.leadership is None:
            try:
                self._keep_registered()
                if self._attempt():
                    continue
            except StoreError as exc:
                _log.info("leader election: %s", exc)
            except Exception:
                # Starting the components failed (they were stopped and the key released):
                # campaign again rather than leave the cluster without a leader.
                _log.exception("%s: starting to lead failed", self.identity)
            self._wait_for_vacancy()
        self._close_watch()

    def _wait_for_vacancy(self) -> None:
        """Sleep one retry period, or less when the leader key is deleted meanwhile."""
        period = self.settings.retry_period_s
        try:
            if self._watch is None:
                self._watch = self._store.watch(LEADER_KEY)
            deadline = self._monotonic() + period
            while (left := deadline - self._monotonic()) > 0 and not self._stopped.is_set():
                if any(e.type is EventType.DELETE for e in self._watch.poll(min(left, 0.25))):
                    return
        except StoreError:
            self._close_watch()
            self._stopped.wait(period)

    def _close_watch(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    # -- renew ---------------------------------------------------------------------------------

    def _renew_until_lost(self, leadership: Leadership) -> None:
        settings = self.settings
        while not self._stopped.wait(settings.retry_period_s) and not self._lost.is_set():
            if self.leadership is not leadership:
                return  # stepped down already (starting the components failed)
            # Checked before renewing: a replica that slept past its deadline (SIGSTOP) must
            # not count a late renewal as keeping a lease others may already have taken.
            if self._monotonic() - self._renewed > settings.renew_deadline_s:
                _log.error(
                    "%s: no renewal within %.1fs; leadership lost",
                    self.identity,
                    settings.renew_deadline_s,
                )
                break
            if self._renew(leadership):
                self._renewed = self._monotonic()
        if not self._stopped.is_set():
            self._step_down(release=False)

    def _renew(self, leadership: Leadership) -> bool:
        try:
            self._store.keepalive(leadership.lease)
            kv: KeyValue | None = self._store.get(LEADER_KEY)
            self._keep_registered()
        except LeaseNotFound:
            _log.error("%s: leader lease expired; leadership lost", self.identity)
            self._lost.set()
            return False
        except StoreError as exc:
            _log.warning("%s: renewing the leader lease failed: %s", self.identity, exc)
            return False
        if kv is None or int(kv.create_revision) != leadership.term:
            _log.error("%s: the leader key changed hands; leadership lost", self.identity)
            self._lost.set()
            return False
        return True

    def _step_down(self, *, release: bool) -> None:
        with self._lock:
            leadership, self.leadership = self.leadership, None
        if leadership is None:
            return
        _log.warning("%s stopped leading (term %d)", self.identity, leadership.term)
        try:
            self._on_stopped(leadership)
        finally:
            if release:
                try:
                    self._store.revoke(leadership.lease)
                except StoreError as exc:
                    _log.info("could not release the leader lease: %s", exc)
