"""Watches on the embedded store: a rowid range scan woken at commit.

Created by ``SqliteStore.watch``. Each watch owns a read connection and
remembers the last rowid it has looked past, so it resumes exactly after it: no
gap, no duplicate, in commit order (rowids are handed out under SQLite's write
lock, so they grow in commit order even across processes). In-process commits
wake it through the store's condition variable; to see other processes' writes it
re-reads after ``cross_process_poll_s`` (default 50 ms, inside the 100 ms promise)
when no local commit woke it.

A wake-up only reads SQLite when the store's last committed rowid is past the
watch's (or the cross-process poll is due): the API server keeps a watch per
cache and per client, and a read transaction per watch per commit was most of
the store statements a PUT cost there. A read that finds nothing in the watch's
range still moves it past the rows it skipped, so it does not read them again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from reconciler.store._base import Watch
from reconciler.store._errors import Compacted
from reconciler.store._sqlite_index import read_head
from reconciler.store._sqlite_schema import REV_SHIFT
from reconciler.store._types import Event, EventType, KeyValue, LeaseID, Revision

_BATCH_ROWS = 1000


class CommitSignal(Protocol):
    """What a watch needs from its store: a commit counter and a condition to wait on."""

    @property
    def commit_seq(self) -> int: ...

    @property
    def commit_cond(self) -> threading.Condition: ...

    @property
    def last_id(self) -> int:
        """The newest rowid this process knows is committed (others' appear by polling)."""
        ...


class SqliteWatch(Watch):
    def __init__(
        self,
        *,
        connect: Callable[[], sqlite3.Connection],
        signal: CommitSignal,
        lo: bytes,
        hi: bytes | None,
        after: int,
        cross_process_poll_s: float,
        on_close: Callable[[SqliteWatch], None],
    ) -> None:
        super().__init__()
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        self._signal = signal
        self._lo, self._hi = lo, hi
        self._after_id = ((after + 1) << REV_SHIFT) - 1
        self._poll_s = cross_process_poll_s
        self._next_poll = 0.0
        self._on_close = on_close
        self._closed = False
        # Held while a fetch uses the connection, so close() never closes it mid-query.
        self._conn_lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._signal.commit_cond:
            self._signal.commit_cond.notify_all()
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._on_close(self)

    def poll(self, timeout: float | None) -> list[Event]:
        deadline = None if timeout is None else time.monotonic() + timeout
        cond = self._signal.commit_cond
        while not self._closed:
            # Read the commit counter BEFORE fetching: a commit landing after the
            # fetch changes it, so the wait below cannot sleep through that commit.
            with cond:
                seen = self._signal.commit_seq
            if self._signal.last_id > self._after_id or time.monotonic() >= self._next_poll:
                events = self._fetch()
                if events:
                    return events
            wait = self._poll_s
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                wait = min(wait, remaining)
            with cond:
                if self._signal.commit_seq == seen and not self._closed:
                    cond.wait(wait)
        return []

    def _fetch(self) -> list[Event]:
        with self._conn_lock:
            if self._closed:
                return []
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            where = "+l.key >= ?" + ("" if self._hi is None else " AND +l.key < ?")
            args: tuple[object, ...] = (self._lo,) if self._hi is None else (self._lo, self._hi)
            self._next_poll = time.monotonic() + self._poll_s
            conn.execute("BEGIN")
            try:
                last_id, compacted = read_head(conn)
                wanted = (self._after_id + 1) >> REV_SHIFT
                if wanted < compacted:
                    raise Compacted(requested=wanted - 1, compact_revision=compacted)
                rows = conn.execute(
                    "SELECT l.id, l.key, l.deleted, l.value, l.create_rev, l.version, l.lease,"  # noqa: S608
                    " p.id, p.value, p.create_rev, p.version, p.lease"
                    " FROM log l LEFT JOIN log p ON p.id = l.prev_id"
                    f" WHERE l.id > ? AND {where} ORDER BY l.id LIMIT ?",
                    (self._after_id, *args, _BATCH_ROWS),
                ).fetchall()
            finally:
                conn.execute("COMMIT")
        events = [_event(row) for row in rows]
        if len(rows) == _BATCH_ROWS:
            self._after_id = rows[-1][0]
        else:
            # Everything up to the snapshot's last row has been looked at.
            self._after_id = max(self._after_id, last_id)
        return events


def _event(row: Sequence[Any]) -> Event:
    (
        row_id,
        key_b,
        deleted,
        value,
        create_rev,
        version,
        lease,
        p_id,
        p_value,
        p_create,
        p_version,
        p_lease,
    ) = row
    key = bytes(key_b).decode("utf-8")
    revision = Revision(row_id >> REV_SHIFT)
    prev = None
    if p_id is not None:
        prev = KeyValue(
            key=key,
            value=bytes(p_value),
            create_revision=Revision(p_create),
            mod_revision=Revision(p_id >> REV_SHIFT),
            version=p_version,
            lease=LeaseID(p_lease) if p_lease else None,
        )
    if deleted:
        kv = KeyValue(
            key=key, value=b"", create_revision=Revision(0), mod_revision=revision, version=0
        )
        return Event(EventType.DELETE, kv, prev, revision)
    kv = KeyValue(
        key=key,
        value=bytes(value),
        create_revision=Revision(create_rev),
        mod_revision=revision,
        version=version,
        lease=LeaseID(lease) if lease else None,
    )
    return Event(EventType.PUT, kv, prev, revision)
