"""The embedded backend: the whole store in one SQLite file (the default for one machine).

Opened by ``open_store("sqlite:///abs/path/state.db")``; called by the API layer
from any thread. Reads take a pooled connection and one snapshot; writes go
through ``GroupCommitter`` (one transaction and one fsync per batch of
concurrent writers); watches are `SqliteWatch`es woken by the commit counter.

Leases live in the file with wall-clock deadlines. A sweeper thread looks for
expired ones every ``sweep_interval_s`` and revokes them, one revision each, with
ordinary DELETE events; tests that pass a fake ``clock`` call ``expire_leases()``
instead of waiting. Several processes may open the same file: SQLite's write
lock orders their batches, and each process's watches notice the others'
commits by re-reading (see ``_sqlite_watch``).

Why a put costs little more than its fsync: the key index lives in memory
(``_sqlite_index``), so a put dirties one page of the log, and a batch of plain
puts, a lone one included, is one autocommit INSERT guarded against other
processes' writes (``put_plain``) rather than BEGIN IMMEDIATE, a read of the log's
head, INSERT and COMMIT. What is left is SQLite's own commit and a little Python.
(Figures, and the settings tried and not kept: ``bench/store.py`` and the commit
messages of this file.)
"""

from __future__ import annotations

import logging
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reconciler.store._base import Store, Watch
from reconciler.store._errors import LeaseNotFound, StorageFull, StoreError
from reconciler.store._group_commit import GroupCommitter, Pending
from reconciler.store._requests import check_key, check_txn, check_value, key_range
from reconciler.store._sqlite_index import KeyIndex
from reconciler.store._sqlite_ops import (
    PutWork,
    WriteBatch,
    put_plain,
    range_kvs,
    revision_bound,
    snapshot_revision,
)
from reconciler.store._sqlite_schema import connect
from reconciler.store._sqlite_watch import SqliteWatch
from reconciler.store._types import (
    Compare,
    DeleteResult,
    LeaseID,
    Op,
    PutResult,
    RangeResult,
    Revision,
    TxnResult,
)

_log = logging.getLogger(__name__)
# SQLite's primary result code for a full disk (the unix VFS turns ENOSPC into it).
_SQLITE_FULL = 13


class SqliteStore(Store):
    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] | None = None,
        sweep_interval_s: float = 0.2,
        cross_process_poll_s: float = 0.05,
    ) -> None:
        self.path = path
        self._clock = clock or time.time
        self._cross_process_poll_s = cross_process_poll_s
        # WARNING: keep SQLite's automatic checkpoint on the commit path. We moved
        # checkpoints to a background thread (PASSIVE) to spare the one commit in
        # ~250 that pays for it; under a steady writer the WAL was then never fully
        # copied back, so never restarted: it grew by 40 MB/s, and every commit became
        # an append whose fdatasync must also journal the file size, costing a third
        # of single-writer throughput. A recycled WAL is overwritten in place.
        self._writer = connect(path, check=True)
        self._index = KeyIndex.load(self._writer)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_conns: list[sqlite3.Connection] = [self._writer]
        self._conns_lock = threading.Lock()
        self._committer: GroupCommitter[WriteBatch] = GroupCommitter(self._commit_batch)
        self._commit_cond = threading.Condition(threading.Lock())
        self._commit_seq = 0
        self._watches: set[SqliteWatch] = set()
        self._closed = threading.Event()
        self._sweeper = threading.Thread(
            target=self._sweep, args=(sweep_interval_s,), daemon=True, name="store-lease-sweeper"
        )
        self._sweeper.start()

    # -- plumbing ------------------------------------------------------------------------

    @property
    def commit_seq(self) -> int:
        return self._commit_seq

    @property
    def commit_cond(self) -> threading.Condition:
        return self._commit_cond

    @property
    def last_id(self) -> int:
        return self._index.seen_id

    def _new_connection(self) -> sqlite3.Connection:
        conn = connect(self.path)
        with self._conns_lock:
            self._all_conns.append(conn)
        return conn

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A reader connection inside one read transaction (a consistent snapshot)."""
        if self._closed.is_set():
            raise StoreError("store is closed")
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._new_connection()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")
            self._readers.put(conn)

    def _commit_batch(self, batch: list[Pending[WriteBatch, Any]]) -> None:
        conn = self._writer
        puts = [item.work for item in batch if type(item.work) is PutWork]
        if len(puts) == len(batch):
            results = put_plain(conn, self._index, puts)
            if results is not None:
                for item, result in zip(batch, results, strict=True):
                    item.result = result
                self._signal_commit()
                return
        conn.execute("BEGIN IMMEDIATE")
        ctx: WriteBatch | None = None
        try:
            ctx = WriteBatch(conn, self._index, now=self._clock())
            outcomes: list[tuple[Any, BaseException | None]] = []
            if len(batch) > 1:
                # Writers woken by the last commit queued while we opened the
                # transaction; with the key index in memory a bigger batch costs
                # ~3 us a put more, not more pages, so they join this fsync.
                self._committer.join_late(batch)
            if len(batch) == 1:
                # Alone in the batch, a refused request just rolls the transaction back.
                try:
                    outcomes.append((batch[0].work(ctx), None))
                except StoreError as exc:
                    conn.execute("ROLLBACK")
                    ctx.rollback_to(0)
                    batch[0].error = exc
                    return
            else:
                outcomes = self._run_batch(conn, ctx, batch)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if ctx is not None:
                ctx.rollback_to(0)
            raise
        ctx.committed()
        for item, (result, error) in zip(batch, outcomes, strict=True):
            item.result, item.error = result, error
        if ctx.wrote:
            self._signal_commit()

    def _signal_commit(self) -> None:
        if not self._watches:
            # Only watches read the counter, and one opened after this commit reads
            # the log anyway; the Condition costs the lone writer ~1% per put.
            return
        with self._commit_cond:
            self._commit_seq += 1
            self._commit_cond.notify_all()

    def _run_batch(
        self, conn: sqlite3.Connection, ctx: WriteBatch, batch: list[Pending[WriteBatch, Any]]
    ) -> list[tuple[Any, BaseException | None]]:
        outcomes: list[tuple[Any, BaseException | None]] = []
        i = 0
        while i < len(batch):
            run: list[PutWork] = []
            while i < len(batch):
                work = batch[i].work
                if not isinstance(work, PutWork):
                    break
                run.append(work)
                i += 1
            if run:
                for result in ctx.put_many(run):
                    if isinstance(result, StoreError):
                        outcomes.append((None, result))
                    else:
                        outcomes.append((result, None))
                continue
            outcomes.append(self._run_isolated(conn, ctx, batch[i]))
            i += 1
        return outcomes

    @staticmethod
    def _run_isolated(
        conn: sqlite3.Connection, ctx: WriteBatch, item: Pending[WriteBatch, Any]
    ) -> tuple[Any, BaseException | None]:
        # A savepoint per writer: a request refused halfway (a txn over the
        # per-revision event limit, say) must not leave half its rows in a
        # transaction that commits the other writers' work.
        conn.execute("SAVEPOINT w")
        mark = ctx.mark()
        try:
            outcome: tuple[Any, BaseException | None] = (item.work(ctx), None)
        except StoreError as exc:
            conn.execute("ROLLBACK TO w")
            ctx.rollback_to(mark)
            ctx.abandon_revision()
            outcome = (None, exc)
        conn.execute("RELEASE w")
        return outcome

    def _write(self, work: Callable[[WriteBatch], Any]) -> Any:
        if self._closed.is_set():
            raise StoreError("store is closed")
        try:
            return self._committer.submit(work)
        except sqlite3.OperationalError as exc:
            # The batch's transaction was rolled back (and the in-memory index with it), so
            # nothing of this write is stored; the connection stays usable and the next
            # write after space is freed simply works.
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_FULL:
                raise StorageFull(
                    f"cannot write to {self.path}: {exc} (free space on its filesystem; "
                    "nothing of this write was stored)"
                ) from exc
            raise

    # -- reads -----------------------------------------------------------------------------

    def range(
        self,
        key: str,
        *,
        prefix: bool = False,
        at_revision: Revision | None = None,
        limit: int | None = None,
    ) -> RangeResult:
        lo, hi = key_range(key, prefix=prefix)
        with self._snapshot() as conn:
            revision = snapshot_revision(conn, self._index)
            return range_kvs(
                conn,
                self._index,
                lo,
                hi,
                at_revision=at_revision,
                limit=limit,
                header_revision=revision,
                bound=revision_bound(revision),
            )

    def revision(self) -> Revision:
        with self._snapshot() as conn:
            return Revision(snapshot_revision(conn, self._index))

    # -- writes ----------------------------------------------------------------------------

    def put(self, key: str, value: bytes, *, lease: LeaseID | None = None) -> PutResult:
        check_value(value)
        check_key(key)
        result: PutResult = self._write(PutWork(key, value, lease))
        return result

    def delete(self, key: str, *, prefix: bool = False) -> DeleteResult:
        def work(batch: WriteBatch) -> DeleteResult:
            batch.begin_revision()
            result = batch.delete(key, prefix=prefix)
            batch.end_revision()
            return result

        result: DeleteResult = self._write(work)
        return result

    def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        check_txn(success, failure)
        compares, success, failure = tuple(compares), tuple(success), tuple(failure)
        result: TxnResult = self._write(lambda batch: batch.txn(compares, success, failure))
        return result

    def compact(self, revision: Revision) -> None:
        self._write(lambda batch: batch.compact(revision))

    # -- watches -------------------------------------------------------------------------

    def watch(
        self,
        key: str,
        *,
        prefix: bool = False,
        from_revision: Revision | None = None,
    ) -> Watch:
        if self._closed.is_set():
            raise StoreError("store is closed")
        after = self.revision() if from_revision is None else from_revision
        lo, hi = key_range(key, prefix=prefix)
        watch = SqliteWatch(
            connect=lambda: connect(self.path),
            signal=self,
            lo=lo,
            hi=hi,
            after=after,
            cross_process_poll_s=self._cross_process_poll_s,
            on_close=self._watches.discard,
        )
        self._watches.add(watch)
        return watch

    # -- leases ----------------------------------------------------------------------------

    def grant(self, ttl: int) -> LeaseID:
        if ttl < 1:
            raise ValueError("lease TTL must be at least 1 second")
        lease = LeaseID(secrets.randbits(62) + 1)

        def work(batch: WriteBatch) -> LeaseID:
            batch.conn.execute(
                "INSERT INTO leases (id, ttl, expires_at) VALUES (?, ?, ?)",
                (lease, ttl, batch.now + ttl),
            )
            return lease

        granted: LeaseID = self._write(work)
        return granted

    def keepalive(self, lease: LeaseID) -> int:
        def work(batch: WriteBatch) -> int:
            batch.check_lease(lease)
            (ttl,) = batch.conn.execute("SELECT ttl FROM leases WHERE id = ?", (lease,)).fetchone()
            batch.conn.execute(
                "UPDATE leases SET expires_at = ? WHERE id = ?", (batch.now + ttl, lease)
            )
            return int(ttl)

        ttl: int = self._write(work)
        return ttl

    def revoke(self, lease: LeaseID) -> None:
        def work(batch: WriteBatch) -> None:
            deleted = batch.conn.execute("DELETE FROM leases WHERE id = ?", (lease,)).rowcount
            if not deleted:
                raise LeaseNotFound(f"lease {lease:x} not found (revoked or expired)")
            batch.begin_revision()
            batch.delete_lease_keys(lease)
            batch.end_revision()

        self._write(work)

    def expire_leases(self) -> list[LeaseID]:
        """Revoke every lease whose deadline passed by ``clock``; one revision per lease."""

        def work(batch: WriteBatch) -> list[LeaseID]:
            expired = [
                LeaseID(row[0])
                for row in batch.conn.execute(
                    "SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at, id",
                    (batch.now,),
                )
            ]
            for lease in expired:
                batch.conn.execute("DELETE FROM leases WHERE id = ?", (lease,))
                batch.begin_revision()
                batch.delete_lease_keys(lease)
                batch.end_revision()
            return expired

        expired: list[LeaseID] = self._write(work)
        return expired

    def _sweep(self, interval_s: float) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._closed.wait(interval_s):
                try:
                    if conn is None:
                        conn = connect(self.path)
                    due = conn.execute(
                        "SELECT 1 FROM leases WHERE expires_at <= ? LIMIT 1", (self._clock(),)
                    ).fetchone()
                    if due:
                        self.expire_leases()
                except (StoreError, sqlite3.Error):
                    # The next sweep retries; a failed expiry loses nothing (the lease stays).
                    _log.exception("lease sweep failed")
        finally:
            if conn is not None:
                conn.close()

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for watch in list(self._watches):
            watch.close()
        self._sweeper.join()
        with self._conns_lock:
            for conn in self._all_conns:
                conn.close()
            self._all_conns.clear()
