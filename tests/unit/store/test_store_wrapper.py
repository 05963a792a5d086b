"""StoreWrapper passes every Store call through, so a view (sealing, fencing) that overrides
a few calls still behaves as the store it wraps for all the others."""

from __future__ import annotations

import inspect
from pathlib import Path

from reconciler.store import Compare, Op, Store, StoreWrapper, open_store


def test_every_store_method_is_delegated() -> None:
    public = {
        name
        for name, member in inspect.getmembers(Store, inspect.isfunction)
        if not name.startswith("_")
    }
    assert public <= set(vars(StoreWrapper)), public - set(vars(StoreWrapper))
    assert not StoreWrapper.__abstractmethods__


def test_a_wrapped_store_reads_writes_and_watches_the_inner_one(tmp_path: Path) -> None:
    inner = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    with inner, StoreWrapper(inner) as view:
        put = view.put("/a", b"1")
        assert inner.get("/a") is not None
        assert view.get("/a").value == b"1"  # type: ignore[union-attr]
        assert view.range("/", prefix=True).kvs[0].key == "/a"
        assert view.txn([Compare.version("/a", "==", 1)], [Op.put("/a", b"2")]).succeeded
        assert view.revision() == inner.revision() == put.revision + 1
        lease = view.grant(30)
        assert view.keepalive(lease) == 30
        view.revoke(lease)
        with view.watch("/b") as watch:
            view.put("/b", b"x")
            events = watch.poll(5.0)
        assert [e.kv.key for e in events] == ["/b"]
        assert view.delete("/a").deleted == 1
