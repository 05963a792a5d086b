"""BranchWatch: a commit to a watched local repository is seen at once; polls and triggers."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import git
from gitops_testdata import commit_files

from reconciler.source.git import CommitInfo, GitSource
from reconciler.source.watch import BranchWatch, git_dir_of, next_poll_delay


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_local_commit_is_seen_well_under_a_second(upstream: git.Repo, cache_dir: Path) -> None:
    first = commit_files(upstream, {"a.yaml": "v: 1\n"})
    source = GitSource(upstream.working_tree_dir, cache_dir=cache_dir)
    watch = BranchWatch(source, poll_interval_s=3600)
    watch.start()
    try:
        assert watch.watches_files
        head = watch.wait(timeout=5)  # the first look is due at once
        assert head is not None
        assert head.sha == first
        assert watch.wait(timeout=0.2) is None  # nothing happened, no poll due

        seen: list[tuple[CommitInfo, float]] = []
        waiting = threading.Event()

        def waiter() -> None:
            waiting.set()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                got = watch.wait(timeout=1)
                if got is not None and got.sha != first:
                    seen.append((got, time.monotonic()))
                    return

        thread = threading.Thread(target=waiter)
        thread.start()
        assert waiting.wait(10)
        committed_at = time.monotonic()
        second = commit_files(upstream, {"a.yaml": "v: 2\n"})
        thread.join(timeout=15)
        assert seen
        assert seen[0][0].sha == second
        # Generous bound: a loaded CI machine must not fail this; the bench measures.
        assert seen[0][1] - committed_at < 5.0
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
    watch = BranchWatch(source, poll_interval_s=3600, watch_local=False)
    watch.wait(timeout=0)
    second = commit_files(upstream, {"a.yaml": "v: 2\n"})
    threading.Timer(0.1, watch.trigger).start()
    started = time.monotonic()
    head = watch.wait(timeout=30)
    assert head is not None
    assert head.sha == second
    assert time.monotonic() - started < 10


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
