"""The embedded store's in-memory key index: lookups at a bound, undo, compaction, and
staying right when another store (another process, as far as SQLite can tell) writes
or compacts the same file, plus opening a file written before the index moved."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reconciler.store import Compacted, Op, open_store
from reconciler.store._sqlite_index import KeyIndex
from reconciler.store._sqlite_schema import REV_SHIFT


def _row(revision: int, key: bytes, *, deleted: bool = False, n: int = 0):
    value = None if deleted else b"v"
    return ((revision << REV_SHIFT) | n, key, value, revision, 1, None, None)


def _at(revision: int) -> int:
    return ((revision + 1) << REV_SHIFT) - 1


def test_lookups_see_the_newest_entry_at_or_below_the_bound() -> None:
    index = KeyIndex()
    index.record([_row(1, b"/a"), _row(2, b"/b"), _row(3, b"/a"), _row(4, b"/b", deleted=True)])
    assert index.newest(b"/a") == 3 << REV_SHIFT
    assert index.newest(b"/a", bound=_at(2)) == 1 << REV_SHIFT
    assert index.newest(b"/b") is None, "deleted at 4"
    assert index.newest(b"/b", bound=_at(3)) == 2 << REV_SHIFT
    assert index.newest(b"/c") is None
    found, count = index.live(b"/", None, bound=_at(3))
    assert found == [(b"/a", 3 << REV_SHIFT), (b"/b", 2 << REV_SHIFT)]
    assert count == 2
    found, count = index.live(b"/", None, bound=_at(3), limit=1)
    assert found == [(b"/a", 3 << REV_SHIFT)]
    assert count == 2, "count covers the whole range"
    assert index.live(b"/", None, bound=None) == ([(b"/a", 3 << REV_SHIFT)], 1)


def test_undo_takes_out_exactly_what_a_rolled_back_batch_recorded() -> None:
    index = KeyIndex()
    index.record([_row(1, b"/a")])
    entries = index.record([_row(2, b"/a"), _row(2, b"/new", n=1), _row(3, b"/a", deleted=True)])
    index.undo(entries)
    assert index.newest(b"/a") == 1 << REV_SHIFT
    assert index.newest(b"/new") is None
    assert index.live(b"", None, bound=None) == ([(b"/a", 1 << REV_SHIFT)], 1)


def test_compaction_keeps_each_keys_value_at_the_revision_and_later_entries() -> None:
    index = KeyIndex()
    index.record(
        [
            _row(1, b"/a"),
            _row(2, b"/a"),
            _row(3, b"/b"),
            _row(4, b"/b", deleted=True),
            _row(5, b"/c"),
            _row(6, b"/c", deleted=True),
            _row(7, b"/a"),
        ]
    )
    doomed = index.compaction(6)
    # /a@1 superseded by /a@2 (kept: its value at 6); /b@3 superseded by its tombstone @4,
    # which is older than 6 and goes too; /c's tombstone AT 6 stays, its put @5 goes.
    assert doomed == sorted(r << REV_SHIFT for r in (1, 3, 4, 5))
    index.compact(6)
    assert index.newest(b"/a", bound=_at(6)) == 2 << REV_SHIFT
    assert index.newest(b"/a") == 7 << REV_SHIFT
    assert index.live(b"", None, bound=None)[1] == 1
    assert index.compaction(6) == [], "compacting twice deletes nothing more"


def test_two_stores_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/state.db"
    with open_store(url) as one, open_store(url) as two:
        created = one.put("/k", b"1").revision
        two.put("/k", b"2")  # its index catches up before writing: version 2, not 1
        two.put("/other", b"x")
        again = one.put("/k", b"3")
        assert again.prev_kv is not None
        assert again.prev_kv.value == b"2"
        kv = one.get("/k")
        assert kv is not None
        assert (kv.value, kv.version, kv.create_revision) == (b"3", 3, created)
        assert [kv.key for kv in one.range("/", prefix=True).kvs] == ["/k", "/other"]
        deleted = two.delete("/", prefix=True)
        assert deleted.deleted == 2
        assert one.range("/", prefix=True).kvs == ()
        result = one.txn([], [Op.put("/k", b"4")])
        assert result.succeeded
        assert one.get("/k").version == 1  # type: ignore[union-attr]


def test_a_compaction_by_another_store_reaches_this_ones_reads(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/state.db"
    with open_store(url) as one, open_store(url) as two:
        revisions = [one.put("/k", str(i).encode()).revision for i in range(5)]
        early = revisions[1]
        assert one.get("/k", at_revision=early).value == b"1"  # type: ignore[union-attr]
        two.compact(revisions[3])
        with pytest.raises(Compacted):
            one.get("/k", at_revision=early)
        assert one.get("/k").value == b"4"  # type: ignore[union-attr]
        assert one.get("/k", at_revision=revisions[3]).value == b"3"  # type: ignore[union-attr]
        one.put("/k", b"5")
        assert one.get("/k").version == 6  # type: ignore[union-attr]


_FORMAT_1 = """
CREATE TABLE log (id INTEGER PRIMARY KEY, key BLOB NOT NULL, deleted INTEGER NOT NULL,
    value BLOB, create_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER,
    prev_id INTEGER);
CREATE INDEX log_key_id ON log (key, id);
CREATE TABLE current (key BLOB PRIMARY KEY, id INTEGER NOT NULL, lease INTEGER) WITHOUT ROWID;
CREATE INDEX current_lease ON current (lease) WHERE lease IS NOT NULL;
CREATE TRIGGER log_to_current AFTER INSERT ON log BEGIN
    INSERT OR REPLACE INTO current (key, id, lease)
        SELECT NEW.key, NEW.id, NEW.lease WHERE NEW.deleted = 0;
    DELETE FROM current WHERE NEW.deleted = 1 AND key = NEW.key;
END;
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE leases (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL, expires_at REAL NOT NULL);
INSERT INTO meta (name, value) VALUES ('format', 1), ('compact_revision', 0);
INSERT INTO log VALUES (1048576, X'2F61', 0, X'31', 1, 1, NULL, NULL);
INSERT INTO log VALUES (2097152, X'2F62', 0, X'32', 2, 1, NULL, NULL);
INSERT INTO log VALUES (3145728, X'2F61', 0, X'33', 1, 2, NULL, 1048576);
"""


def test_a_format_1_file_opens_and_loses_its_on_disk_key_index(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_FORMAT_1)
    conn.close()
    with open_store(f"sqlite://{db}") as store:
        assert [(kv.key, kv.value, kv.version) for kv in store.range("/", prefix=True).kvs] == [
            ("/a", b"3", 2),
            ("/b", b"2", 1),
        ]
        assert store.put("/a", b"4").revision == 4
    with sqlite3.connect(db) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        fmt = conn.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
    conn.close()
    assert fmt == (2,)
    assert not names & {"current", "log_key_id", "current_lease", "log_to_current"}


def test_a_stale_index_never_writes_below_a_row_another_store_compacted_away(
    tmp_path: Path,
) -> None:
    url = f"sqlite://{tmp_path}/state.db"
    with open_store(url) as one, open_store(url) as two:
        one.put("/seen", b"0")
        first = two.put("/x", b"1").revision
        second = two.put("/x", b"2").revision
        two.compact(second)  # drops /x@first: no row is left at one's next rowid
        written = one.put("/y", b"3")
        assert written.revision == second + 1, f"revision went back to {first}?"
        assert [kv.key for kv in one.range("/", prefix=True).kvs] == ["/seen", "/x", "/y"]


def test_the_log_refuses_a_row_id_below_the_last_one(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with open_store(f"sqlite://{db}") as store:
        store.put("/a", b"1")
        store.put("/b", b"1")
    with sqlite3.connect(db) as conn, pytest.raises(sqlite3.IntegrityError, match="not above"):
        conn.execute(
            "INSERT INTO log (id, key, deleted, value, create_rev, version)"
            " VALUES (1, x'2f', 0, x'', 1, 1)"
        )
    conn.close()
