"""BranchWatch: a commit to a watched local repository is seen at once; polls and triggers."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import git
import pytest
from gitops_testdata import commit_files

from reconciler.source.git import CommitInfo, GitSource, GitSourceError
from reconciler.source.watch import (
    BranchWatch,
    FetchBackoff,
    git_dir_of,
    next_poll_delay,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_local_commit_is_seen_through_the_file_watch(upstream: git.Repo, cache_dir: Path) -> None:
    first = commit_files(upstream, {"a.yaml": "v: 1\n"})
    source = GitSource(upstream.working_tree_dir, cache_dir=cache_dir)
    # The poll runs on a clock that never moves: after the first look no poll is ever due, so
    # any later head the watch returns was looked up because the file watch woke it.
    clock = FakeClock()
    watch = BranchWatch(source, poll_interval_s=3600, clock=clock)
    watch.start()
    try:
        assert watch.watches_files
        head = watch.wait(timeout=5)  # the first look is due at once
        assert head is not None
        assert head.sha == first
        assert watch.seconds_to_poll() > 0
        assert watch.wait(timeout=0.2) is None  # nothing happened, no poll due

        seen: list[tuple[CommitInfo, float]] = []
        waiting = threading.Event()
        done = threading.Event()

        def waiter() -> None:
            waiting.set()
            while not done.is_set():
                got = watch.wait(timeout=1)
                if got is not None and got.sha != first:
                    seen.append((got, time.monotonic()))
                    return

        thread = threading.Thread(target=waiter)
        thread.start()
        try:
            assert waiting.wait(10)
            committed_at = time.monotonic()
            second = commit_files(upstream, {"a.yaml": "v: 2\n"})
            thread.join(timeout=60)  # a give-up bound: the watch answers in milliseconds
        finally:
            done.set()
            thread.join()
        assert seen
        assert seen[0][0].sha == second
        assert clock.now == 1000.0  # (the poll's clock did not move)
        print(f"\nlocal commit seen after {seen[0][1] - committed_at:.3f} s")
    finally:
        watch.stop()


def test_remote_is_polled_on_the_passed_in_clock(upstream: git.Repo, cache_dir: Path) -> None:
    first = commit_files(upstream, {"a.yaml": "v: 1\n"})
    clock = FakeClock()
    source = GitSource(f"file://{upstream.working_tree_dir}", cache_dir=cache_dir)
    watch = BranchWatch(
        source, poll_interval_s=60, jitter=0.1, watch_local=False, clock=clock, rng=random.Random(7)
    )
    assert not watch.watches_files
    head = watch.wait(timeout=0)
    assert head is not None
    assert head.sha == first
    assert 54 <= watch.seconds_to_poll() <= 66
    second = commit_files(upstream, {"a.yaml": "v: 2\n"})
    assert watch.wait(timeout=0) is None  # not due yet: no fetch
    clock.now += 67
    head = watch.wait(timeout=0)
    assert head is not None
    assert head.sha == second


def test_trigger_wakes_a_polling_watch_at_once(upstream: git.Repo, cache_dir: Path) -> None:
    commit_files(upstream, {"a.yaml": "v: 1\n"})
    source = GitSource(f"file://{upstream.working_tree_dir}", cache_dir=cache_dir)
    # A poll clock that never moves: after the first look only the trigger can cause another.
    watch = BranchWatch(source, poll_interval_s=3600, watch_local=False, clock=FakeClock())
    assert watch.wait(timeout=0) is not None
    second = commit_files(upstream, {"a.yaml": "v: 2\n"})
    assert watch.wait(timeout=0) is None  # no poll due: the new commit is not looked for
    trigger = threading.Timer(0.1, watch.trigger)
    trigger.start()
    head = watch.wait(timeout=60)  # a give-up bound: the trigger wakes it in milliseconds
    trigger.join()
    assert head is not None
    assert head.sha == second


def test_a_failing_fetch_is_retried_with_capped_exponential_backoff(
    upstream: git.Repo, cache_dir: Path, tmp_path: Path
) -> None:
    first = commit_files(upstream, {"a.yaml": "v: 1\n"})
    clock = FakeClock()
    served = Path(str(upstream.working_tree_dir))
    source = GitSource(f"file://{served}", cache_dir=cache_dir)
    watch = BranchWatch(
        source,
        poll_interval_s=60,
        jitter=0.0,
        watch_local=False,
        backoff=FetchBackoff(initial_s=1, max_s=8),
        clock=clock,
    )
    assert watch.wait(timeout=0) is not None
    assert watch.failure is None
    # The remote disappears (the same repository, moved away: a real failing fetch).
    hidden = tmp_path / "hidden"
    served.rename(hidden)
    clock.now += 60
    delays = []
    for _ in range(6):
        with pytest.raises(GitSourceError):
            watch.wait(timeout=0)
        assert watch.failure is not None
        assert "fetch" in watch.failure.error
        delays.append(watch.seconds_to_poll())
        assert watch.wait(timeout=0) is None  # not due before the back-off is over
        clock.now += watch.seconds_to_poll()
    assert delays == [1, 2, 4, 8, 8, 8]
    assert watch.failure.failures == 6
    hidden.rename(served)
    head = watch.wait(timeout=0)
    assert head is not None
    assert head.sha == first
    assert watch.failure is None
    assert watch.seconds_to_poll() == 60  # back on the poll interval


def test_fetch_backoff_doubles_up_to_its_cap() -> None:
    backoff = FetchBackoff(initial_s=0.5, max_s=300)
    assert [backoff.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1, 2, 4]
    assert backoff.delay(5000) == 300
    with pytest.raises(ValueError):
        FetchBackoff(initial_s=10, max_s=1)


def test_poll_delay_spreads_within_the_jitter() -> None:
    rng = random.Random(1)
    delays = [next_poll_delay(60, jitter=0.2, rng=rng) for _ in range(200)]
    assert all(48 <= d <= 72 for d in delays)
    assert max(delays) - min(delays) > 10


def test_git_dir_of_worktree_bare_and_linked(upstream: git.Repo, tmp_path: Path) -> None:
    commit_files(upstream, {"a.yaml": "v: 1\n"})
    root = Path(upstream.working_tree_dir)
    assert git_dir_of(root) == root / ".git"
    assert git_dir_of(root / ".git") == root / ".git"
    upstream.git.worktree("add", str(tmp_path / "linked"), "-b", "other")
    assert git_dir_of(tmp_path / "linked") == (root / ".git").resolve()
