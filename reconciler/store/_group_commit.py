"""Group commit for the embedded store: many writers, one SQLite transaction, one fsync.

Used by ``_sqlite.SqliteStore`` for every write. Leader/follower, as in
LevelDB's and RocksDB's write queues: a writer enqueues its work; if no commit
is running it becomes the leader, takes the whole queue, applies it in one
transaction, commits (one fsync), promotes the oldest waiting writer to lead
the next batch, and wakes the writers it carried as a chain: it wakes the
first, and each woken writer wakes the next before it returns. A lone writer
therefore commits on its own thread with no hand-off (single-writer latency
stays close to the fsync), while 64 writers share each fsync (throughput
scales past the fsync rate).

WARNING: each writer parks on its own raw lock (acquired at creation, acquired
again to wait, released by the leader to wake it). One shared condition with
``notify_all`` woke all 64 writers after every batch only for most of them to go
back to sleep, and ``threading.Event`` runs a Condition in Python on both sides;
under the GIL either cost more per write than the fsync they share.

Writers that queue while the leader opens its transaction join that batch (``join_late``):
with the key index in memory a bigger batch costs no more pages, so what bounds throughput is
Python's time per write, not the commit. The leader wakes its batch as a chain (each woken
writer, now holding the GIL, wakes the next) rather than all at once, because writers woken
together only queue again for the GIL the leader still holds; the price is a wake-up per
earlier writer in the batch, well under an fsync. (Figures: bench/store.py and the commit
messages of this file.)
WARNING: a parked writer must pass the chain on; nothing between its wake-up and
``next.wake.release()`` may raise. (A KeyboardInterrupt landing in a main thread
parked here would strand the rest of its batch; the process is going down then.)
The successor is woken before the chain starts, so the next batch can open while
the chain runs.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

C = TypeVar("C")
T = TypeVar("T")


class Pending(Generic[C, T]):
    """One writer's work (run with the batch's context) and, once committed, its outcome."""

    __slots__ = ("done", "error", "next", "result", "wake", "work")

    def __init__(self, work: Callable[[C], T]) -> None:
        self.work = work
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None
        #: The writer of the same batch this one wakes once it is awake itself.
        self.next: Pending[C, Any] | None = None
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommitter(Generic[C]):
    """Serialises writers into batches handed to ``commit_batch``.

    ``commit_batch(batch)`` must run every ``Pending.work`` in order (passing its
    context) inside one transaction, commit, and only then store each outcome
    (``result`` or ``error``); if it raises, every writer of the batch gets that
    exception. It is only ever called by one thread at a time.
    """

    def __init__(self, commit_batch: Callable[[list[Pending[C, Any]]], None]) -> None:
        self._commit_batch = commit_batch
        self._lock = threading.Lock()
        self._queue: list[Pending[C, Any]] = []
        self._leading = False

    def submit(self, work: Callable[[C], T]) -> T:
        """Run ``work`` in the next batch; returns its result once the batch is durable."""
        pending: Pending[C, T] = Pending(work)
        with self._lock:
            self._queue.append(pending)
            lead = not self._leading
            self._leading = True
        if not lead:
            pending.wake.acquire()
            if pending.next is not None:
                pending.next.wake.release()
        if not pending.done:
            # We lead this batch: either nobody was committing, or the last
            # leader promoted us (leadership passes on without being released).
            self._lead(pending)
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

    def join_late(self, batch: list[Pending[C, Any]]) -> None:
        """Add the writers that queued since ``batch`` was taken (called by ``commit_batch``
        once its transaction is open, so they share this batch's fsync)."""
        with self._lock:
            batch.extend(self._queue)
            self._queue = []

    def _lead(self, leader: Pending[C, Any]) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            self._commit_batch(batch)
        except BaseException as exc:
            # Nothing of this batch is durable: every writer in it hears the failure.
            for item in batch:
                item.result, item.error = None, exc
        with self._lock:
            for item in batch:
                item.done = True
            successor = self._queue[0] if self._queue else None
            self._leading = successor is not None
        if successor is not None:
            successor.wake.release()
        carried = [item for item in batch if item is not leader]
        for item, after in itertools.pairwise(carried):
            item.next = after
        if carried:
            carried[0].wake.release()
