"""Group commit for the embedded store: many writers, one SQLite transaction, one fsync.

Used by `_sqlite.SqliteStore` for every write. Leader/follower, as in
LevelDB's and RocksDB's write queues: a writer enqueues its work; if no commit
is running it becomes the leader, takes the whole queue, applies it in one
transaction, commits (one fsync), and wakes exactly the writers it carried,
then promotes the oldest waiting writer to lead the next batch. A lone writer
therefore commits on its own thread with no hand-off (single-writer latency
stays close to the fsync), while 64 writers share each fsync (throughput
scales past the fsync rate).

WARNING: each writer parks on its own raw lock (acquired at creation, acquired
again to wait, released by the leader to wake it). One shared condition with
`notify_all` woke all 64 writers after every batch only for most of them to go
back to sleep, and `threading.Event` runs a Condition in Python on both sides;
under the GIL either cost more per write than the fsync they share.

Measured 2026-11-27 (2 vCPUs, other sessions' tests running; +-15% run to run),
none kept because none beat that noise in interleaved A/B runs of two stores:
- Waking the batch as a chain (each woken writer releases the next) instead of
  64 releases at once: 2.7 instead of 3.7 context switches per put, but CPU per
  put 40.1 vs 39.4 us and writes/s 20.9k vs 20.1k, 17.7k vs 16.7k: a wash.
- Taking the queue only after BEGIN (so woken writers can join this batch):
  mean batch 33 -> 58 writers, but the commit grew with it (65 us per put).
- Waking the successor before the carried writers; `sys.setswitchinterval`
  0.2 ms (worse: 11.8k/s) and 50 ms (no change); waking the carried writers
  only after the next leader's reads: no gain.
What bounds 64 writers is the commit itself, not this hand-off: one thread
running `_commit_batch` on ideal batches of 64 puts, with no other thread,
reaches 20-24k puts/s (40-49 us a put; the COMMIT alone 1.7-2.1 ms a batch:
each writer's puts land in their own key range, so a batch dirties ~130 index
leaves of `log_key_id` and `current`, about 0.5 MB of WAL to fdatasync, plus
the amortised checkpoint); with synchronous=OFF the same loop does 49k/s.
1 KiB pages with a 16 MiB WAL between checkpoints raised that one-thread
ceiling to 35.6k-38.5k/s (COMMIT 0.9 ms; 2 KiB pages 33.6k), yet through 64
threads it gave 18.3k vs 20.0k, 19.6k vs 20.6k, 22.1k vs 21.6k against the
current settings in three interleaved runs, and range p50 0.019-0.030 vs 0.019 ms:
not kept. The hand-off machinery alone (a commit that just sleeps, 64 threads)
tops out at 37k/s with a 0.2 ms commit and 25k/s with a 1 ms one; the two
costs are serialised by the GIL, so 64 writers land at 18-22k/s here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

C = TypeVar("C")
T = TypeVar("T")


class Pending(Generic[C, T]):
    """One writer's work (run with the batch's context) and, once committed, its outcome."""

    __slots__ = ("done", "error", "result", "wake", "work")

    def __init__(self, work: Callable[[C], T]) -> None:
        self.work = work
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None
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
        if not pending.done:
            # We lead this batch: either nobody was committing, or the last
            # leader promoted us (leadership passes on without being released).
            self._lead(pending)
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

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
        for item in batch[1:] if batch[0] is leader else batch:
            item.wake.release()
        if successor is not None:
            successor.wake.release()
