"""The store contract, run against both backends (embedded SQLite and a real etcd)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from reconciler.store import (
    MAX_VALUE_BYTES,
    Compacted,
    Compare,
    DuplicateKey,
    EventType,
    FutureRevision,
    LeaseNotFound,
    Op,
    RangeResult,
    Revision,
    Store,
    ValueTooLarge,
)


def test_put_get_track_revisions_and_versions(store: Store) -> None:
    start = store.revision()
    first = store.put("/pods/a", b"1")
    assert first.revision == start + 1
    assert first.prev_kv is None
    second = store.put("/pods/a", b"2")
    assert second.revision == first.revision + 1
    assert second.prev_kv is not None
    assert second.prev_kv.value == b"1"
    kv = store.get("/pods/a")
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (
        b"2",
        first.revision,
        second.revision,
        2,
    )
    assert store.get("/pods/missing") is None
    assert store.revision() == second.revision


def test_range_prefix_is_ordered_limited_and_carries_header_revision(store: Store) -> None:
    for name in ["c", "a", "b", "d"]:
        store.put(f"/pods/{name}", name.encode())
    store.put("/podsx", b"not under the prefix")
    store.put("/pod", b"not under the prefix either")
    result = store.range("/pods/", prefix=True)
    assert [kv.key for kv in result.kvs] == ["/pods/a", "/pods/b", "/pods/c", "/pods/d"]
    assert result.revision == store.revision()
    assert (result.count, result.more) == (4, False)
    limited = store.range("/pods/", prefix=True, limit=2)
    assert [kv.key for kv in limited.kvs] == ["/pods/a", "/pods/b"]
    assert (limited.count, limited.more) == (4, True)
    assert [kv.key for kv in store.range("/pods/b").kvs] == ["/pods/b"]
    everything = store.range("", prefix=True)
    assert len(everything.kvs) == 6


def test_unicode_keys_and_prefix_edges(store: Store) -> None:
    store.put("/ns/é/1", b"x")
    store.put("/ns/é/2", b"y")
    store.put("/ns/f", b"z")
    store.put("/ns/\U0001f600", b"emoji")
    assert [kv.key for kv in store.range("/ns/é/", prefix=True).kvs] == ["/ns/é/1", "/ns/é/2"]
    assert [kv.key for kv in store.range("/ns/", prefix=True).kvs] == [
        "/ns/f",
        "/ns/é/1",
        "/ns/é/2",
        "/ns/\U0001f600",
    ]


def test_delete_key_and_prefix_in_one_revision(store: Store) -> None:
    for i in range(3):
        store.put(f"/svc/{i}", b"v")
    store.put("/other", b"v")
    before = store.revision()
    single = store.delete("/svc/0")
    assert (single.revision, single.deleted) == (before + 1, 1)
    assert single.prev_kvs[0].key == "/svc/0"
    many = store.delete("/svc/", prefix=True)
    assert (many.revision, many.deleted) == (before + 2, 2)
    assert sorted(kv.key for kv in many.prev_kvs) == ["/svc/1", "/svc/2"]
    assert store.range("/svc/", prefix=True).kvs == ()
    nothing = store.delete("/svc/", prefix=True)
    assert nothing.deleted == 0
    assert store.revision() == before + 2, "deleting nothing must not bump the revision"
    recreated = store.put("/svc/0", b"again")
    kv = store.get("/svc/0")
    assert kv is not None
    assert (kv.version, kv.create_revision) == (1, recreated.revision)


def test_reads_at_an_older_revision(store: Store) -> None:
    r1 = store.put("/cm/a", b"one").revision
    r2 = store.put("/cm/a", b"two").revision
    r3 = store.delete("/cm/a").revision
    store.put("/cm/b", b"b")
    assert store.get("/cm/a", at_revision=r1).value == b"one"  # type: ignore[union-attr]
    assert store.get("/cm/a", at_revision=r2).value == b"two"  # type: ignore[union-attr]
    assert store.get("/cm/a", at_revision=r3) is None
    old = store.range("/cm/", prefix=True, at_revision=r2)
    assert [kv.key for kv in old.kvs] == ["/cm/a"]
    with pytest.raises(FutureRevision):
        store.range("/cm/", prefix=True, at_revision=Revision(store.revision() + 10))


def test_txn_optimistic_concurrency_on_mod_revision(store: Store) -> None:
    rv = store.put("/deploy/web", b"v1").revision
    won = store.txn(
        [Compare.mod_revision("/deploy/web", "==", rv)],
        [Op.put("/deploy/web", b"v2"), Op.put("/deploy/web-status", b"s")],
        [Op.range("/deploy/web")],
    )
    assert won.succeeded
    assert all(r.revision == won.revision for r in won.responses)
    assert store.get("/deploy/web").mod_revision == won.revision  # type: ignore[union-attr]
    assert store.get("/deploy/web-status").mod_revision == won.revision  # type: ignore[union-attr]
    lost = store.txn(
        [Compare.mod_revision("/deploy/web", "==", rv)],
        [Op.put("/deploy/web", b"v3")],
        [Op.range("/deploy/web")],
    )
    assert not lost.succeeded
    assert lost.revision == won.revision, "a txn that writes nothing does not bump the revision"
    (current,) = lost.responses[0].kvs  # type: ignore[union-attr]
    assert current.value == b"v2"


def test_txn_create_if_absent_and_value_compares(store: Store) -> None:
    create = store.txn([Compare.version("/ns/a", "==", 0)], [Op.put("/ns/a", b"x")])
    assert create.succeeded
    again = store.txn([Compare.create_revision("/ns/a", "==", 0)], [Op.put("/ns/a", b"y")])
    assert not again.succeeded
    assert store.txn([Compare.value("/ns/a", "==", b"x")], []).succeeded
    assert store.txn([Compare.value("/ns/a", "!=", b"y")], []).succeeded
    assert store.txn([Compare.version("/ns/a", ">", 0)], []).succeeded
    assert store.txn([Compare.mod_revision("/ns/a", "<", create.revision + 1)], []).succeeded
    # etcd's rule: a value compare on a missing key is false whatever the operator.
    assert not store.txn([Compare.value("/ns/none", "!=", b"x")], []).succeeded
    assert not store.txn([Compare.value("/ns/none", "==", b"")], []).succeeded


def test_txn_ops_run_in_order_and_reject_duplicate_keys(store: Store) -> None:
    store.put("/q/old", b"o")
    result = store.txn(
        [], [Op.put("/q/new", b"n"), Op.delete("/q/old"), Op.range("/q/", prefix=True)]
    )
    assert result.succeeded
    (listing,) = [r for r in result.responses if isinstance(r, RangeResult)]
    assert [kv.key for kv in listing.kvs] == ["/q/new"]
    before = store.revision()
    with pytest.raises(DuplicateKey):
        store.txn([], [Op.put("/q/x", b"1"), Op.put("/q/x", b"2")])
    with pytest.raises(DuplicateKey):
        store.txn([], [Op.put("/q/x", b"1"), Op.delete("/q/", prefix=True)])
    assert store.revision() == before


def test_value_size_limit(store: Store) -> None:
    store.put("/big/ok", b"x" * MAX_VALUE_BYTES)
    assert len(store.get("/big/ok").value) == MAX_VALUE_BYTES  # type: ignore[union-attr]
    with pytest.raises(ValueTooLarge):
        store.put("/big/no", b"x" * (MAX_VALUE_BYTES + 1))
    with pytest.raises(ValueTooLarge):
        store.txn([], [Op.put("/big/no", b"x" * (MAX_VALUE_BYTES + 1))])
    assert store.get("/big/no") is None


def test_compaction_refuses_old_reads_and_watches(store: Store) -> None:
    r1 = store.put("/c/a", b"1").revision
    store.put("/c/a", b"2")
    store.delete("/c/a")
    r4 = store.put("/c/b", b"b").revision
    store.put("/c/b", b"b2")
    store.compact(r4)
    with pytest.raises(Compacted):
        store.range("/c/", prefix=True, at_revision=r1)
    at_compaction = store.range("/c/", prefix=True, at_revision=r4)
    assert [(kv.key, kv.value) for kv in at_compaction.kvs] == [("/c/b", b"b")]
    with store.watch("/c/", prefix=True, from_revision=r1) as watch, pytest.raises(Compacted):
        next(iter(watch))
    with store.watch("/c/", prefix=True, from_revision=r4) as watch:
        event = next(iter(watch))
        assert (event.kv.value, event.prev_kv.value) == (b"b2", b"b")  # type: ignore[union-attr]
    with pytest.raises(Compacted):
        store.compact(r1)
    assert store.get("/c/b").value == b"b2"  # type: ignore[union-attr]


def test_watch_replays_history_with_prev_kv_and_filters_by_prefix(store: Store) -> None:
    start = store.revision()
    store.put("/w/a", b"1")
    store.put("/elsewhere", b"x")
    store.put("/w/a", b"2")
    store.txn([], [Op.put("/w/b", b"b"), Op.delete("/w/a")])
    with store.watch("/w/", prefix=True, from_revision=start) as watch:
        events = [next(watch) for _ in range(4)]
    assert [(e.type, e.kv.key) for e in events] == [
        (EventType.PUT, "/w/a"),
        (EventType.PUT, "/w/a"),
        (EventType.PUT, "/w/b"),
        (EventType.DELETE, "/w/a"),
    ]
    assert events[0].prev_kv is None
    assert events[1].prev_kv is not None
    assert events[1].prev_kv.value == b"1"
    assert events[2].revision == events[3].revision, "one txn, one revision"
    assert events[3].kv.mod_revision == events[3].revision
    assert events[3].prev_kv is not None
    assert events[3].prev_kv.value == b"2"
    assert [e.revision for e in events] == sorted(e.revision for e in events)


def test_watch_single_key_and_default_start_is_now(store: Store) -> None:
    store.put("/k/one", b"before")
    with store.watch("/k/one") as watch:
        store.put("/k/one-more", b"other key")
        store.put("/k/one", b"after")
        event = next(watch)
    assert (event.kv.key, event.kv.value) == ("/k/one", b"after")


def test_watch_sees_concurrent_writers_without_gap_or_duplicate(store: Store) -> None:
    writers, per_writer = 8, 40
    start = store.revision()
    received = []

    def write(n: int) -> None:
        for i in range(per_writer):
            store.put(f"/cw/{n}/{i % 5}", f"{n}-{i}".encode())

    with store.watch("/cw/", prefix=True, from_revision=start) as watch:
        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        for event in watch:
            received.append(event)
            if len(received) == writers * per_writer or time.monotonic() > deadline:
                break
        for thread in threads:
            thread.join()
    revisions = [e.revision for e in received]
    assert len(received) == writers * per_writer
    assert revisions == list(range(start + 1, start + 1 + writers * per_writer))
    # Per key, each event's prev_kv is the previous event of that key: nothing skipped.
    last: dict[str, bytes] = {}
    for event in received:
        if event.kv.key in last:
            assert event.prev_kv is not None
            assert event.prev_kv.value == last[event.kv.key]
        last[event.kv.key] = event.kv.value


def test_watch_close_ends_iteration(store: Store) -> None:
    watch = store.watch("/closing/", prefix=True)
    closing = threading.Event()

    def close() -> None:
        closing.set()
        watch.close()

    closer = threading.Timer(0.2, close)
    closer.start()
    # Nothing is written under the prefix: only the close can end the iteration (a watch
    # that ignored it would hang until the test's timeout).
    assert list(watch) == []
    assert closing.is_set()
    closer.join()


def test_async_watch(store: Store) -> None:
    async def scenario() -> list[tuple[str, bytes]]:
        start = store.revision()
        async with store.watch("/aw/", prefix=True, from_revision=start) as watch:
            await asyncio.to_thread(store.put, "/aw/1", b"a")
            await asyncio.to_thread(store.put, "/aw/2", b"b")
            seen = []
            async for event in watch:
                seen.append((event.kv.key, event.kv.value))
                if len(seen) == 2:
                    break
            return seen

    assert asyncio.run(scenario()) == [("/aw/1", b"a"), ("/aw/2", b"b")]


def test_leases_keepalive_revoke_and_unknown(store: Store) -> None:
    lease = store.grant(30)
    store.put("/nodes/n1", b"alive", lease=lease)
    store.put("/nodes/n2", b"alive", lease=lease)
    store.put("/nodes/keep", b"no lease")
    assert store.get("/nodes/n1").lease == lease  # type: ignore[union-attr]
    assert store.keepalive(lease) >= 30
    start = store.revision()
    store.revoke(lease)
    assert store.revision() == start + 1, "a revoke deletes its keys in one revision"
    assert [kv.key for kv in store.range("/nodes/", prefix=True).kvs] == ["/nodes/keep"]
    with store.watch("/nodes/", prefix=True, from_revision=start) as watch:
        deleted = [next(watch), next(watch)]
    assert {(e.type, e.kv.key) for e in deleted} == {
        (EventType.DELETE, "/nodes/n1"),
        (EventType.DELETE, "/nodes/n2"),
    }
    with pytest.raises(LeaseNotFound):
        store.keepalive(lease)
    with pytest.raises(LeaseNotFound):
        store.revoke(lease)
    with pytest.raises(LeaseNotFound):
        store.put("/nodes/n3", b"x", lease=lease)


def test_expired_lease_deletes_its_keys_as_events(store: Store) -> None:
    lease = store.grant(1)  # etcd rounds this up to its minimum (about 2 s)
    start = store.revision()
    store.put("/hb/node", b"beat", lease=lease)
    with store.watch("/hb/", prefix=True, from_revision=start) as watch:
        put = next(watch)
        gone = next(watch)  # blocks until the lease expires
    assert put.type is EventType.PUT
    assert (gone.type, gone.kv.key) == (EventType.DELETE, "/hb/node")
    assert gone.prev_kv is not None
    assert gone.prev_kv.lease == lease
    assert store.get("/hb/node") is None
    with pytest.raises(LeaseNotFound):
        store.keepalive(lease)


def test_async_watch_raises_compacted(store: Store) -> None:
    first = store.put("/ac/a", b"1").revision
    store.put("/ac/a", b"2")
    store.put("/ac/a", b"3")
    store.compact(store.revision())

    async def scenario() -> None:
        async with store.watch("/ac/", prefix=True, from_revision=first) as watch:
            async for _event in watch:
                raise AssertionError("a compacted watch delivered an event")

    with pytest.raises(Compacted):
        asyncio.run(scenario())
