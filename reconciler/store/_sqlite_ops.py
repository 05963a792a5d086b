"""SQL reads and writes of the embedded store, on one connection, with the key index.

Called by ``_sqlite.SqliteStore``: reads run on a pooled reader connection inside
a read transaction (one snapshot per call) and find their rows through the
in-memory ``KeyIndex`` at that snapshot's last rowid; writes run inside the group
committer's batch transaction through a ``WriteBatch``, which hands out rowids
(``revision << 20 | n``, see ``_sqlite_schema``) and records each row in the index
as it writes it (undone if the transaction rolls back). Write helpers check
everything that can fail before they write, so a refused request leaves the
shared batch transaction untouched and the other writers in it unaffected.

The SQL strings are assembled from fixed fragments of this module (column
lists, key-bound clauses, ``?`` placeholder lists) and nothing a caller supplies;
every key, value and number travels as a bound parameter (hence the S608 noqa).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

from reconciler.store._errors import (
    Compacted,
    DuplicateKey,
    FutureRevision,
    LeaseNotFound,
    StoreError,
)
from reconciler.store._requests import encode_key, key_range
from reconciler.store._sqlite_index import Entry, KeyIndex, LogRow, head_revision, read_head
from reconciler.store._sqlite_schema import MAX_EVENTS_PER_REVISION, REV_SHIFT
from reconciler.store._types import (
    Compare,
    DeleteResult,
    KeyValue,
    LeaseID,
    Op,
    OpKind,
    PutResult,
    RangeResult,
    Revision,
    TxnResult,
)

_KV_COLUMNS = "l.key, l.value, l.create_rev, l.id, l.version, l.lease"


def kv_from_row(row: Sequence[Any]) -> KeyValue:
    key, value, create_rev, row_id, version, lease = row
    return KeyValue(
        key=bytes(key).decode("utf-8"),
        value=bytes(value),
        create_revision=Revision(create_rev),
        mod_revision=Revision(row_id >> REV_SHIFT),
        version=version,
        lease=LeaseID(lease) if lease else None,
    )


def compact_revision(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE name = 'compact_revision'").fetchone()
    return int(row[0])


def snapshot_revision(conn: sqlite3.Connection, index: KeyIndex) -> int:
    """Start ``conn``'s read snapshot, bring the index up to it, and return its revision."""
    last_id, compacted = read_head(conn)
    index.catch_up(conn, last_id=last_id, compacted=compacted)
    return head_revision(last_id, compacted)


def revision_bound(revision: int) -> int:
    """The last rowid a read at ``revision`` may see."""
    return ((revision + 1) << REV_SHIFT) - 1


_CHUNK = 500
_INSERT = (
    "INSERT INTO log (id, key, deleted, value, create_rev, version, lease, prev_id)"
    " VALUES (?1, ?2, ?3 IS NULL, ?3, ?4, ?5, ?6, ?7)"
)


def fetch_rows(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, Any]:
    """The ``_KV_COLUMNS`` of the given log rows, by rowid (primary-key lookups, in chunks
    under SQLite's bound-parameter limit)."""
    if len(ids) == 1:
        row = conn.execute(
            f"SELECT {_KV_COLUMNS} FROM log l WHERE l.id = ?",  # noqa: S608 - constant columns
            (ids[0],),
        ).fetchone()
        return {} if row is None else {row[3]: row}
    rows: dict[int, Any] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT {_KV_COLUMNS} FROM log l WHERE l.id IN ({marks})",  # noqa: S608 - marks only
            chunk,
        ):
            rows[row[3]] = row
    return rows


def _rows_in_order(conn: sqlite3.Connection, entries: Sequence[Entry]) -> list[Any]:
    rows = fetch_rows(conn, [row_id for _, row_id in entries])
    try:
        return [rows[row_id] for _, row_id in entries]
    except KeyError as exc:
        # Every indexed rowid at or below the snapshot is in the snapshot; a miss
        # means the index and the file disagree, which must not pass silently.
        raise StoreError(f"store index names log row {exc.args[0]} that the file lacks") from exc


def current_values(
    conn: sqlite3.Connection, index: KeyIndex, keys: Sequence[bytes]
) -> dict[bytes, tuple[int, KeyValue]]:
    """The live value (rowid, key-value) of each of ``keys`` that has one, as the index
    has it now: for the writer, including its own batch's rows."""
    entries = index.newest_many(keys)
    if not entries:
        return {}
    rows = _rows_in_order(conn, entries)
    return {
        key: (row_id, kv_from_row(row)) for (key, row_id), row in zip(entries, rows, strict=True)
    }


def range_kvs(
    conn: sqlite3.Connection,
    index: KeyIndex,
    lo: bytes,
    hi: bytes | None,
    *,
    at_revision: int | None,
    limit: int | None,
    header_revision: int,
    bound: int | None = None,
) -> RangeResult:
    """Keys in [lo, hi) now, or as of ``at_revision``; the caller holds a read snapshot at
    ``header_revision``, or (bound None) is the writer reading its own batch."""
    if at_revision is not None:
        compacted = compact_revision(conn)
        if at_revision < compacted:
            raise Compacted(requested=at_revision, compact_revision=compacted)
        if at_revision > header_revision:
            raise FutureRevision(
                f"revision {at_revision} is in the future (current {header_revision})"
            )
        bound = revision_bound(at_revision)
    entries, count = index.live(lo, hi, bound=bound, limit=limit or None)
    kvs = tuple(kv_from_row(row) for row in _rows_in_order(conn, entries))
    return RangeResult(
        kvs=kvs, revision=Revision(header_revision), count=count, more=count > len(kvs)
    )


class WriteBatch:
    """The state of one group-commit transaction: the connection, the clock, the
    revision counter that every request in the batch advances in turn, and the
    index entries it recorded (undone if the transaction does not commit)."""

    def __init__(self, conn: sqlite3.Connection, index: KeyIndex, *, now: float) -> None:
        self.conn = conn
        self.index = index
        self.now = now
        # The order matters: the caller holds SQLite's write lock, so catching up
        # here folds in every other process's commit before this batch writes.
        self.revision = snapshot_revision(conn, index)
        self._open: int | None = None
        self._events = 0
        self._recorded: list[Entry] = []
        self._last_id = 0
        self._compacted_to: int | None = None
        self.wrote = False

    def begin_revision(self) -> None:
        self._open = self.revision + 1
        self._events = 0

    def next_id(self) -> int:
        assert self._open is not None, "begin_revision first"
        if self._events >= MAX_EVENTS_PER_REVISION:
            raise StoreError(f"more than {MAX_EVENTS_PER_REVISION} events in one revision")
        row_id = (self._open << REV_SHIFT) | self._events
        self._events += 1
        return row_id

    @property
    def pending_revision(self) -> int:
        """The revision reads inside a txn see: the open one once it wrote, else the last."""
        return self._open if self._open is not None and self._events else self.revision

    def abandon_revision(self) -> None:
        """Forget the open revision after its request was rolled back."""
        self._open = None
        self._events = 0

    def end_revision(self) -> Revision:
        """Close the open revision: it counts only if something was written under it."""
        if self._open is not None and self._events:
            self.revision = self._open
            self.wrote = True
        self._open = None
        return Revision(self.revision)

    # -- the index entries of this batch ------------------------------------------------

    def _insert(self, rows: Sequence[LogRow]) -> None:
        """INSERT log rows (id, key, value or None for a deletion, create_rev, version,
        lease, prev_id) and record them in the index."""
        if not rows:
            return
        if len(rows) == 1:
            # A lone put is the single-writer path, where every microsecond next to
            # the fsync shows in the bench's ratio: execute() skips executemany's
            # iterator machinery.
            self.conn.execute(_INSERT, rows[0])
        else:
            self.conn.executemany(_INSERT, rows)
        self._recorded.extend(self.index.record(rows))
        self._last_id = rows[-1][0]

    def mark(self) -> int:
        return len(self._recorded)

    def rollback_to(self, mark: int) -> None:
        """Undo the index entries past ``mark`` (the caller rolled the SQL back to match)."""
        self.index.undo(self._recorded[mark:])
        del self._recorded[mark:]

    def committed(self) -> None:
        """The transaction committed: its rows are now what every reader may see."""
        self.index.committed(self._last_id)
        if self._compacted_to is not None:
            self.index.compact(self._compacted_to)

    def _current(self, keys: Sequence[bytes]) -> dict[bytes, tuple[int, KeyValue]]:
        """Each key's live value as this batch sees it (its own writes included)."""
        return current_values(self.conn, self.index, keys)

    # -- checks, run before any write ----------------------------------------------

    def check_lease(self, lease: LeaseID | None) -> None:
        if lease is None:
            return
        row = self.conn.execute("SELECT expires_at FROM leases WHERE id = ?", (lease,)).fetchone()
        if row is None or row[0] <= self.now:
            raise LeaseNotFound(f"lease {lease:x} not found (revoked or expired)")

    def check_ops(self, ops: Sequence[Op]) -> None:
        puts: set[bytes] = set()
        for op in ops:
            if op.kind is OpKind.PUT:
                key = encode_key(op.key)
                if key in puts:
                    raise DuplicateKey(f"key {op.key!r} is written twice in one txn")
                puts.add(key)
                self.check_lease(op.lease)
        for op in ops:
            if op.kind is OpKind.DELETE:
                lo, hi = key_range(op.key, prefix=op.prefix)
                if any(lo <= key and (hi is None or key < hi) for key in puts):
                    raise DuplicateKey(f"txn deletes {op.key!r} and also puts a key it covers")

    # -- writes ----------------------------------------------------------------------

    def put(self, key: str, value: bytes, lease: LeaseID | None) -> PutResult:
        encoded = encode_key(key)
        prev_id = self.index.newest(encoded)
        row_id = self.next_id()
        revision = row_id >> REV_SHIFT
        if prev_id is None:
            create_rev, version, prev_kv = revision, 1, None
        else:
            prev_kv = kv_from_row(_rows_in_order(self.conn, [(encoded, prev_id)])[0])
            create_rev, version = prev_kv.create_revision, prev_kv.version + 1
        self._insert([(row_id, encoded, value, create_rev, version, lease, prev_id)])
        return PutResult(revision=Revision(revision), prev_kv=prev_kv)

    def put_many(self, puts: Sequence[PutWork]) -> list[PutResult | StoreError]:
        """Plain puts from different writers, one revision each, in a few statements.

        The group commit's fast path: per-put Python and SQLite call overhead, not
        the fsync, is what limits a batch of 64 writers, so the previous values
        are fetched with one query and the rows written with ``executemany``.
        """
        keys = [encode_key(p.key) for p in puts]
        if len(set(keys)) != len(keys):
            # Two writers raced on one key: apply one by one so the second sees the first.
            return [self._put_alone(p) for p in puts]
        prevs = self._current(keys)
        log_rows: list[LogRow] = []
        results: list[PutResult | StoreError] = []
        for put, key in zip(puts, keys, strict=True):
            if put.lease is not None:
                try:
                    self.check_lease(put.lease)
                except LeaseNotFound as exc:
                    results.append(exc)
                    continue
            self.revision += 1
            row_id = self.revision << REV_SHIFT
            prev = prevs.get(key)
            if prev is None:
                create_rev, version, prev_id, prev_kv = self.revision, 1, None, None
            else:
                prev_id, prev_kv = prev
                create_rev, version = prev_kv.create_revision, prev_kv.version + 1
            log_rows.append((row_id, key, put.value, create_rev, version, put.lease, prev_id))
            results.append(PutResult(revision=Revision(self.revision), prev_kv=prev_kv))
        if log_rows:
            self._insert(log_rows)
            self.wrote = True
        return results

    def _put_alone(self, put: PutWork) -> PutResult | StoreError:
        try:
            return put(self)
        except LeaseNotFound as exc:
            return exc

    def delete(self, key: str, *, prefix: bool) -> DeleteResult:
        lo, hi = key_range(key, prefix=prefix)
        entries, _ = self.index.live(lo, hi, bound=None)
        return self._delete_entries(entries)

    def delete_lease_keys(self, lease: int) -> DeleteResult:
        return self._delete_entries(self.index.with_lease(lease))

    def _delete_entries(self, entries: Sequence[Entry]) -> DeleteResult:
        if len(entries) > MAX_EVENTS_PER_REVISION:
            raise StoreError(
                f"deleting {len(entries)} keys in one revision exceeds {MAX_EVENTS_PER_REVISION}"
            )
        rows = _rows_in_order(self.conn, entries)
        self._insert([(self.next_id(), key, None, 0, 0, None, prev_id) for key, prev_id in entries])
        return DeleteResult(
            revision=Revision(self.pending_revision),
            deleted=len(rows),
            prev_kvs=tuple(kv_from_row(row) for row in rows),
        )

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> TxnResult:
        current = self._current([encode_key(compare.key) for compare in compares])
        succeeded = all(
            compare.holds(_kv_only(current.get(encode_key(compare.key)))) for compare in compares
        )
        ops = success if succeeded else failure
        self.check_ops(ops)
        self.begin_revision()
        responses: list[RangeResult | PutResult | DeleteResult] = []
        for op in ops:
            if op.kind is OpKind.PUT:
                responses.append(self.put(op.key, op.value, op.lease))
            elif op.kind is OpKind.DELETE:
                responses.append(self.delete(op.key, prefix=op.prefix))
            else:
                lo, hi = key_range(op.key, prefix=op.prefix)
                responses.append(
                    range_kvs(
                        self.conn,
                        self.index,
                        lo,
                        hi,
                        at_revision=None,
                        limit=op.limit,
                        header_revision=self.pending_revision,
                    )
                )
        revision = self.end_revision()
        # A put/delete answered inside the txn carries the txn's final revision.
        fixed = tuple(
            DeleteResult(revision, r.deleted, r.prev_kvs) if isinstance(r, DeleteResult) else r
            for r in responses
        )
        return TxnResult(succeeded=succeeded, revision=revision, responses=fixed)

    def compact(self, revision: int) -> None:
        compacted = compact_revision(self.conn)
        if revision <= compacted:
            raise Compacted(requested=revision, compact_revision=compacted)
        if revision > self.revision:
            raise FutureRevision(f"cannot compact at {revision}: current revision {self.revision}")
        # The index decides which rows go (see `KeyIndex.compaction`); it drops its own
        # entries only once this transaction has committed.
        doomed = [(row_id,) for row_id in self.index.compaction(revision)]
        self.conn.executemany("DELETE FROM log WHERE id = ?", doomed)
        self.conn.execute("UPDATE meta SET value = ? WHERE name = 'compact_revision'", (revision,))
        self._compacted_to = revision


# SQLite's primary result code for "busy", which covers SQLITE_BUSY_SNAPSHOT: another
# process committed between this statement's read and its write.
_SQLITE_BUSY = 5
#: The message of the schema's `log_ids_grow` trigger.
_STALE_ROWID = "log row id is not above the last one"


#: The most puts `put_plain` writes in one statement (6 bound values each).
MAX_PLAIN_PUTS = 128


@functools.cache
def _plain_insert(rows: int) -> str:
    values = ",".join(["(?,?,0,?,?,?,NULL,?)"] * rows)
    return f"INSERT INTO log (id, key, deleted, value, create_rev, version, lease, prev_id) VALUES {values}"  # noqa: S608, E501


def put_plain(
    conn: sqlite3.Connection, index: KeyIndex, puts: Sequence[PutWork]
) -> list[PutResult] | None:
    """Plain puts (no lease, distinct keys) as ONE autocommit INSERT, or None when that
    cannot be done safely and the caller must take the transaction path.

    Called by the store for every batch of plain puts: the single writer, and most
    batches of many writers. The transaction path costs BEGIN IMMEDIATE, a read of
    the log's head, the INSERT and COMMIT: four trips into SQLite, each one dropping
    the GIL and waiting to take it back, which under many writers is most of a batch's
    time and is felt even beside a lone writer's fsync. Here the rowids and
    previous values come from the index, and the schema's ``log_ids_grow`` trigger
    refuses the INSERT, inside its own implicit transaction, if any row at or above
    the first rowid exists: that is, if another process wrote since the index last
    saw the log (rowids there are the index's ``seen_id`` revision + 1 onwards). Then,
    or if SQLite refuses the write from a stale snapshot, nothing was written and
    None sends the caller to the transaction path, which catches up first. The
    implicit commit is as durable as any other (WAL, synchronous=FULL): one fsync
    for the whole batch. The guard is a trigger, not a condition inside the statement
    (INSERT ... SELECT ... WHERE max(id) = ?), because SQLite copies a SELECT that
    reads its own target into a temp table, which costs more per put.
    """
    if len(puts) > MAX_PLAIN_PUTS:
        return None
    keys = []
    for put in puts:
        if put.lease is not None:
            return None  # the lease check needs the transaction path's reads
        keys.append(encode_key(put.key))
    if len(set(keys)) != len(keys):
        return None  # the second write of a key must see the first
    revision = head_revision(index.seen_id, index.compacted)
    prevs = current_values(conn, index, keys)
    log_rows: list[LogRow] = []
    params: list[Any] = []
    results: list[PutResult] = []
    for put, key in zip(puts, keys, strict=True):
        revision += 1
        row_id = revision << REV_SHIFT
        prev = prevs.get(key)
        if prev is None:
            create_rev, version, prev_id, prev_kv = revision, 1, None, None
        else:
            prev_id, prev_kv = prev
            create_rev, version = prev_kv.create_revision, prev_kv.version + 1
        log_rows.append((row_id, key, put.value, create_rev, version, None, prev_id))
        params += (row_id, key, put.value, create_rev, version, prev_id)
        results.append(PutResult(revision=Revision(revision), prev_kv=prev_kv))
    try:
        conn.execute(_plain_insert(len(puts)), params)
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_BUSY:
            return None
        raise
    except sqlite3.IntegrityError as exc:
        if _STALE_ROWID in str(exc):
            return None
        raise
    index.record(log_rows)
    index.committed(log_rows[-1][0])
    return results


class PutWork:
    """A plain put as group-commit work; ``WriteBatch.put_many`` applies runs of them at once.

    A slotted class rather than a frozen dataclass: it is built on every put, and a
    frozen dataclass's ``__init__`` costs several times more."""

    __slots__ = ("key", "lease", "value")

    def __init__(self, key: str, value: bytes, lease: LeaseID | None) -> None:
        self.key = key
        self.value = value
        self.lease = lease

    def __call__(self, batch: WriteBatch) -> PutResult:
        batch.check_lease(self.lease)
        batch.begin_revision()
        result = batch.put(self.key, self.value, self.lease)
        batch.end_revision()
        return result


def _kv_only(found: tuple[int, KeyValue] | None) -> KeyValue | None:
    return found[1] if found else None
