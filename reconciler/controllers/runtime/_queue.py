"""The work queue between informers and a controller's workers.

Informer handlers add keys; worker threads take them. Like client-go's workqueue: a key is in the
queue at most once (de-duplicated), is handed to one worker at a time (a key added while it is
being processed waits and runs again after), and per-key failure counts give exponential
backoff that resets when the key succeeds. Keys are handed out in the order they were added,
or, given an ``order`` (the scheduler's pod priority), lowest ``order(key)`` first.

Two kinds of delay, on two clocks. ``add_after`` is *domain* time ("this pod is available in
5 s", "the progress deadline passes in 30 s") and waits on the passed clock, so a test's
ManualClock decides when it fires. ``retry_after`` is error pacing (backoff, a cache that is
catching up) and waits on the machine's monotonic clock: a retry must happen even when nobody
advances a manual clock, and a wall-clock jump must not stall it. A key waits for at most one
retry, the earliest asked for (client-go's delaying queue): a key that failed n times has one
retry pending, not n spread over the backoff's range.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

from reconciler.api import Clock, ManualClock

__all__ = ["WorkQueue"]

_log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

#: How often a waiting worker re-reads a ManualClock for delayed keys: it moves without
#: telling anyone, so waits are sliced.
_TICK_S = 0.05
#: The longest wait on the system clock: an idle worker sleeps until the next delayed key or
#: an ``add`` wakes it, but re-reads the wall clock this often in case it was set back.
_IDLE_WAIT_S = 1.0


class WorkQueue(Generic[K]):
    def __init__(
        self,
        clock: Clock,
        *,
        base_delay_s: float = 0.005,
        max_delay_s: float = 300.0,
        order: Callable[[K], Any] | None = None,
    ):
        """``order`` ranks a key when it becomes ready (with the queue's lock held: it must not
        call back into the queue); the lowest rank is handed out first, ties in arrival order,
        a key whose ranking raises last."""
        self._clock = clock
        self._base = base_delay_s
        self._max = max_delay_s
        self._order = order
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._ranked: list[tuple[Any, int, K]] = []
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._retries: list[tuple[float, int, K]] = []
        self._retry_at: dict[K, float] = {}  # the one pending retry of each key
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        self._shutdown = False
        # Idle workers on the system clock wake only for work: dozens of them, each woken
        # 20 times a second, were a control plane's idle CPU.
        self._tick = _TICK_S if isinstance(clock, ManualClock) else _IDLE_WAIT_S

    def add(self, key: K) -> None:
        with self._cond:
            self._add_locked(key)

    def add_all(self, keys: Iterable[K]) -> None:
        """Add several keys at once: a consumer sees all of them or none."""
        with self._cond:
            for key in keys:
                self._add_locked(key)

    def _add_locked(self, key: K) -> None:
        if self._shutdown:
            return
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            if self._order is None:
                self._queue.append(key)
            else:
                heapq.heappush(self._ranked, (self._rank_locked(key), next(self._seq), key))
            self._queued.add(key)
            self._cond.notify()

    def _rank_locked(self, key: K) -> tuple[Any, ...]:
        assert self._order is not None
        try:
            return (0, self._order(key))
        except Exception:
            # WARNING: this runs inside get() too (a delayed key coming due): raising here
            # would kill the worker that called it. A key that cannot be ranked goes last.
            _log.exception("work queue: ranking %r failed; it goes last", key)
            return (1,)

    def add_after(self, key: K, delay_s: float) -> None:
        if delay_s <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._delayed, (self._clock.time() + delay_s, next(self._seq), key))
            self._cond.notify()

    def retry_after(self, key: K, delay_s: float) -> None:
        if delay_s <= 0:
            self.add(key)
            return
        at = time.monotonic() + delay_s
        with self._cond:
            pending = self._retry_at.get(key)
            if pending is not None and pending <= at:
                return
            # An earlier retry replaces the later one; its heap entry is skipped when due.
            self._retry_at[key] = at
            heapq.heappush(self._retries, (at, next(self._seq), key))
            self._cond.notify()

    def get(self, timeout_s: float | None = None) -> K | None:
        """The next key (now owned by the caller until ``done``), or None on timeout/shutdown."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while not self._shutdown:
                self._promote_due_locked()
                if self._queue or self._ranked:
                    key = self._queue.popleft() if self._queue else heapq.heappop(self._ranked)[2]
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                wait = self._tick
                if self._delayed:
                    wait = min(wait, max(self._delayed[0][0] - self._clock.time(), 0.001))
                if self._retries:
                    wait = min(wait, max(self._retries[0][0] - time.monotonic(), 0.001))
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = min(wait, left)
                self._cond.wait(wait)
            return None

    def _promote_due_locked(self) -> None:
        now = self._clock.time()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            self._add_locked(key)
        mono = time.monotonic()
        while self._retries and self._retries[0][0] <= mono:
            at, _, key = heapq.heappop(self._retries)
            if self._retry_at.get(key) == at:
                del self._retry_at[key]
                self._add_locked(key)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add_locked(key)

    def backoff(self, key: K) -> float:
        """Record a failure of ``key``; the delay before its next try (base x 2^failures)."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        return float(min(self._base * (2**failures), self._max))

    def failures(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._ranked) + len(self._delayed) + len(self._retry_at)

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing in flight (delayed keys still pending do not count)."""
        with self._cond:
            return not self._queue and not self._ranked and not self._processing
