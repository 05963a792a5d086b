"""Group commit for the embedded store: many writers, one SQLite transaction, one fsync.

Used by `_sqlite.SqliteStore` for every write. Leader/follower, as in
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
`notify_all` woke all 64 writers after every batch only for most of them to go
back to sleep, and `threading.Event` runs a Condition in Python on both sides;
under the GIL either cost more per write than the fsync they share.

Measured 2026-11-27 (2 vCPUs, other sessions' tests running; +-15% run to run).
With the key index on disk (format 1) a batch of 64 puts dirtied ~130 index
leaves (each writer's keys in their own range), ~0.5 MB of WAL to fdatasync, and
64 writers topped out at 18-22k puts/s. With the index in memory (format 2) a
batch dirties the log's last few leaves, and what bounds 64 writers is Python:
each put costs ~30 us of GIL time between the writer's call, the leader's share
of the batch and the wake-up, and the leader spends ~80% of the run inside a
commit, most of it waiting for the GIL the other writers hold. Since a bigger
batch no longer costs more pages, the store lets writers that queued while it
opened the transaction join it (`join_late`): 26.2k -> 30.0k puts/s in
interleaved A/B runs of two stores (6 rounds each).
With each batch then a single INSERT (`_sqlite_ops.put_plain`), the process ran
on one core's worth of CPU, ~19 us user and ~22 us system a put: the system half
is futex calls and context switches (2.6 voluntary, 0.9 involuntary a put), as
the leader released 30-60 parked writers at once and every one of them woke
only to queue for the GIL the leader still held. Waking them as a chain (each
woken writer, now holding the GIL, releases the next) measured 28.9k-31.3k vs
23.0k-24.5k puts/s in three interleaved A/B runs of two stores. Under format 1,
where the commit itself cost more, the chain was a wash. The price is latency
for the last writer of a batch, one wake-up per writer before it (~0.3 ms for
40), well inside what an fsync costs.
WARNING: a parked writer must pass the chain on; nothing between its wake-up and
`next.wake.release()` may raise. (A KeyboardInterrupt landing in a main thread
parked here would strand the rest of its batch; the process is going down then.)
The successor is woken before the chain starts, so the next batch can open while
the chain runs (under format 1 that order alone made no measurable difference).
Tried, not kept: `sys.setswitchinterval` 0.2 ms (worse) and 50 ms (no change).
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
    """Serialises writers into batches handed to `commit_batch`.

    `commit_batch(batch)` must run every `Pending.work` in order (passing its
    context) inside one transaction, commit, and only then store each outcome
    (`result` or `error`); if it raises, every writer of the batch gets that
    exception. It is only ever called by one thread at a time.
    """

    def __init__(self, commit_batch: Callable[[list[Pending[C, Any]]], None]) -> None:
        self._commit_batch = commit_batch
        self._lock = threading.Lock()
        self._queue: list[Pending[C, Any]] = []
        self._leading = False

    def submit(self, work: Callable[[C], T]) -> T:
        """Run `work` in the next batch; returns its result once the batch is durable."""
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
        """Add the writers that queued since `batch` was taken (called by `commit_batch`
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
