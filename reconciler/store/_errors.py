"""The store's error types, raised by both backends and caught by the API layer.

The API layer maps them to HTTP answers: ``Compacted`` to 410 Gone (the client
relists), ``ValueTooLarge`` to 413, ``LeaseNotFound`` to 404, ``StorageFull`` to 507,
anything else that is a ``StoreError`` to 503.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class Compacted(StoreError):
    """The requested revision is older than the store's compaction point.

    A watcher or an ``at_revision`` read asked for history that compaction has
    removed; the caller must relist at the current revision and watch from there.
    """

    def __init__(self, *, requested: int, compact_revision: int | None) -> None:
        where = f" (history starts at {compact_revision})" if compact_revision else ""
        super().__init__(
            f"revision {requested} has been compacted{where};"
            " relist and watch from the current revision"
        )
        self.requested = requested
        self.compact_revision = compact_revision


class FutureRevision(StoreError):
    """An ``at_revision`` read or a compaction asked for a revision not yet written."""


class ValueTooLarge(StoreError):
    """A value exceeds ``MAX_VALUE_BYTES`` (etcd's default request limit, 1.5 MiB)."""


class CorruptStore(StoreError):
    """The database file is damaged; the store refuses it rather than resetting it."""


class LeaseNotFound(StoreError):
    """The lease does not exist: never granted, revoked, or expired."""


class DuplicateKey(StoreError):
    """A transaction names the same key in two write operations (etcd forbids it)."""


class StorageFull(StoreError):
    """The store's disk is full (SQLite's ``SQLITE_FULL``, etcd's ``NOSPACE`` alarm): the
    write was refused whole and nothing of it is stored. Writes work again, without a
    restart, once there is space."""


class Unavailable(StoreError):
    """No endpoint of the store answered (etcd backend: every endpoint failed)."""
