"""etcd backend specifics: endpoint failover and a watch that outlives its server's restart."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from reconciler.store import EventType, Revision, Unavailable, open_store
from tests.integration.store.etcd_server import ETCD, EtcdServer, etcd_available, free_port


@pytest.fixture
def own_etcd() -> Iterator[EtcdServer]:
    if not etcd_available():
        pytest.skip(f"etcd binary not found at {ETCD} (install Debian's etcd-server)")
    with EtcdServer() as server:
        yield server


def test_dead_first_endpoint_fails_over_to_the_next(etcd_server: EtcdServer) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with open_store(f"etcd://{dead},{etcd_server.endpoint}") as store:
        start = store.revision()
        rev = store.put("/failover/a", b"1").revision
        assert store.get("/failover/a").value == b"1"  # type: ignore[union-attr]
        with store.watch("/failover/", prefix=True, from_revision=start) as watch:
            assert next(watch).revision == rev


def test_no_live_endpoint_is_unavailable() -> None:
    with open_store(f"etcd://127.0.0.1:{free_port()}") as store, pytest.raises(Unavailable):
        store.put("/x", b"1")


def test_watch_resumes_after_etcd_restarts_without_gap_or_duplicate(
    own_etcd: EtcdServer,
) -> None:
    with open_store(f"etcd://{own_etcd.endpoint}") as store:
        start = store.revision()
        first = store.put("/restart/a", b"1").revision
        received = []
        got_first = threading.Event()
        with store.watch("/restart/", prefix=True, from_revision=Revision(start)) as watch:

            def consume() -> None:
                for event in watch:
                    received.append(event)
                    got_first.set()
                    if len(received) == 3:
                        return

            consumer = threading.Thread(target=consume)
            consumer.start()
            assert got_first.wait(10)
            own_etcd.kill()
            own_etcd.start()
            second = store.put("/restart/b", b"2").revision
            third = store.delete("/restart/a").revision
            consumer.join(timeout=30)
        assert [(e.revision, e.type) for e in received] == [
            (first, EventType.PUT),
            (second, EventType.PUT),
            (third, EventType.DELETE),
        ]
