"""Giving freed memory back to the system after a burst of changes (``MemoryTrimmer``).

A component of the controller manager (``reconciler.controllers.manager``): it watches how
far the informers have got (``InformerFactory.last_revision``) and, once a burst of changes
has passed, asks glibc's malloc to return its free pages (``malloc_trim``).

WHY: a deploy or rollout decodes, copies and drops objects by the thousand; what glibc's
malloc frees stays in its heap, counted in the process's RSS, until it is trimmed, because
a heap shrinks on its own only from its top. One trim costs milliseconds (the figures are
in this file's commit message). Python's own small-object arenas are returned by Python.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Callable

from reconciler.controllers.runtime._controller import ControllerContext

__all__ = ["MemoryTrimmer", "glibc_trim", "limit_malloc_arenas"]

_log = logging.getLogger(__name__)


def _glibc(name: str) -> Callable[..., int] | None:
    """The C library's function ``name``, or None where it has none (musl, macOS)."""
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    return function


def glibc_trim() -> Callable[[], object] | None:
    """``malloc_trim(0)`` of the C library, or None where there is none (musl, macOS)."""
    trim = _glibc("malloc_trim")
    return None if trim is None else lambda: trim(0)


#: glibc's ``mallopt`` parameter for the most heaps ("arenas") malloc keeps.
_M_ARENA_MAX = -8


def limit_malloc_arenas(count: int = 2) -> bool:
    """Have glibc's malloc keep at most ``count`` heaps; whether it was set. Called by
    ``capstan up`` before its threads start.

    WHY: glibc gives threads up to eight heaps per core, each freeing into itself and
    trimmed only from its top; a control plane of a few hundred threads (a paramiko
    transport per node) spreads its churn over all of them. The GIL runs one thread's
    Python at a time, so fewer heaps cost next to no contention. ``MALLOC_ARENA_MAX`` in
    the environment, glibc's own knob, wins: nothing is set then.
    """
    mallopt = _glibc("mallopt")
    if "MALLOC_ARENA_MAX" in os.environ or mallopt is None:
        return False
    return bool(mallopt(_M_ARENA_MAX, count))


class MemoryTrimmer:
    """Every ``interval_s`` seconds, trims when the informers have moved since the last trim
    by at least ``burst`` revisions, or by any and fewer than ``quiet`` in the last interval
    (the burst's tail has passed)."""

    def __init__(
        self,
        ctx: ControllerContext,
        *,
        interval_s: float = 10.0,
        burst: int = 1000,
        quiet: int = 100,
        trim: Callable[[], object] | None = None,
    ) -> None:
        self._revision = ctx.informers.last_revision
        self._interval_s = interval_s
        self._burst = burst
        self._quiet = quiet
        self._trim = trim if trim is not None else glibc_trim()
        self._trimmed_at = 0
        self._seen = 0
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.trims = 0

    def start(self) -> None:
        if self._trim is None or self._thread is not None:
            return
        self._trimmed_at = self._seen = self._revision()
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name="memory-trim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self.tick()

    def tick(self) -> bool:
        """Look once (the thread does every ``interval_s``); whether it trimmed."""
        revision = self._revision()
        moved, recent = revision - self._trimmed_at, revision - self._seen
        self._seen = revision
        burst_passed = moved > 0 and recent < self._quiet
        if self._trim is None or not (moved >= self._burst or burst_passed):
            return False
        self._trim()
        self._trimmed_at = revision
        self.trims += 1
        _log.debug("memory trimmed after %d revisions", moved)
        return True
