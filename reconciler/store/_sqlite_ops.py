"""SQL reads and writes of the embedded store, on one connection.

Called by `_sqlite.SqliteStore`: reads run on a pooled reader connection inside
a read transaction (one snapshot per call); writes run inside the group
committer's batch transaction through a `WriteBatch`, which hands out rowids
(`revision << 20 | n`, see `_sqlite_schema`). Write helpers check everything
that can fail before they write, so a refused request leaves the shared batch
transaction untouched and the other writers in it unaffected.

The SQL strings are assembled from fixed fragments of this module (column
lists, key-bound clauses, `?` placeholder lists) and nothing a caller supplies;
every key, value and number travels as a bound parameter (hence the S608 noqa).
"""

from __future__ import annotations

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


def _bounds(lo: bytes, hi: bytes | None, column: str = "key") -> tuple[str, tuple[bytes, ...]]:
    if hi is None:
        return f"{column} >= ?", (lo,)
    return f"{column} >= ? AND {column} < ?", (lo, hi)


def compact_revision(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE name = 'compact_revision'").fetchone()
    return int(row[0])


def current_revision(conn: sqlite3.Connection) -> int:
    """max(last rowid's revision, compaction point, 1): compaction may delete the newest
    tombstones, and etcd starts at revision 1, so neither makes the revision go back."""
    max_id, compacted = conn.execute(
        "SELECT (SELECT max(id) FROM log),"
        " (SELECT value FROM meta WHERE name = 'compact_revision')"
    ).fetchone()
    last = (max_id >> REV_SHIFT) if max_id is not None else 0
    return max(last, int(compacted), 1)


def current_kv(conn: sqlite3.Connection, key: bytes) -> tuple[int, KeyValue] | None:
    row = conn.execute(
        f"SELECT {_KV_COLUMNS} FROM current c JOIN log l ON l.id = c.id WHERE c.key = ?", (key,)  # noqa: S608
    ).fetchone()
    if row is None:
        return None
    return row[3], kv_from_row(row)


def range_kvs(
    conn: sqlite3.Connection,
    lo: bytes,
    hi: bytes | None,
    *,
    at_revision: int | None,
    limit: int | None,
    header_revision: int,
) -> RangeResult:
    """Keys in [lo, hi) now, or as of `at_revision`; the caller holds a read snapshot."""
    where, args = _bounds(lo, hi)
    c_where, _ = _bounds(lo, hi, "c.key")
    limit_sql = " LIMIT ?" if limit else ""
    limit_args: tuple[int, ...] = (limit,) if limit else ()
    if at_revision is None:
        rows = conn.execute(
            f"SELECT {_KV_COLUMNS} FROM current c JOIN log l ON l.id = c.id"  # noqa: S608
            f" WHERE {c_where} ORDER BY c.key{limit_sql}",
            args + limit_args,
        ).fetchall()
        count_sql = f"SELECT count(*) FROM current WHERE {where}"  # noqa: S608
        count_args: tuple[Any, ...] = args
    else:
        compacted = compact_revision(conn)
        if at_revision < compacted:
            raise Compacted(requested=at_revision, compact_revision=compacted)
        if at_revision > header_revision:
            raise FutureRevision(
                f"revision {at_revision} is in the future (current {header_revision})"
            )
        bound = (at_revision + 1) << REV_SHIFT
        newest = f"SELECT max(id) FROM log WHERE {where} AND id < ? GROUP BY key"  # noqa: S608
        rows = conn.execute(
            f"SELECT {_KV_COLUMNS} FROM log l WHERE l.id IN ({newest}) AND l.deleted = 0"  # noqa: S608
            f" ORDER BY l.key{limit_sql}",
            (*args, bound, *limit_args),
        ).fetchall()
        count_sql = f"SELECT count(*) FROM log WHERE id IN ({newest}) AND deleted = 0"  # noqa: S608
        count_args = (*args, bound)
    kvs = tuple(kv_from_row(row) for row in rows)
    count = len(kvs)
    if limit and count == limit:
        count = conn.execute(count_sql, count_args).fetchone()[0]
    return RangeResult(
        kvs=kvs, revision=Revision(header_revision), count=count, more=count > len(kvs)
    )


class WriteBatch:
    """The state of one group-commit transaction: the connection, the clock, and
    the revision counter that every request in the batch advances in turn."""

    def __init__(self, conn: sqlite3.Connection, *, now: float) -> None:
        self.conn = conn
        self.now = now
        self.revision = current_revision(conn)
        self._open: int | None = None
        self._events = 0
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
        prev = current_kv(self.conn, encoded)
        row_id = self.next_id()
        revision = row_id >> REV_SHIFT
        if prev is None:
            create_rev, version, prev_id, prev_kv = revision, 1, None, None
        else:
            prev_id, prev_kv = prev
            create_rev, version = prev_kv.create_revision, prev_kv.version + 1
        self.conn.execute(
            "INSERT INTO log (id, key, deleted, value, create_rev, version, lease, prev_id)"
            " VALUES (?, ?, 0, ?, ?, ?, ?, ?)",
            (row_id, encoded, value, create_rev, version, lease, prev_id),
        )
        return PutResult(revision=Revision(revision), prev_kv=prev_kv)

    def put_many(self, puts: Sequence[PutWork]) -> list[PutResult | StoreError]:
        """Plain puts from different writers, one revision each, in a few statements.

        The group commit's fast path: per-put Python and SQLite call overhead, not
        the fsync, is what limits a batch of 64 writers, so the previous values
        are fetched with one query and the rows written with `executemany`.
        """
        keys = [encode_key(p.key) for p in puts]
        if len(set(keys)) != len(keys):
            # Two writers raced on one key: apply one by one so the second sees the first.
            return [self._put_alone(p) for p in puts]
        prevs: dict[bytes, tuple[int, KeyValue]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                f"SELECT {_KV_COLUMNS} FROM current c JOIN log l ON l.id = c.id"  # noqa: S608
                f" WHERE c.key IN ({marks})",
                chunk,
            ):
                prevs[bytes(row[0])] = (row[3], kv_from_row(row))
        log_rows: list[tuple[Any, ...]] = []
        results: list[PutResult | StoreError] = []
        for put, key in zip(puts, keys, strict=True):
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
            self.conn.executemany(
                "INSERT INTO log (id, key, deleted, value, create_rev, version, lease, prev_id)"
                " VALUES (?, ?, 0, ?, ?, ?, ?, ?)",
                log_rows,
            )
            self.wrote = True
        return results

    def _put_alone(self, put: PutWork) -> PutResult | StoreError:
        try:
            return put(self)
        except LeaseNotFound as exc:
            return exc

    def delete(self, key: str, *, prefix: bool) -> DeleteResult:
        lo, hi = key_range(key, prefix=prefix)
        where, args = _bounds(lo, hi, "c.key")
        rows = self.conn.execute(
            f"SELECT {_KV_COLUMNS} FROM current c JOIN log l ON l.id = c.id"  # noqa: S608
            f" WHERE {where} ORDER BY c.key",
            args,
        ).fetchall()
        return self._delete_rows(rows)

    def delete_lease_keys(self, lease: int) -> DeleteResult:
        rows = self.conn.execute(
            f"SELECT {_KV_COLUMNS} FROM current c JOIN log l ON l.id = c.id"  # noqa: S608
            " WHERE c.lease = ? ORDER BY c.key",
            (lease,),
        ).fetchall()
        return self._delete_rows(rows)

    def _delete_rows(self, rows: list[Any]) -> DeleteResult:
        if len(rows) > MAX_EVENTS_PER_REVISION:
            raise StoreError(
                f"deleting {len(rows)} keys in one revision exceeds {MAX_EVENTS_PER_REVISION}"
            )
        prev_kvs = []
        for row in rows:
            encoded, prev_id = bytes(row[0]), row[3]
            row_id = self.next_id()
            self.conn.execute(
                "INSERT INTO log (id, key, deleted, value, create_rev, version, lease, prev_id)"
                " VALUES (?, ?, 1, NULL, 0, 0, NULL, ?)",
                (row_id, encoded, prev_id),
            )
            prev_kvs.append(kv_from_row(row))
        return DeleteResult(
            revision=Revision(self.pending_revision), deleted=len(rows), prev_kvs=tuple(prev_kvs)
        )

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> TxnResult:
        succeeded = all(
            compare.holds(_kv_only(current_kv(self.conn, encode_key(compare.key))))
            for compare in compares
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
                        self.conn, lo, hi, at_revision=None, limit=op.limit,
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
        # The order matters: first drop every row superseded by a newer row at or
        # before `revision` (that row stays: it is the key's value at `revision`),
        # then tombstones older than `revision`. Tombstones AT `revision` stay, so a
        # watch from `revision - 1` (etcd's oldest allowed start) still sees them.
        bound = (revision + 1) << REV_SHIFT
        self.conn.execute(
            "DELETE FROM log WHERE id < ? AND id < "
            "(SELECT max(n.id) FROM log n WHERE n.key = log.key AND n.id < ?)",
            (bound, bound),
        )
        self.conn.execute(
            "DELETE FROM log WHERE id < ? AND deleted = 1", (revision << REV_SHIFT,)
        )
        self.conn.execute(
            "UPDATE meta SET value = ? WHERE name = 'compact_revision'", (revision,)
        )


class PutWork:
    """A plain put as group-commit work; `WriteBatch.put_many` applies runs of them at once.

    A slotted class rather than a frozen dataclass: it is built on every put, and a
    frozen dataclass's `__init__` costs several times more."""

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
