"""The leader's store compactor on both backends: the embedded store and a real etcd."""

from __future__ import annotations

import pytest

from reconciler.store import Compacted, Store
from reconciler.store.compactor import COMPACT_KEY, Compactor
from reconciler.store.election import LEADER_KEY, Fenced, FencedStore

LEASE = "/registry/leases/kube-node-lease/node-1"


def renew(store: Store, times: int) -> int:
    for beat in range(times):
        revision = store.put(LEASE, f"renewTime={beat}".encode()).revision
    return int(revision)


def test_rounds_compact_one_interval_behind_through_the_fenced_store(store: Store) -> None:
    lease = store.grant(60)
    term = int(store.put(LEADER_KEY, b"leader", lease=lease).revision)
    compactor = Compactor(FencedStore(store, term=term))
    renew(store, 5)
    assert compactor.tick() is None
    recorded = compactor.pending
    renew(store, 5)
    assert compactor.tick() == recorded
    with pytest.raises(Compacted):
        store.get(LEASE, at_revision=recorded - 1)
    assert store.get(LEASE, at_revision=recorded) is not None
    current = store.get(LEASE)
    assert current is not None
    assert current.value == b"renewTime=4"
    clock = store.get(COMPACT_KEY)
    assert clock is not None
    assert clock.version == 2

    # Another replica takes over: this compactor's rounds are refused and compact nothing.
    store.revoke(lease)
    store.put(LEADER_KEY, b"next leader")
    since = renew(store, 5)
    with pytest.raises(Fenced):
        compactor.tick()
    assert store.get(LEASE, at_revision=since) is not None
