"""Opening the embedded store's SQLite file: pragmas, schema, and the corruption check.

Called once per connection by ``_sqlite.SqliteStore``. The layout is kine's (k3s'
etcd shim) adapted to etcd's transactions:

- ``log`` is append-only. kine makes the rowid the revision; an etcd txn writes
  several keys under ONE revision, so here the rowid is ``revision << 20 | n``
  (n = the event's index within its revision). Rowid order is still revision
  order, ``max(rowid) >> 20`` is the current revision with no extra index, and a
  watch is a rowid range scan. The price: at most 2**20 events per revision (a
  prefix delete or lease revoke of more keys is refused) and 2**43 revisions.
- No index on ``key`` and no table of current values: the key index lives in
  memory (``_sqlite_index.KeyIndex``, as etcd's ``treeIndex`` does), so a durable
  put dirties one page. Format 1 files kept both (a ``log_key_id`` index and a
  ``current`` table filled by a trigger); opening one drops them (format 2).
- ``log_ids_grow`` refuses a row whose id is not above every row already there,
  so revisions cannot go backwards whoever writes, and a writer that took its
  rowids from a stale view of the log (``_sqlite_ops.put_plain``) is refused
  rather than trusted (compaction never deletes the newest row, so max(id)
  never falls).
- ``meta`` holds the compaction point; ``leases`` the lease deadlines (wall clock,
  so several processes sharing the file agree on expiry).

WAL mode with ``synchronous=FULL``: every COMMIT fsyncs the WAL before returning,
so an acknowledged write survives kill -9 and power loss.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from reconciler._private import FILE_MODE
from reconciler.store._errors import CorruptStore, StoreError

REV_SHIFT = 20
#: Page cache of every connection but the writer (readers, watches, the lease sweeper), KiB.
#: SQLite's default (2,000 KiB) is per connection, and the readers are as many as the reads
#: ever made at once: each filled its own copy of the hot pages. The OS's page cache still
#: holds the file once for all of them.
READER_CACHE_KIB = 512
MAX_EVENTS_PER_REVISION = 1 << REV_SHIFT
FORMAT = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id          INTEGER PRIMARY KEY,
    key         BLOB NOT NULL,
    deleted     INTEGER NOT NULL,
    value       BLOB,
    create_rev  INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    lease       INTEGER,
    prev_id     INTEGER
);
CREATE TRIGGER IF NOT EXISTS log_ids_grow BEFORE INSERT ON log
    WHEN NEW.id <= (SELECT max(id) FROM log)
BEGIN
    SELECT RAISE(ABORT, 'capstan: log row id is not above the last one');
END;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id         INTEGER PRIMARY KEY,
    ttl        INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('format', 2), ('compact_revision', 0);
"""

# Format 1 -> 2: the key index moved into memory (see the module docstring).
_FROM_FORMAT_1 = """
DROP TRIGGER IF EXISTS log_to_current;
DROP INDEX IF EXISTS current_lease;
DROP TABLE IF EXISTS current;
DROP INDEX IF EXISTS log_key_id;
UPDATE meta SET value = 2 WHERE name = 'format';
"""

_TABLES = {"log", "meta", "leases"}


# SQLite's primary result codes that mean "this file is damaged or not a database".
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def _make_private(path: Path) -> None:
    """The store holds Secret values: 0600 before SQLite opens it (SQLite gives -wal and -shm
    the database's mode), and an older, wider file narrowed.

    WARNING: an existing file is never opened here. Closing any descriptor of a file drops
    every POSIX lock this process holds on it, SQLite's included (its documented trap), and
    another store of this process may have it open.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        os.chmod(path, FILE_MODE)
    else:
        # New: no connection can hold a lock on it yet. fchmod: the umask must not narrow or
        # widen it either.
        os.fchmod(fd, FILE_MODE)
        os.close(fd)
    for sidecar in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{sidecar}", FILE_MODE)


def connect(path: Path, *, check: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT ourselves).

    With ``check``, also create the schema if the file is new and verify an
    existing one; only the first connection of a store does that (the writer). The
    others get a page cache of ``READER_CACHE_KIB``.
    """
    if not path.parent.is_dir():
        raise StoreError(f"cannot open store {path}: directory {path.parent} does not exist")
    if check:
        _make_private(path)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"store file {path}: cannot switch to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
        if not check:
            conn.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
        # WARNING: a reader must never see a half-applied schema; only the checking
        # connection creates it, inside one IMMEDIATE transaction.
        if check:
            _check_and_create(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            raise CorruptStore(
                f"store file {path} is damaged or not a database ({exc}); refusing to open it."
                " Restore it from a backup or move it aside; it was not modified."
            ) from exc
        raise StoreError(f"cannot open store file {path}: {exc}") from exc
    except StoreError:
        conn.close()
        raise
    return conn


def _statements(script: str) -> list[str]:
    """Split a script into statements (a trigger body's ``;`` stays inside its statement)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [statement for statement in statements if statement]


def _check_and_create(conn: sqlite3.Connection, path: Path) -> None:
    result = conn.execute("PRAGMA quick_check").fetchall()
    if result != [("ok",)]:
        problems = "; ".join(str(row[0]) for row in result[:5])
        raise CorruptStore(
            f"store file {path} failed SQLite's integrity check ({problems}); refusing to open it."
            " Restore it from a backup or move it aside; it was not modified."
        )
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if names and not names >= _TABLES:
        raise CorruptStore(
            f"{path} is an SQLite database but not a Capstan store (tables: {sorted(names)})"
        )
    conn.execute("BEGIN IMMEDIATE")
    for statement in _statements(_SCHEMA):
        conn.execute(statement)
    if conn.execute("SELECT value FROM meta WHERE name = 'format'").fetchone() == (1,):
        for statement in _statements(_FROM_FORMAT_1):
            conn.execute(statement)
    conn.execute("COMMIT")
    fmt = conn.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
    if fmt is None or fmt[0] != FORMAT:
        raise CorruptStore(f"store file {path} has format {fmt}, this Capstan reads {FORMAT}")
