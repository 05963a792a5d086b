"""The controller runtime: work queue semantics, the outcome loop, informers, level-triggering."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from reconciler.api import Api, ManualClock
from reconciler.controllers.runtime import (
    Controller,
    ControllerContext,
    Informer,
    InformerFactory,
    Result,
    TerminalError,
    TransientError,
    WorkQueue,
)
from schemas import ConfigMap, Namespace, ObjectKey, ObjectMeta


def key(name: str) -> ObjectKey:
    return ObjectKey("ConfigMap", "default", name)


def test_queue_deduplicates_and_holds_a_key_in_flight(clock: ManualClock) -> None:
    queue: WorkQueue[ObjectKey] = WorkQueue(clock)
    for _ in range(3):
        queue.add(key("a"))
    queue.add(key("b"))
    first = queue.get(timeout_s=1)
    assert first == key("a")
    queue.add(key("a"))  # while in flight: must not be handed out again yet
    assert queue.get(timeout_s=1) == key("b")
    assert queue.get(timeout_s=0.1) is None
    queue.done(key("a"))
    assert queue.get(timeout_s=1) == key("a")
    queue.done(key("a"))
    queue.done(key("b"))
    assert queue.get(timeout_s=0.1) is None


def test_add_after_waits_for_the_passed_clock(clock: ManualClock) -> None:
    queue: WorkQueue[ObjectKey] = WorkQueue(clock)
    queue.add_after(key("a"), 30)
    assert queue.get(timeout_s=0.2) is None
    clock.advance(30)
    assert queue.get(timeout_s=1) == key("a")


def test_a_key_waits_for_one_retry_the_earliest_asked_for(clock: ManualClock) -> None:
    queue: WorkQueue[ObjectKey] = WorkQueue(clock)
    # A key that failed three times (a Conflict each) has one retry pending, not three.
    for delay in (0.05, 0.2, 30.0):
        queue.retry_after(key("a"), delay)
    assert len(queue) == 1
    assert queue.get(timeout_s=5) == key("a")
    queue.done(key("a"))
    assert len(queue) == 0
    # An earlier retry replaces a later one; the later one's entry is not handed out.
    queue.retry_after(key("b"), 30.0)
    queue.retry_after(key("b"), 0.01)
    assert len(queue) == 1
    assert queue.get(timeout_s=5) == key("b")
    queue.done(key("b"))
    assert len(queue) == 0


def test_backoff_is_exponential_per_key_and_resets(clock: ManualClock) -> None:
    queue: WorkQueue[ObjectKey] = WorkQueue(clock, base_delay_s=0.01, max_delay_s=0.05)
    delays = [queue.backoff(key("a")) for _ in range(5)]
    assert delays == [0.01, 0.02, 0.04, 0.05, 0.05]
    assert queue.backoff(key("b")) == 0.01
    queue.forget(key("a"))
    assert queue.backoff(key("a")) == 0.01


class Recorder(Controller):
    """Reconciles ConfigMaps; behaviour per name: ``fail-N`` fails N times, ``keep-N`` fails
    N times then succeeds without forgetting its failures, ``terminal`` fails for good,
    ``later`` asks to be requeued in 60 clock seconds."""

    name = "recorder"
    workers = 4
    resync_period_s = None

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.configmaps = self.watch_own(ConfigMap)
        self.calls: Counter[str] = Counter()
        self.running: Counter[str] = Counter()
        self.overlap = False
        self.parallel_peak = 0
        self._lock = threading.Lock()

    def reconcile(self, key: ObjectKey) -> Result | None:
        with self._lock:
            self.calls[key.name] += 1
            self.running[key.name] += 1
            self.overlap |= self.running[key.name] > 1
            self.parallel_peak = max(self.parallel_peak, sum(self.running.values()))
        try:
            time.sleep(0.01)
            if key.name.startswith(("fail-", "keep-")) and self.calls[key.name] <= int(
                key.name[5:]
            ):
                raise TransientError("not yet")
            if key.name.startswith("keep-"):
                return Result(forget=False)
            if key.name == "terminal":
                raise TerminalError("never")
            if key.name == "later" and self.calls[key.name] == 1:
                return Result(requeue_after=60)
            return None
        finally:
            with self._lock:
                self.running[key.name] -= 1


def test_loop_runs_keys_in_parallel_but_one_key_at_a_time(
    api: Api, start_manager, wait_for
) -> None:
    manager = start_manager([Recorder])
    recorder = manager.component(Recorder)
    names = [f"cm-{i}" for i in range(8)]
    for name in names:
        api.create(ConfigMap(metadata=ObjectMeta(name=name)))
    for _ in range(20):
        for name in names:
            recorder.enqueue(key(name))
    wait_for(lambda: recorder.queue.idle and len(recorder.queue) == 0, what="queue drained")
    assert not recorder.overlap
    assert recorder.parallel_peak > 1
    assert all(recorder.calls[name] >= 1 for name in names)


def test_queue_with_an_order_hands_out_the_lowest_rank_first(clock: ManualClock, caplog) -> None:
    ranks = {"low": 2, "high": 0, "mid": 1}  # "odd" has none: its ranking raises
    queue: WorkQueue[ObjectKey] = WorkQueue(clock, order=lambda k: ranks[k.name])
    queue.add(key("low"))
    queue.add_after(key("odd"), 5)
    queue.add_after(key("mid"), 5)
    queue.add_all([key("high"), key("low")])
    clock.advance(5)
    with caplog.at_level(logging.ERROR):
        taken = [queue.get(timeout_s=1) for _ in range(4)]
    assert taken == [key("high"), key("mid"), key("low"), key("odd")]
    assert "ranking" in caplog.text
    assert queue.get(timeout_s=0.1) is None
    assert len(queue) == 0


def test_a_result_that_does_not_forget_keeps_the_backoff(api: Api, start_manager, wait_for) -> None:
    manager = start_manager([Recorder])
    recorder = manager.component(Recorder)
    api.create(ConfigMap(metadata=ObjectMeta(name="keep-2")))
    wait_for(lambda: recorder.calls["keep-2"] == 3, what="two retries then success")
    wait_for(lambda: recorder.queue.idle and len(recorder.queue) == 0, what="queue drained")
    # Its work is still in flight: the next failure backs off further, from 2 failures on.
    assert recorder.queue.failures(key("keep-2")) == 2


def test_outcomes_become_retries_backoff_and_requeues(
    api: Api, clock: ManualClock, start_manager, wait_for
) -> None:
    manager = start_manager([Recorder])
    recorder = manager.component(Recorder)
    for name in ("fail-3", "terminal", "later"):
        api.create(ConfigMap(metadata=ObjectMeta(name=name)))
    wait_for(lambda: recorder.calls["fail-3"] == 4, what="three retries then success")
    # The backoff resets once the successful reconcile has returned.
    wait_for(lambda: recorder.queue.failures(key("fail-3")) == 0, what="backoff reset")
    wait_for(lambda: recorder.calls["terminal"] == 1 and recorder.calls["later"] == 1)
    # Idle with one key pending: only "later", parked on the clock. A retry of "terminal"
    # (real-time backoff) would be pending too, or running, or already counted.
    wait_for(lambda: recorder.queue.idle and len(recorder.queue) == 1, what="only later pending")
    assert recorder.calls["terminal"] == 1  # terminal: not retried
    assert recorder.calls["later"] == 1  # requeue_after waits for the clock
    clock.advance(60)
    wait_for(lambda: recorder.calls["later"] == 2, what="requeue after 60 clock seconds")


def test_informer_relists_after_its_watch_expires(api: Api, wait_for, caplog) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.controllers.runtime._informer")
    informer: Informer[ConfigMap] = Informer(api, ConfigMap)
    gate = threading.Event()
    seen: list[tuple[str, str]] = []

    def slow_handler(event) -> None:
        seen.append((event.type, event.object.name))
        gate.wait(10)

    api.create(ConfigMap(metadata=ObjectMeta(name="keep")))
    api.create(ConfigMap(metadata=ObjectMeta(name="doomed")))
    informer.start()
    try:
        wait_for(informer.has_synced)
        gate.set()  # the replay of cached objects to a new handler passes straight through
        informer.add_handler(slow_handler)
        assert {("ADDED", "keep"), ("ADDED", "doomed")} <= set(seen)
        gate.clear()
        api.create(ConfigMap(metadata=ObjectMeta(name="trigger")))  # the handler blocks on it
        wait_for(lambda: ("ADDED", "trigger") in seen)
        # While the informer is stuck, history moves on and is compacted away.
        api.delete(ConfigMap, "doomed")
        api.create(ConfigMap(metadata=ObjectMeta(name="late")))
        api._store.compact(api._store.revision())
        gate.set()
        wait_for(
            lambda: {c.name for c in informer.list()} == {"keep", "trigger", "late"},
            what="cache converged after relist",
        )
        assert ("DELETED", "doomed") in seen
        assert ("ADDED", "late") in seen
        assert "watch expired, relisting" in caplog.text
    finally:
        gate.set()
        informer.stop()


def test_informer_indexes_and_read_your_writes(api: Api, wait_for) -> None:
    factory = InformerFactory(api)
    informer = factory.informer(ConfigMap)
    assert factory.informer(ConfigMap) is informer
    informer.add_index("flavour", lambda cm: [cm.data.get("flavour", "")])
    factory.start()
    try:
        assert factory.wait_synced(5)
        written = api.create(ConfigMap(metadata=ObjectMeta(name="a"), data={"flavour": "x"}))
        assert informer.wait_for_revision(int(written.metadata.resource_version or 0), 5)
        assert [c.name for c in informer.by_index("flavour", "x")] == ["a"]
        api.update(written.model_copy(update={"data": {"flavour": "y"}}))
        wait_for(lambda: [c.name for c in informer.by_index("flavour", "y")] == ["a"])
        assert informer.by_index("flavour", "x") == []
    finally:
        factory.stop()


def test_shared_watch_relists_every_informer_after_expiry(api: Api, wait_for, caplog) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.controllers.runtime._informer")
    factory = InformerFactory(api)
    configmaps = factory.informer(ConfigMap)
    namespaces = factory.informer(Namespace)
    gate = threading.Event()
    gate.set()
    seen: list[tuple[str, str]] = []

    def slow_handler(event) -> None:
        seen.append((event.type, event.object.name))
        gate.wait(10)

    configmaps.add_handler(slow_handler)
    api.create(ConfigMap(metadata=ObjectMeta(name="doomed")))
    factory.start()
    try:
        assert factory.wait_synced(5)
        assert seen == [("ADDED", "doomed")]  # listed once, not also replayed by the watch
        gate.clear()
        api.create(ConfigMap(metadata=ObjectMeta(name="trigger")))
        wait_for(lambda: ("ADDED", "trigger") in seen)
        api.delete(ConfigMap, "doomed")
        api.create(Namespace(metadata=ObjectMeta(name="late")))
        api._store.compact(api._store.revision())
        gate.set()
        wait_for(lambda: {c.name for c in configmaps.list()} == {"trigger"})
        wait_for(lambda: namespaces.get("late") is not None)
        assert ("DELETED", "doomed") in seen
        assert "informers: watch expired, relisting" in caplog.text
    finally:
        gate.set()
        factory.stop()


def test_factory_hands_out_the_cache_of_a_synced_informer_only(api: Api) -> None:
    factory = InformerFactory(api)
    factory.informer(ConfigMap)
    api.create(ConfigMap(metadata=ObjectMeta(name="a"), data={"k": "v"}))
    assert factory.cached(ConfigMap) is None  # not started: nothing listed yet
    factory.start()
    try:
        assert factory.wait_synced(5)
        cached = factory.cached(ConfigMap)
        assert cached is not None
        assert "a" in {c.name for c in cached}
        # Asking for a kind no informer holds makes none: the reader goes to the API.
        assert factory.cached(Namespace) is None
        assert factory.cached(Namespace) is None
    finally:
        factory.stop()
    assert factory.cached(ConfigMap) is None  # stopped: no longer kept up to date
