"""The group committer on its own: batching, per-writer outcomes, failure of a whole batch."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from reconciler.store._group_commit import GroupCommitter, Pending


class _Log:
    """A stand-in transaction log: records which works ran in which batch."""

    def __init__(self, *, fail_batch: int | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.fail_batch = fail_batch

    def commit(self, batch: list[Pending[_Log, Any]]) -> None:
        results = [item.work(self) for item in batch]
        time.sleep(0.002)  # the "fsync" that lets other writers queue up
        self.batches.append(results)
        if len(self.batches) == self.fail_batch:
            raise OSError("disk on fire")
        for item, result in zip(batch, results, strict=True):
            item.result = result


def test_concurrent_writers_share_batches_and_get_their_own_results() -> None:
    log = _Log()
    committer: GroupCommitter[_Log] = GroupCommitter(log.commit)
    results: dict[tuple[int, int], Any] = {}

    def writer(n: int) -> None:
        for i in range(25):

            def work(_log: _Log, key: tuple[int, int] = (n, i)) -> tuple[int, int]:
                return key

            results[(n, i)] = committer.submit(work)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[key] == key for key in results)
    assert len(results) == 16 * 25
    assert sum(len(b) for b in log.batches) == 16 * 25
    assert len(log.batches) < 16 * 25 / 2, "writers did not share batches"
    # Each writer's works ran in its submission order.
    for n in range(16):
        mine = [r for batch in log.batches for r in batch if r[0] == n]
        assert mine == [(n, i) for i in range(25)]


def test_a_failed_commit_fails_every_writer_of_that_batch_and_only_them() -> None:
    log = _Log(fail_batch=1)
    committer: GroupCommitter[_Log] = GroupCommitter(log.commit)
    outcomes: list[str] = []
    gate = threading.Event()

    def writer(n: int) -> None:
        gate.wait()
        try:
            outcomes.append(committer.submit(lambda _log: f"ok {n}"))
        except OSError as exc:
            outcomes.append(f"failed: {exc}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    failed = [o for o in outcomes if o.startswith("failed")]
    assert len(failed) == len(log.batches[0]) >= 1
    assert len(outcomes) == 8
    assert committer.submit(lambda _log: "after") == "after"


def test_a_lone_writer_commits_on_its_own_thread() -> None:
    seen: list[int] = []

    def commit(batch: list[Pending[None, Any]]) -> None:
        seen.append(threading.get_ident())
        for item in batch:
            item.result = item.work(None)

    committer: GroupCommitter[None] = GroupCommitter(commit)
    assert [committer.submit(lambda _: i) for i in range(5)] == list(range(5))
    assert seen == [threading.get_ident()] * 5


def test_errors_from_work_reach_the_writer() -> None:
    def commit(batch: list[Pending[None, Any]]) -> None:
        for item in batch:
            try:
                item.result = item.work(None)
            except ValueError as exc:
                item.error = exc

    committer: GroupCommitter[None] = GroupCommitter(commit)
    with pytest.raises(ValueError, match="bad request"):
        committer.submit(lambda _: (_ for _ in ()).throw(ValueError("bad request")))


def test_writers_that_queue_while_a_batch_opens_join_it_and_get_their_results() -> None:
    committer: GroupCommitter[Any] = GroupCommitter(lambda batch: None)
    opened = threading.Event()
    late_queued = threading.Event()
    batches: list[int] = []

    def commit(batch: list[Pending[Any, Any]]) -> None:
        if len(batch) > 1 or not batches:
            opened.set()
            late_queued.wait(5)  # the "BEGIN" during which late writers queue
            committer.join_late(batch)
        batches.append(len(batch))
        for item in batch:
            item.result = item.work(None)

    committer = GroupCommitter(commit)
    results: dict[int, int] = {}

    def writer(n: int) -> None:
        results[n] = committer.submit(lambda _: n)

    first = threading.Thread(target=writer, args=(0,))
    first.start()
    assert opened.wait(5)
    late = [threading.Thread(target=writer, args=(n,)) for n in range(1, 6)]
    for thread in late:
        thread.start()
    _wait_until_queued(committer, 5)
    late_queued.set()
    for thread in [first, *late]:
        thread.join(5)
    assert results == {n: n for n in range(6)}
    assert batches == [6], "the five late writers shared the first writer's commit"


def test_every_carried_writer_is_woken_through_the_chain() -> None:
    # One slow commit gathers a crowd; every writer of that crowd must come back
    # (each woken writer wakes the next), with its own result, however long the chain.
    gate = threading.Event()

    def commit(batch: list[Pending[Any, Any]]) -> None:
        gate.wait(5)
        for item in batch:
            item.result = item.work(None)

    committer: GroupCommitter[Any] = GroupCommitter(commit)
    results: dict[int, int] = {}

    def writer(n: int) -> None:
        results[n] = committer.submit(lambda _: n * 10)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    _wait_until_queued(committer, 39)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)
    assert results == {n: n * 10 for n in range(40)}


def _wait_until_queued(committer: GroupCommitter[Any], writers: int) -> None:
    deadline = time.monotonic() + 5
    while len(committer._queue) < writers and time.monotonic() < deadline:
        time.sleep(0.001)
