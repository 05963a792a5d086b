"""The embedded store's key index: every key's rowids, in memory, as etcd keeps it.

Owned by ``_sqlite.SqliteStore``, written through by ``_sqlite_ops.WriteBatch`` and
read by every range. etcd's mvcc splits storage the same way: bbolt maps
revision -> key-value on disk, and ``treeIndex`` maps key -> revisions in memory,
rebuilt at start by one scan. Here the SQLite ``log`` table (rowid =
``revision << 20 | n``) is all there is on disk, so a durable put dirties one
B-tree page (the log's last leaf) instead of three (the log, a ``(key, id)``
index, a ``current`` table); with on-disk indexes each writer's keys dirtied
index leaves of their own, so a batch wrote many pages of WAL where it now
writes a few. (Figures: ``bench/store.py`` and the commit messages of this file.)

Entries: per key, the ascending rowids of its puts and deletes until
compaction; deletions in ``_tombstones``; leased rows in ``_leases``. A lookup asks
for the newest entry at or below a bound, so one index serves every snapshot.

Concurrency (one lock): a writer records a put or delete as soon as it INSERTs
it, so later requests of the same batch see it, and keeps an undo list for a
rollback. Readers never see those uncommitted entries: they look up "newest at
or below my snapshot's last rowid", and rowids of a transaction still open are
always above the last committed one. Other processes' commits are folded in by
``catch_up``, which every read and every batch runs against its own snapshot;
applying a row is idempotent, so two threads catching up at once is harmless.
"""

from __future__ import annotations

import sqlite3
import threading
from bisect import bisect_right
from collections.abc import Iterable, Sequence

from sortedcontainers import SortedList

from reconciler.store._sqlite_schema import REV_SHIFT

#: An index entry as a batch records it, so it can be undone: (key, rowid).
Entry = tuple[bytes, int]
#: A log row as a batch INSERTs it: (id, key, value or None for a deletion,
#: create_rev, version, lease, prev_id).
LogRow = tuple[int, bytes, bytes | None, int, int, int | None, int | None]


class KeyIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: SortedList = SortedList()
        self._ids: dict[bytes, list[int]] = {}
        self._tombstones: set[int] = set()
        self._leases: dict[int, int] = {}
        #: Every committed rowid up to here is in the index.
        self.seen_id = 0
        #: The compaction revision the index has applied.
        self.compacted = 0

    @classmethod
    def load(cls, conn: sqlite3.Connection) -> KeyIndex:
        """The index of everything committed in the file (one scan of the log, in rowid order)."""
        index = cls()
        conn.execute("BEGIN")
        try:
            last_id, compacted = read_head(conn)
            index.catch_up(conn, last_id=last_id, compacted=compacted)
        finally:
            conn.execute("COMMIT")
        return index

    # -- folding in committed rows -------------------------------------------------------

    def catch_up(self, conn: sqlite3.Connection, *, last_id: int, compacted: int) -> None:
        """Fold in rows committed by anyone up to ``last_id``, read in ``conn``'s snapshot.

        Cheap when nothing is new (two integer compares): the common case, since this
        process's own commits are recorded by the writer before they are acknowledged."""
        if last_id > self.seen_id:
            rows = conn.execute(
                "SELECT id, key, deleted, lease FROM log WHERE id > ? AND id <= ? ORDER BY id",
                (self.seen_id, last_id),
            ).fetchall()
            with self._lock:
                for row_id, key, deleted, lease in rows:
                    self._apply(bytes(key), row_id, deleted=bool(deleted), lease=lease)
                self.seen_id = max(self.seen_id, last_id)
        if compacted > self.compacted:
            # Another process compacted (ours apply theirs after commit): the same rule
            # over the same entries drops the same rows it deleted.
            self.compact(compacted)

    def _apply(self, key: bytes, row_id: int, *, deleted: bool, lease: int | None) -> bool:
        ids = self._ids.get(key)
        if ids is None:
            ids = self._ids[key] = []
            self._keys.add(key)
        elif ids[-1] >= row_id:
            return False
        ids.append(row_id)
        if deleted:
            self._tombstones.add(row_id)
        elif lease:
            self._leases[row_id] = lease
        return True

    # -- a write batch's entries ---------------------------------------------------------

    def record(self, rows: Sequence[LogRow]) -> list[Entry]:
        """Enter uncommitted rows now; the batch undoes them if its transaction rolls back."""
        with self._lock:
            for row_id, key, value, _, _, lease, _ in rows:
                self._apply(key, row_id, deleted=value is None, lease=lease)
        return [(row[1], row[0]) for row in rows]

    def undo(self, entries: Sequence[Entry]) -> None:
        """Take out entries ``record`` added, newest first (each is its key's newest)."""
        with self._lock:
            for key, row_id in reversed(entries):
                ids = self._ids[key]
                if ids[-1] != row_id:
                    raise AssertionError(f"undo of rowid {row_id} out of order for key {key!r}")
                ids.pop()
                self._tombstones.discard(row_id)
                self._leases.pop(row_id, None)
                if not ids:
                    del self._ids[key]
                    self._keys.remove(key)

    def committed(self, last_id: int) -> None:
        self.seen_id = max(self.seen_id, last_id)

    # -- lookups ---------------------------------------------------------------------------

    def newest(self, key: bytes, *, bound: int | None = None) -> int | None:
        """The rowid of ``key``'s live value at ``bound`` (None: including uncommitted rows)."""
        with self._lock:
            ids = self._ids.get(key)
            return None if ids is None else self._live(ids, bound)

    def newest_many(self, keys: Sequence[bytes]) -> list[Entry]:
        """``newest`` of several keys under one lock (a batch's previous values), live ones only."""
        found: list[Entry] = []
        with self._lock:
            for key in keys:
                ids = self._ids.get(key)
                if ids is not None and (row_id := self._live(ids, None)) is not None:
                    found.append((key, row_id))
        return found

    def live(
        self, lo: bytes, hi: bytes | None, *, bound: int | None, limit: int | None = None
    ) -> tuple[list[Entry], int]:
        """Live keys in [lo, hi) at ``bound``, in key order: up to ``limit`` of them, and their
        count."""
        found: list[Entry] = []
        count = 0
        with self._lock:
            for key in self._keys.irange(lo, hi, inclusive=(True, False)):
                row_id = self._live(self._ids[key], bound)
                if row_id is None:
                    continue
                count += 1
                if limit is None or len(found) < limit:
                    found.append((key, row_id))
        return found, count

    def with_lease(self, lease: int) -> list[Entry]:
        """Live keys whose value was written with ``lease``, in key order (a revoke's deletes).

        A walk over every key: revokes are rare next to puts, and a per-lease map
        would be one more structure for every put and undo to keep right."""
        with self._lock:
            return [
                (key, ids[-1])
                for key in self._keys
                if (ids := self._ids[key])[-1] not in self._tombstones
                and self._leases.get(ids[-1]) == lease
            ]

    def _live(self, ids: list[int], bound: int | None) -> int | None:
        if bound is None or ids[-1] <= bound:
            row_id = ids[-1]
        else:
            at = bisect_right(ids, bound)
            if at == 0:
                return None
            row_id = ids[at - 1]
        return None if row_id in self._tombstones else row_id

    # -- compaction ------------------------------------------------------------------------

    def compaction(self, revision: int) -> list[int]:
        """The rowids a compaction at ``revision`` deletes: every entry superseded by a newer
        one at or before ``revision`` (that newer one is the key's value at ``revision``, so it
        stays), and tombstones older than ``revision``. Tombstones AT ``revision`` stay, so a
        watch from ``revision - 1`` (etcd's oldest allowed start) still sees them."""
        with self._lock:
            return sorted(row_id for _, row_id in self._compacted_entries(revision))

    def compact(self, revision: int) -> None:
        with self._lock:
            for key, row_id in self._compacted_entries(revision):
                ids = self._ids[key]
                ids.remove(row_id)
                self._tombstones.discard(row_id)
                self._leases.pop(row_id, None)
                if not ids:
                    del self._ids[key]
                    self._keys.remove(key)
            self.compacted = max(self.compacted, revision)

    def _compacted_entries(self, revision: int) -> Iterable[Entry]:
        bound = ((revision + 1) << REV_SHIFT) - 1
        tombstone_bound = revision << REV_SHIFT
        doomed: list[Entry] = []
        for key, ids in self._ids.items():
            at = bisect_right(ids, bound)
            if at == 0:
                continue
            doomed.extend((key, row_id) for row_id in ids[: at - 1])
            newest = ids[at - 1]
            if newest in self._tombstones and newest < tombstone_bound:
                doomed.append((key, newest))
        return doomed


def read_head(conn: sqlite3.Connection) -> tuple[int, int]:
    """(the last rowid in the log or 0, the compaction revision), in one statement."""
    last_id, compacted = conn.execute(
        "SELECT (SELECT max(id) FROM log), (SELECT value FROM meta WHERE name = 'compact_revision')"
    ).fetchone()
    return int(last_id or 0), int(compacted)


def head_revision(last_id: int, compacted: int) -> int:
    """max(last rowid's revision, compaction point, 1): compaction may delete the newest
    tombstones, and etcd starts at revision 1, so neither makes the revision go back."""
    return max(last_id >> REV_SHIFT, compacted, 1)
