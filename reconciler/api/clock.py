"""Clocks passed into the API layer, the controller runtime and everything that reasons about time.

The API stamps ``creationTimestamp``, event times and node lease renewals with it; the controller
runtime schedules requeues and backoff with it; the deployment controller measures
``minReadySeconds`` and ``progressDeadlineSeconds`` against it. Tests pass a
:class:`ManualClock` and advance it instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "ManualClock", "MonotonicClock", "SystemClock", "now_utc"]


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch."""


class MonotonicClock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for timeouts and intervals (node links)."""


class SystemClock:
    """The machine's clocks: wall time (a :class:`Clock`) and monotonic (a
    :class:`MonotonicClock`)."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (tests). Thread-safe."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        with self._lock:
            self._now += seconds


def now_utc(clock: Clock) -> datetime:
    """The clock's time as an aware UTC datetime, truncated to microseconds as JSON keeps it."""
    return datetime.fromtimestamp(clock.time(), tz=UTC)
