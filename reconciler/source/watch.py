"""When to look at Git again: filesystem events on a local repository, polling, and triggers.

Sits between ``GitSource`` and the sync loop. ``BranchWatch.wait(timeout)`` blocks until there
is a reason to look — a ref of a local repository changed (watchdog on ``refs/``,
``packed-refs``, ``HEAD``, ``logs/``), the poll interval passed, or ``trigger()`` was called (the
webhook does) — then fetches and returns the branch head. The event only says *when* to
look; the answer is always the fetched head, so a missed or duplicated event costs nothing.
A fetch that fails (the remote is down) is retried with exponential back-off
(``FetchBackoff``) instead of at the poll interval; ``BranchWatch.failure`` says how it is going
(the sync loop writes it into the sync state, where ``capstan status`` shows it).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from reconciler.source.git import CommitInfo, GitSource, GitSourceError

__all__ = [
    "BranchWatch",
    "FetchBackoff",
    "FetchFailure",
    "RefWatcher",
    "Wakeup",
    "git_dir_of",
    "next_poll_delay",
]

DEFAULT_POLL_INTERVAL_S = 60.0
# A commit touches several ref files in a burst (the ref, its reflog, ORIG_HEAD); one look
# after the burst settles is enough. Small against the 0.5 s detection budget.
DEFAULT_DEBOUNCE_S = 0.03
_REF_NAMES = frozenset({"HEAD", "packed-refs", "FETCH_HEAD", "ORIG_HEAD"})


@dataclass(frozen=True)
class FetchBackoff:
    """How soon a failed fetch is tried again: ``initial_s``, doubling with each failure in a
    row, capped at ``max_s`` (as Flux's source controller and controller-runtime's rate
    limiter do). It replaces the poll interval while the remote fails, in both directions:
    the first retries come sooner than a 60 s poll, and a long outage is asked less often."""

    initial_s: float = 1.0
    max_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(
                f"fetch back-off needs 0 < initial <= max (got {self.initial_s}, {self.max_s})"
            )

    def delay(self, failures: int) -> float:
        """The pause after the ``failures``-th failed fetch in a row (1 for the first)."""
        if failures < 1:
            return 0.0
        # min() before the power would overflow: 2**1100 is too large for a float.
        return min(self.max_s, self.initial_s * 2.0 ** min(failures - 1, 64))


@dataclass(frozen=True)
class FetchFailure:
    """Fetches failing in a row: how many, the last error, and the pause before the next
    (``backoff_s`` as the back-off says; ``retry_in_s`` with jitter, what the watch waits)."""

    failures: int
    error: str
    backoff_s: float
    retry_in_s: float


def next_poll_delay(interval_s: float, *, jitter: float, rng: random.Random) -> float:
    """``interval_s`` spread by ±``jitter`` (a fraction), so many reconcilers polling one
    forge do not arrive together."""
    return max(0.0, interval_s * (1.0 + rng.uniform(-jitter, jitter)))


class Wakeup:
    """A flag any thread can raise and one waiting loop consumes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._raised = False

    def set(self) -> None:
        with self._cond:
            self._raised = True
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """True if raised (then lowered again) within ``timeout`` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self._raised, timeout=max(0.0, timeout))
            raised = self._raised
            self._raised = False
            return raised


def git_dir_of(path: Path) -> Path:
    """The directory holding a repository's refs: ``.git`` of a work tree (or the common dir
    a ``.git`` file of a linked worktree points to), or the repository itself when bare."""
    dot_git = path / ".git"
    if dot_git.is_dir():
        return dot_git
    if dot_git.is_file():
        target = dot_git.read_text().strip().removeprefix("gitdir:").strip()
        linked = (path / target).resolve()
        common = linked / "commondir"
        if common.is_file():
            return (linked / common.read_text().strip()).resolve()
        return linked
    return path


class _RefEvents(FileSystemEventHandler):
    def __init__(self, git_dir: Path, on_change: Callable[[], None]) -> None:
        self._git_dir = git_dir
        self._on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw and self._is_ref(Path(str(raw))):
                self._on_change()
                return

    def _is_ref(self, path: Path) -> bool:
        try:
            rel = path.relative_to(self._git_dir)
        except ValueError:
            return False
        parts = rel.parts
        if not parts:
            return False
        # Lock files are renamed onto the ref: the rename's destination is the ref itself.
        name = parts[0].removesuffix(".lock")
        return name in _REF_NAMES or name in ("refs", "logs")


class RefWatcher:
    """Calls ``on_change`` when any ref of a local repository may have moved."""

    def __init__(self, repo_path: Path, *, on_change: Callable[[], None]) -> None:
        self.git_dir = git_dir_of(Path(repo_path))
        self._handler = _RefEvents(self.git_dir, on_change)
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        if self._observer is not None:
            return
        observer = Observer()
        # The top level non-recursively (HEAD, packed-refs), refs/ and logs/ recursively:
        # objects/ churns on every commit and tells nothing the refs do not.
        observer.schedule(self._handler, str(self.git_dir), recursive=False)
        for sub in ("refs", "logs"):
            if (self.git_dir / sub).is_dir():
                observer.schedule(self._handler, str(self.git_dir / sub), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)


class BranchWatch:
    """Says when the tracked branch may have moved, and fetches its head.

    A local repository is watched with watchdog (and still polled, slowly, in case an
    event is lost); a remote one is polled every ``poll_interval_s`` ± ``jitter``. ``trigger()``
    makes the next ``wait`` look at once. A failed fetch is retried after ``backoff``'s delay
    (± ``jitter``) instead; ``failure`` describes the failures in a row until a fetch succeeds.
    ``clock`` is monotonic seconds; ``rng`` spreads polls.
    """

    def __init__(
        self,
        source: GitSource,
        *,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        jitter: float = 0.1,
        debounce_s: float = DEFAULT_DEBOUNCE_S,
        watch_local: bool = True,
        backoff: FetchBackoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError("poll_interval_s must be positive")
        self.source = source
        self.poll_interval_s = poll_interval_s
        self._jitter = jitter
        self._debounce_s = debounce_s
        self.backoff = backoff or FetchBackoff()
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._failure: FetchFailure | None = None
        self._wakeup = Wakeup()
        self._next_poll = clock()  # the first wait looks at once
        local = source.local_path
        self._refs = (
            RefWatcher(local, on_change=self._wakeup.set)
            if watch_local and local is not None
            else None
        )

    @property
    def watches_files(self) -> bool:
        return self._refs is not None

    def start(self) -> None:
        if self._refs is not None:
            self._refs.start()

    def stop(self) -> None:
        if self._refs is not None:
            self._refs.stop()
        self._wakeup.set()

    def trigger(self) -> None:
        """Look now (the webhook calls this). Safe from any thread."""
        self._wakeup.set()

    @property
    def failure(self) -> FetchFailure | None:
        """The fetches failing in a row since the last success, or None (the last worked)."""
        return self._failure

    def seconds_to_poll(self) -> float:
        return max(0.0, self._next_poll - self._clock())

    def wait(self, timeout: float) -> CommitInfo | None:
        """Wait up to ``timeout`` s for a reason to look; then fetch and return the head (the
        caller compares it with what it applied). None when no look was due. Raises
        GitSourceError when the fetch fails; the next look is then due after the back-off's
        delay (a ``trigger()`` still looks at once)."""
        woken = self._wakeup.wait(min(max(0.0, timeout), self.seconds_to_poll()))
        if not woken and self.seconds_to_poll() > 0:
            return None
        if woken and self._debounce_s > 0:
            # Let the burst of ref writes of one commit finish; later writes re-raise.
            self._wakeup.wait(self._debounce_s)
        try:
            head = self.source.fetch()
        except GitSourceError as exc:
            failures = self._failure.failures + 1 if self._failure else 1
            backoff_s = self.backoff.delay(failures)
            retry_in = next_poll_delay(backoff_s, jitter=self._jitter, rng=self._rng)
            self._failure = FetchFailure(
                failures=failures, error=str(exc), backoff_s=backoff_s, retry_in_s=retry_in
            )
            # From the end of the failed attempt: a fetch that hangs until git's own timeout
            # must not be retried at once.
            self._next_poll = self._clock() + retry_in
            raise
        self._failure = None
        self._next_poll = self._clock() + next_poll_delay(
            self.poll_interval_s, jitter=self._jitter, rng=self._rng
        )
        return head
