"""The leader's store compactor (``reconciler.store.compactor``) on a real embedded store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.api import Api
from reconciler.controllers.runtime import Informer
from reconciler.store import Compacted, Store, open_store
from reconciler.store.compactor import COMPACT_KEY, Compactor
from reconciler.store.election import LEADER_KEY, Fenced, FencedStore
from schemas import ConfigMap, ObjectMeta
from tests.fixtures.waiting import wait_until

LEASE = "/registry/leases/capstan-node-lease/node-1"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        yield opened


def renew(store: Store, times: int) -> int:
    """Write the lease ``times`` times, as a node's heartbeat does; its last revision."""
    for beat in range(times):
        revision = store.put(LEASE, f"renewTime={beat}".encode()).revision
    return int(revision)


def index_entries(store: Store) -> int:
    """Rowids the embedded store's in-memory ``KeyIndex`` holds."""
    return sum(len(ids) for ids in store._index._ids.values())  # type: ignore[attr-defined]


def test_each_tick_compacts_to_the_previous_ticks_revision(store: Store) -> None:
    compactor = Compactor(store)
    renew(store, 50)
    assert compactor.tick() is None  # the first round only records where it stands
    first = compactor.pending
    renew(store, 50)
    before = index_entries(store)

    assert compactor.tick() == first
    # History before the first round is gone; from it on (one interval) it is all there.
    with pytest.raises(Compacted):
        store.get(LEASE, at_revision=first - 1)
    assert store.get(LEASE, at_revision=first) is not None
    with store.watch(LEASE, from_revision=first) as watch:
        assert len(watch.poll(timeout=5)) == 50
    current = store.get(LEASE)
    assert current is not None
    assert current.value == b"renewTime=49"
    after = index_entries(store)
    assert after < before - 40

    # The next round compacts what the second one recorded, and so on.
    second = compactor.pending
    renew(store, 50)
    assert compactor.tick() == second
    with pytest.raises(Compacted):
        store.get(LEASE, at_revision=second - 1)
    assert index_entries(store) <= after + 2
    kv = store.get(COMPACT_KEY)
    assert kv is not None
    assert kv.version == 3
    assert int(kv.value) == second


def test_a_compactor_that_loses_the_swap_compacts_nothing_that_round(store: Store) -> None:
    # Two compactors on one store (a replica restarted within a term, two terms overlapping):
    # one compaction a round, the loser follows the winner's clock.
    a, b = Compactor(store), Compactor(store)
    assert a.tick() is None
    a_recorded = a.pending
    renew(store, 10)
    assert b.tick() is None  # b's clock (0) is behind: it adopts a's
    assert b.clock == 1
    renew(store, 10)
    assert a.tick() == a_recorded  # a's clock is still the store's: a's round
    renew(store, 10)
    assert b.tick() is None  # behind again: a ticked since
    assert b.clock == 2
    b_recorded = b.pending
    renew(store, 10)
    assert b.tick() == b_recorded
    assert a.tick() is None
    assert a.clock == 3
    with pytest.raises(Compacted):
        store.get(LEASE, at_revision=b_recorded - 1)
    assert store.get(LEASE, at_revision=b_recorded) is not None


def test_an_already_compacted_store_is_left_as_it_is(store: Store) -> None:
    compactor = Compactor(store)
    compactor.tick()
    renew(store, 10)
    store.compact(store.revision())  # by hand, past what the compactor recorded
    assert compactor.tick() is None
    assert compactor.compacted == 0


def test_a_deposed_leaders_compactor_compacts_nothing(store: Store) -> None:
    lease = store.grant(60)
    term = store.put(LEADER_KEY, b"old", lease=lease).revision
    compactor = Compactor(FencedStore(store, term=int(term)))
    compactor.tick()
    first_beat = renew(store, 1)
    renew(store, 9)
    # Another replica takes over: a new leader key, a new term.
    store.revoke(lease)
    store.put(LEADER_KEY, b"new")
    with pytest.raises(Fenced):
        compactor.tick()
    oldest = store.get(LEASE, at_revision=first_beat)  # nothing compacted
    assert oldest is not None
    assert oldest.value == b"renewTime=0"
    assert compactor.compacted == 0


def test_the_compactor_thread_compacts_every_interval(store: Store) -> None:
    compactor = Compactor(store, interval_s=0.05)
    compactor.start()
    try:
        renew(store, 20)
        wait_until(lambda: compactor.compacted > 0, what="a compaction")
    finally:
        compactor.stop()
    with pytest.raises(Compacted):
        store.get(LEASE, at_revision=compactor.compacted - 1)


def test_a_zero_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Compactor(None, interval_s=0)  # type: ignore[arg-type]


def test_an_informer_behind_the_compaction_relists_and_converges(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.controllers.runtime._informer")
    api = Api(store)
    compactor = Compactor(store)
    informer: Informer[ConfigMap] = Informer(api, ConfigMap)
    gate = threading.Event()
    gate.set()
    seen: list[tuple[str, str]] = []

    def slow_handler(event) -> None:  # type: ignore[no-untyped-def]
        seen.append((event.type, event.object.name))
        gate.wait(10)

    api.create(ConfigMap(metadata=ObjectMeta(name="doomed")))
    informer.add_handler(slow_handler)
    informer.start()
    try:
        wait_until(informer.has_synced, what="informer synced")
        gate.clear()
        api.create(ConfigMap(metadata=ObjectMeta(name="trigger")))  # the handler blocks on it
        wait_until(lambda: ("ADDED", "trigger") in seen, what="trigger seen")
        # While the informer is stuck, two compaction rounds pass its watch revision.
        api.delete(ConfigMap, "doomed")
        compactor.tick()
        api.create(ConfigMap(metadata=ObjectMeta(name="late")))
        renew(store, 5)
        assert compactor.tick() is not None
        gate.set()
        wait_until(
            lambda: {c.name for c in informer.list()} == {"trigger", "late"},
            what="cache converged after relist",
        )
        assert ("DELETED", "doomed") in seen
        assert "watch expired, relisting" in caplog.text
    finally:
        gate.set()
        informer.stop()
