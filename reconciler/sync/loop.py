"""The GitOps loop: watch the branch, and keep the API holding what its head says.

Runs inside ``capstan up`` as a component (``start()`` / ``stop()``, like a controller). Each
pass is level-triggered: whatever woke it (a ref changed, a poll, a webhook's ``trigger()``,
the periodic resync), it fetches the head and converges the API on it —
checkout (``GitSource.snapshot``) → ``load_repository`` → ``sync_commit``. A commit that does not
load is recorded as Failed once and the last good commit stays applied (the resync keeps
re-applying it, which is also how drift made through the API is reverted).
``capstan sync --suspend`` stops the applying, not the fetching. A fetch that fails (the
remote is down) changes nothing applied: the last good commit stays live and is still
resynced, the watch retries with back-off, and the sync state says why (``note_fetch``).

What each pass leaves in the sync log (``reconciler.sync.records``): a record for a new head,
and for a resync that repaired drift or failed (identical ones fold into one); a resync that
changed nothing only updates the sync state's "last resync" fields, for several resyncs at
once (``QUIET_NOTE_RESYNCS``). Old records are pruned
to ``SyncOptions.history`` on every record and at least hourly.

The loader's warnings about a head (a namespace it creates) are said once per commit, after
its first sync attempt: a log line, a Warning Event on the object they concern and the sync
state's ``warnings`` (``capstan status``). A head is loaded once (a head whose sync fails is not
loaded again on every pass), and the sync state's ``warned_commit`` keeps a restarted or newly
elected loop from saying them again; a new commit that still has them says them again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from reconciler.api import Api, ApiError, NotFound, now_utc
from reconciler.secrets import Identities, open_repository
from reconciler.source import LoadedRepository, ManifestErrors, load_repository
from reconciler.source.git import CommitInfo, GitSource, GitSourceError
from reconciler.source.watch import BranchWatch
from reconciler.sync.engine import CachedKind, SyncResult, Trigger, failed_commit, sync_commit
from reconciler.sync.pins import apply_pins
from reconciler.sync.records import (
    STATE_NAME,
    SYSTEM_NAMESPACE,
    FetchProblem,
    HistoryLimits,
    note_fetch,
    note_resync,
    note_warnings,
    prune_sync_records,
    read_sync_state,
    update_sync_state,
)
from schemas import ConfigMap, KubeObject

__all__ = ["DEFAULT_RESYNC_S", "SyncLoop", "SyncOptions"]

_log = logging.getLogger(__name__)

# Self-heal promise: a change made around Git is reverted within 10 s.
DEFAULT_RESYNC_S = 5.0
# A resync that changed nothing is written to the sync state at most once per this many
# resync periods (with how many there were): each write of the state wakes every
# ConfigMap watcher of the control plane, the node dispatcher's included.
QUIET_NOTE_RESYNCS = 3
_ERROR_BACKOFF_S = 1.0
# Records age out even when nothing new is recorded: the loop prunes at least this often.
_PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True)
class SyncOptions:
    """What to load from each commit and how to apply it."""

    env: str | None = None
    subdir: str | None = None
    prune: bool = True
    allow_empty: bool = False
    resync_s: float = DEFAULT_RESYNC_S
    history: HistoryLimits = field(default_factory=HistoryLimits)
    #: The control plane's age identities: a commit's sealed Secrets are opened at load.
    age_identities: Identities = field(default_factory=Identities)


class SyncLoop:
    """Keeps the API converged on the tracked branch's head (or its last good commit).

    ``watch`` defaults to a ``BranchWatch`` of ``source`` (watchdog for a local repository, a
    60 s poll otherwise). ``clock`` is monotonic seconds (resync timing). ``on_result`` sees
    every recorded result (for logs, metrics, the bench). ``cached``: the controllers'
    informer caches of this process (``capstan up``), which the periodic resync reads the
    managed objects of the kinds they hold from; a new head is always compared with the
    store itself.
    """

    def __init__(
        self,
        api: Api,
        source: GitSource,
        *,
        options: SyncOptions | None = None,
        watch: BranchWatch | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_result: Callable[[SyncResult], None] | None = None,
        cached: CachedKind | None = None,
    ) -> None:
        self.api = api
        self.source = source
        self.options = options or SyncOptions()
        self.watch = watch or BranchWatch(source)
        self._clock = clock
        self._on_result = on_result
        self._cached = cached
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: CommitInfo | None = None
        self._attempted: str | None = None
        self._good: tuple[CommitInfo, LoadedRepository] | None = None
        # The head as loaded, kept while its syncs fail: a commit is loaded (and its
        # warnings found) once, not on every pass.
        self._head: tuple[CommitInfo, LoadedRepository] | None = None
        self._invalid: str | None = None  # the last head that did not load
        self._warned: str | None = None  # the last commit whose warnings are said
        self._next_resync = clock()
        self._next_prune = clock()
        # Quiet resyncs not yet written to the sync state: how many, of which commit, the
        # last one's time; and when (loop clock) one was last written.
        self._quiet: tuple[int, str, datetime] | None = None
        self._quiet_noted_at = float("-inf")
        self._pinned: dict[str, LoadedRepository] = {}
        self.last_fetch_error: str | None = None
        self._fetch_problem: FetchProblem | None = None

    # -- component -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self.watch.start()
        self._thread = threading.Thread(target=self._run, name="capstan-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.watch.stop()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=30)
        if thread is None or not thread.is_alive():
            with contextlib.suppress(ApiError):
                self._flush_quiet()

    def trigger(self) -> None:
        """Fetch and converge now (the webhook, ``capstan sync``)."""
        self.watch.trigger()

    @property
    def seen(self) -> CommitInfo | None:
        """The branch head as last fetched."""
        return self._seen

    @property
    def last_good(self) -> CommitInfo | None:
        """The last commit that loaded and applied."""
        return self._good[0] if self._good else None

    @property
    def live_repository(self) -> LoadedRepository | None:
        """The objects of ``last_good`` as loaded (for ``app_health`` and ``capstan status``)."""
        return self._good[1] if self._good else None

    # -- one pass --------------------------------------------------------------------------

    def step(self, *, timeout: float = 0.0) -> SyncResult | None:
        """Wait up to ``timeout`` s for a reason to look, then converge if a new head came
        or a resync is due. Returns the sync's result, or None when nothing was run."""
        try:
            head = self.watch.wait(min(timeout, self.seconds_to_resync()))
        except GitSourceError as exc:
            # The remote may be down: keep the last good state applied, look again later.
            self.last_fetch_error = str(exc)
            self._note_fetch_failure()
            head = None
        else:
            if head is not None:
                self.last_fetch_error = None
                if self._fetch_problem is not None:
                    _log.warning("fetching %s works again", self.source.url)
                    note_fetch(self.api, None)
                    self._fetch_problem = None
        if head is not None and head != self._seen:
            self._seen = head
            update_sync_state(self.api, seen_commit=head.sha)
        new_head = self._seen is not None and self._seen.sha != self._attempted
        if not new_head and self.seconds_to_resync() > 0:
            return None
        self._next_resync = self._clock() + self.options.resync_s
        if read_sync_state(self.api).suspended:
            return None
        return self.converge(trigger="commit" if new_head else "resync")

    def _note_fetch_failure(self) -> None:
        failure = self.watch.failure
        if failure is None:
            return
        now = now_utc(self.api.clock)
        previous = self._fetch_problem
        problem = FetchProblem(
            error=failure.error,
            failures=failure.failures,
            since=previous.since if previous is not None else now,
            backoff_s=failure.backoff_s,
            next_attempt_at=now + timedelta(seconds=failure.retry_in_s),
        )
        _log.warning(
            "fetching %s failed (%d in a row), next try in %.1fs: %s",
            self.source.url,
            failure.failures,
            failure.retry_in_s,
            failure.error,
        )
        # Remembered before the write: a store that refuses it (down too) must not make the
        # next failure start the outage's clock again.
        self._fetch_problem = problem
        note_fetch(self.api, problem)

    def seconds_to_resync(self) -> float:
        return max(0.0, self._next_resync - self._clock())

    def converge(self, *, trigger: Trigger = "manual") -> SyncResult | None:
        """Apply the head if it loads, else re-apply the last good commit. Level-triggered:
        running it twice in a row changes nothing the second time."""
        head = self._seen
        if head is None:
            return None
        # Marked attempted only once the attempt is recorded: a pass that dies half-way
        # (store unavailable) is retried as a new commit, so its record is not lost.
        fresh = head.sha != self._attempted
        good = self._good
        if (good is None or good[0].sha != head.sha) and head.sha != self._invalid:
            if self._head is not None and self._head[0].sha == head.sha:
                good = self._head
            else:
                loaded = self._load(head, record_failure=fresh, trigger=trigger)
                if loaded is None:
                    self._invalid = head.sha
                else:
                    good = self._head = (head, loaded)
        if good is None:
            good = self._restore_last_good()
            if good is None:
                self._attempted = head.sha
                return None
        commit, repo = good
        # Deployments the auto-rollback pinned run their last good commit's version.
        repo = apply_pins(self.api, repo, load=self._load_pinned)
        opts = self.options
        applied_trigger: Trigger = trigger if commit.sha == head.sha else "resync"
        result = sync_commit(
            self.api,
            repo,
            commit=commit,
            prune=opts.prune,
            allow_empty=opts.allow_empty,
            trigger=applied_trigger,
            history=opts.history,
            record_unchanged=fresh and commit.sha == head.sha,
            cached=self._cached if applied_trigger == "resync" else None,
        )
        if applied_trigger == "resync":
            self._note_resync(commit.sha, changed=result.record is not None)
        if self._clock() >= self._next_prune:
            self._next_prune = self._clock() + _PRUNE_EVERY_S
            prune_sync_records(self.api, limits=opts.history, now=now_utc(self.api.clock))
        applied_head = commit.sha == head.sha
        if applied_head:
            self._say_warnings(commit, good[1])
        if result.succeeded:
            self._good = good
            update_sync_state(
                self.api,
                live_commit=commit.sha,
                last_attempt_commit=head.sha if applied_head else None,
                last_outcome="Succeeded" if applied_head else None,
            )
        elif applied_head:
            update_sync_state(self.api, last_attempt_commit=head.sha, last_outcome="Failed")
        self._attempted = head.sha
        if result.record is not None and self._on_result is not None:
            self._on_result(result)
        return result

    def _note_resync(self, commit: str, *, changed: bool) -> None:
        """Note this resync in the sync state: at once when it changed something or none was
        written for ``QUIET_NOTE_RESYNCS`` resync periods; else keep it, and the next write
        counts it (the state reads as if each had been written: the count of quiet ones in a
        row, the last one's commit and time)."""
        at = now_utc(self.api.clock)
        if changed:
            self._quiet = None
        else:
            held = self._quiet
            count = 1 + (held[0] if held is not None and held[1] == commit else 0)
            self._quiet = (count, commit, at)
            if self._clock() < self._quiet_noted_at + QUIET_NOTE_RESYNCS * self.options.resync_s:
                return
        self._quiet_noted_at = self._clock()
        if changed:
            note_resync(self.api, commit=commit, at=at, changed=True)
        else:
            self._flush_quiet()

    def _flush_quiet(self) -> None:
        """Write the quiet resyncs kept back, if any."""
        quiet, self._quiet = self._quiet, None
        if quiet is not None:
            count, commit, at = quiet
            note_resync(self.api, commit=commit, at=at, changed=False, quiet=count)

    def _say_warnings(self, commit: CommitInfo, loaded: LoadedRepository) -> None:
        """Say the loader's warnings about ``commit`` unless they were said already (by this
        loop, or by another before a restart or a change of leader)."""
        if self._warned == commit.sha:
            return
        if read_sync_state(self.api).warned_commit != commit.sha:
            lines = [warning.display() for warning in loaded.warnings]
            for line in lines:
                _log.warning("commit %s: %s", commit.short, line)
            # The order matters: the sync state exists once noted, and an Event about an
            # object that is not live stands next to it.
            note_warnings(self.api, commit=commit.sha, warnings=lines)
            for warning, line in zip(loaded.warnings, lines, strict=True):
                about = next(
                    (item.obj for item in loaded.objects if item.source == warning.location),
                    None,
                )
                self.api.record_event(
                    self._live(about),
                    reason="ManifestWarning",
                    type="Warning",
                    source="capstan-sync",
                    message=f"commit {commit.short}: {line}",
                )
        self._warned = commit.sha

    def _live(self, obj: KubeObject | None) -> KubeObject:
        """The live copy of ``obj`` (an Event needs its uid), or, when it is not live (its
        sync failed), the sync state, which the warning then stands next to."""
        if obj is not None:
            with contextlib.suppress(NotFound):
                return self.api.get(type(obj), obj.name, namespace=obj.namespace or None)
        return self.api.get(ConfigMap, STATE_NAME, namespace=SYSTEM_NAMESPACE)

    def _load(
        self, commit: CommitInfo, *, record_failure: bool, trigger: Trigger
    ) -> LoadedRepository | None:
        opts = self.options
        try:
            with self.source.snapshot(commit.sha) as tree:
                loaded = load_repository(tree, env=opts.env, subdir=opts.subdir)
                return open_repository(loaded, opts.age_identities)
        except ManifestErrors as exc:
            if record_failure:
                result = failed_commit(
                    self.api, exc, commit=commit, trigger=trigger, history=opts.history
                )
                update_sync_state(self.api, last_attempt_commit=commit.sha, last_outcome="Failed")
                _log.warning(
                    "commit %s is invalid; %s stays live:\n%s",
                    commit.short,
                    self.last_good.short if self.last_good else "nothing",
                    "\n".join(str(e) for e in exc.errors),
                )
                if self._on_result is not None:
                    self._on_result(result)
            return None

    def _load_pinned(self, sha: str) -> LoadedRepository | None:
        cached = self._pinned.get(sha)
        if cached is None:
            try:
                commit = self.source.resolve(sha)
            except GitSourceError:
                return None
            cached = self._load(commit, record_failure=False, trigger="resync")
            if cached is None:
                return None
            self._pinned = {sha: cached}  # one pinned commit at a time is the usual case
        return cached

    def _restore_last_good(self) -> tuple[CommitInfo, LoadedRepository] | None:
        # After a restart on an invalid head: the store remembers which commit was live.
        live = read_sync_state(self.api).live_commit
        if live is None:
            return None
        try:
            commit = self.source.resolve(live)
        except GitSourceError:
            return None  # rewritten away: nothing good is known; keep what is applied
        loaded = self._load(commit, record_failure=False, trigger="resync")
        if loaded is None:
            return None
        self._good = (commit, loaded)
        return self._good

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.step(timeout=max(0.05, self.seconds_to_resync()))
            except (ApiError, GitSourceError, OSError) as exc:
                _log.warning("sync pass failed, retrying: %s", exc)
                self._stopping.wait(_ERROR_BACKOFF_S)
            except Exception:
                # The loop must outlive any one bad pass; the next pass starts from scratch.
                _log.exception("sync pass crashed, retrying")
                self._stopping.wait(_ERROR_BACKOFF_S)
