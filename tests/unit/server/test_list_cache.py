"""The list cache answers LISTs with every write that finished before the request."""

from __future__ import annotations

import asyncio
import json
import threading

from reconciler.api._codec import kind_prefix
from reconciler.api.server._cache import ListCache
from reconciler.api.server._query import parse_label_selector
from reconciler.api.server._raw import list_items, with_revision, without_revision
from reconciler.store import Op
from schemas import ConfigMap, ObjectMeta, Pod
from tests.fixtures.waiting import wait_until


def names(items: bytes) -> list[str]:
    return [i["metadata"]["name"] for i in json.loads(b"[" + items + b"]")]


def cm(name, namespace="shop", **labels):
    return ConfigMap(metadata=ObjectMeta(name=name, namespace=namespace, labels=labels))


def test_cache_matches_the_store_after_every_write(api, store):
    api.create(cm("before", app="x"))
    cache = ListCache(store, prefixes=[kind_prefix(ConfigMap, None), kind_prefix(Pod, None)])
    cache.start()
    try:
        all_cms, shop = kind_prefix(ConfigMap, None), kind_prefix(ConfigMap, "shop")
        for step in range(20):
            api.create(cm(f"c{step:02d}", app="x" if step % 2 else "y"))
            if step % 3 == 0:
                api.delete(ConfigMap, f"c{step:02d}", namespace="shop")
            got = cache.items(all_cms, shop, None)
            assert got is not None
            expected, _ = list_items(store, ConfigMap, namespace="shop", selector=None)
            assert got[0] == expected
        selector = parse_label_selector("app=x")
        got = cache.items(all_cms, shop, selector)
        assert got is not None
        assert names(got[0]) == names(
            list_items(store, ConfigMap, namespace="shop", selector=selector)[0]
        )
        assert cache.items(all_cms, kind_prefix(ConfigMap, "default"), None)[0] == b""
        # A write to a key outside every cached kind still lets the cache catch up.
        store.put("/elsewhere/x", b"1")
        store.txn([], [Op.put("/elsewhere/y", b"2"), Op.put("/elsewhere/z", b"3")])
        hit = cache.items(all_cms, shop, None)
        assert hit is not None
        assert hit[1] == int(store.revision())
    finally:
        cache.stop()


def test_cache_under_concurrent_writers(api, store):
    cache = ListCache(store, prefixes=[kind_prefix(ConfigMap, None)])
    cache.start()
    try:

        def write(worker: int) -> None:
            for i in range(15):
                api.create(cm(f"w{worker}-{i}"))

        threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        got = cache.items(kind_prefix(ConfigMap, None), kind_prefix(ConfigMap, "shop"), None)
        assert got is not None
        assert len(names(got[0])) == 60
    finally:
        cache.stop()


def test_stopped_cache_declines(api, store):
    cache = ListCache(store, prefixes=[kind_prefix(ConfigMap, None)], catch_up_timeout_s=0.2)
    cache.start()
    cache.stop()
    api.create(cm("late"))
    assert cache.items(kind_prefix(ConfigMap, None), kind_prefix(ConfigMap, "shop"), None) is None


def test_watch_feed_replays_history_follows_and_drops_laggards(api, store):
    cache = ListCache(store, prefixes=[kind_prefix(ConfigMap, None)], history=5, watcher_backlog=3)
    cache.start()
    shop = kind_prefix(ConfigMap, "shop")

    def caught_up() -> None:
        assert cache.items(kind_prefix(ConfigMap, None), shop, None) is not None

    async def main() -> None:
        loop = asyncio.get_running_loop()
        start = api.current_revision()
        for i in range(3):
            api.create(cm(f"s{i}"))
        caught_up()
        feed = cache.subscribe(loop, prefix=shop, selector=None, after=start)
        assert feed is not None
        lines = [json.loads(await asyncio.wait_for(feed.queue.get(), 5)) for _ in range(3)]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [
            ("ADDED", "s0"),
            ("ADDED", "s1"),
            ("ADDED", "s2"),
        ]
        api.delete(ConfigMap, "s0", namespace="shop")
        deleted = json.loads(await asyncio.wait_for(feed.queue.get(), 5))
        assert deleted["type"] == "DELETED"
        assert deleted["object"]["metadata"]["name"] == "s0"
        assert int(deleted["object"]["metadata"]["resourceVersion"]) == api.current_revision()
        feed.close()
        # History holds 5 changes: older starts are declined (the caller uses the store).
        for i in range(6):
            api.create(cm(f"t{i}"))
        caught_up()
        assert cache.subscribe(loop, prefix=shop, selector=None, after=start) is None
        # A watcher that does not read is cut off past its backlog, not buffered forever.
        slow = cache.subscribe(loop, prefix=shop, selector=None, after=api.current_revision())
        assert slow is not None
        for i in range(5):
            api.create(cm(f"o{i}"))
        caught_up()
        received = []
        while (item := await asyncio.wait_for(slow.queue.get(), 5)) is not None:
            received.append(item)
        assert len(received) == 3
        slow.close()

    try:
        asyncio.run(main())
    finally:
        cache.stop()


def test_recent_copy_waits_for_the_revision_asked_for(api, store):
    cache = ListCache(store, prefixes=[kind_prefix(ConfigMap, None)])
    prefix = kind_prefix(ConfigMap, None)
    key = "/registry/configmaps/shop/r"
    created = api.create(cm("r"))
    cache.start()
    try:
        rv = int(created.metadata.resource_version or 0)
        assert cache.recent(prefix, key, revision=rv).mod_revision == rv
        updated = api.update(created.model_copy(update={"data": {"k": "2"}}))
        new_rv = int(updated.metadata.resource_version or 0)
        # Asked right after the write, it waits for the watch rather than answer the old copy.
        copy = cache.recent(prefix, key, revision=new_rv, wait_s=2.0)
        assert copy.mod_revision == new_rv
        assert json.loads(copy.value)["data"] == {"k": "2"}
        assert copy.value == store.get(key).value
        # A revision nobody wrote yet: after the bounded wait, the copy there is.
        assert cache.recent(prefix, key, revision=new_rv + 100, wait_s=0.01) == copy
        assert (
            cache.recent(prefix, "/registry/configmaps/shop/none", revision=1, wait_s=0.01) is None
        )
        api.delete(ConfigMap, "r", namespace="shop")
        assert cache.items(prefix, prefix, None) is not None  # caught up with the delete
        assert cache.recent(prefix, key, revision=1, wait_s=0.01) is None
    finally:
        cache.stop()


def test_history_is_bounded_by_bytes_as_well_as_by_count(api, store):
    # Room for about three changes of these ConfigMaps: the oldest go first.
    cache = ListCache(store, prefixes=[kind_prefix(ConfigMap, None)], history_bytes=1200)
    cache.start()
    shop = kind_prefix(ConfigMap, "shop")
    try:

        async def main() -> None:
            loop = asyncio.get_running_loop()
            start = api.current_revision()
            for i in range(6):
                api.create(cm(f"b{i}"))
            assert cache.items(kind_prefix(ConfigMap, None), shop, None) is not None
            # The first changes are gone: a watch from before them is declined.
            assert cache.subscribe(loop, prefix=shop, selector=None, after=start) is None
            recent = cache.subscribe(
                loop, prefix=shop, selector=None, after=api.current_revision() - 2
            )
            assert recent is not None
            lines = [json.loads(await asyncio.wait_for(recent.queue.get(), 5)) for _ in range(2)]
            assert [e["object"]["metadata"]["name"] for e in lines] == ["b4", "b5"]
            recent.close()

        asyncio.run(main())
    finally:
        cache.stop()


def test_the_stored_value_comes_back_from_the_body_it_was_spliced_into():
    for value in (
        b'{"kind":"ConfigMap","metadata":{"name":"a","namespace":"shop"},"data":{}}',
        b'{"kind":"ConfigMap","metadata":{},"data":{"metadata":{"x":1}}}',
    ):
        body = with_revision(value, 42)
        assert json.loads(body)["metadata"]["resourceVersion"] == "42"
        assert without_revision(body, 42) == value


def test_history_keeps_only_the_last_history_s_seconds_of_changes(api, store):
    # The cache's clock: moved by the test, so the age of each change is exact.
    now = [1000.0]
    cache = ListCache(
        store, prefixes=[kind_prefix(ConfigMap, None)], history_s=60.0, clock=lambda: now[0]
    )
    cache.start()
    every, shop = kind_prefix(ConfigMap, None), kind_prefix(ConfigMap, "shop")
    try:

        async def main() -> None:
            loop = asyncio.get_running_loop()
            start = api.current_revision()
            api.create(cm("old"))
            assert cache.items(every, shop, None) is not None
            now[0] += 30.0
            middle = api.current_revision()
            api.create(cm("middle"))
            assert cache.items(every, shop, None) is not None
            # 31 s later the first change is 61 s old: the next write drops it, not the second.
            now[0] += 31.0
            api.create(cm("new"))
            assert cache.items(every, shop, None) is not None
            assert cache.subscribe(loop, prefix=shop, selector=None, after=start) is None
            feed = cache.subscribe(loop, prefix=shop, selector=None, after=middle)
            assert feed is not None
            lines = [json.loads(await asyncio.wait_for(feed.queue.get(), 5)) for _ in range(2)]
            assert [e["object"]["metadata"]["name"] for e in lines] == ["middle", "new"]
            feed.close()
            # With no write at all, the cache's own idle polls drop what has grown too old.
            now[0] += 61.0

            def declined() -> bool:
                feed = cache.subscribe(loop, prefix=shop, selector=None, after=middle)
                if feed is None:
                    return True
                feed.close()
                return False

            wait_until(declined, timeout=10, what="the quiet cache to drop its old history")

        asyncio.run(main())
    finally:
        cache.stop()
