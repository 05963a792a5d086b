"""The request path tuned for the PUT bench keeps its contract: REST paths served past
Starlette's router, writes answered with the stored bytes, the worker pool, GC freezing."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from pathlib import Path

import httpx
import pytest

from reconciler.api import Api
from reconciler.api.server import ServeOptions, serve
from reconciler.api.server._workers import WorkerPool
from reconciler.store import Store
from tests.unit.server.conftest import assert_status, configmap

CM = "/api/v1/namespaces/shop/configmaps"


def test_put_answers_what_a_get_reads(admin):
    created = admin.post(CM, json=configmap("a")).json()
    updated = admin.put(f"{CM}/a", json=dict(created, data={"k": "2"}))
    assert updated.status_code == 200, updated.text
    assert updated.json() == admin.get(f"{CM}/a").json()
    assert int(updated.json()["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    # A PUT that changes nothing keeps the resourceVersion and still answers the object.
    same = admin.put(f"{CM}/a", json=updated.json())
    assert same.status_code == 200
    assert same.json() == updated.json()


def test_other_methods_on_rest_paths_still_get_statuses(admin):
    assert_status(admin.request("OPTIONS", f"{CM}/a"), 405, "MethodNotAllowed")
    assert_status(admin.post("/api", json={}), 405, "MethodNotAllowed")
    assert admin.get("/api").json()["kind"] == "APIVersions"
    # HEAD goes through Starlette (as before) and the REST handler has no verb for it.
    assert admin.head(CM).status_code == 405
    assert_status(admin.get("/api/v1/namespaces/shop/nothings"), 404, "NotFound")


def test_query_strings_still_reach_the_handlers(admin):
    admin.post(CM, json=configmap("a", app="web"))
    admin.post(CM, json=configmap("b", app="db"))
    listed = admin.get(CM, params={"labelSelector": "app=web"}).json()
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    assert_status(admin.get(CM, params={"watch": "maybe"}), 400, "BadRequest")


def test_worker_pool_runs_calls_off_the_loop_and_hands_back_errors():
    pool = WorkerPool(2, name="test-pool")

    async def main() -> tuple[str, list[str]]:
        loop_thread = threading.current_thread().name
        names = await asyncio.gather(
            *(pool.run(lambda: threading.current_thread().name) for _ in range(8))
        )
        with pytest.raises(KeyError, match="boom"):
            await pool.run(lambda: {}["boom"])
        with pytest.raises(RuntimeError, match="StopIteration"):
            await pool.run(lambda: next(iter(())))
        return loop_thread, list(names)

    loop_thread, names = asyncio.run(main())
    assert loop_thread not in names
    assert {n.rsplit("-", 1)[0] for n in names} == {"test-pool"}
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        asyncio.run(pool.run(lambda: 1))
    _wait_for(lambda: not _threads("test-pool"))


def test_a_dropped_pool_ends_its_threads():
    pool = WorkerPool(3, name="dropped-pool")
    assert asyncio.run(pool.run(lambda: 41 + 1)) == 42
    assert len(_threads("dropped-pool")) == 3
    ref = weakref.ref(pool)
    del pool
    gc.collect()
    assert ref() is None
    _wait_for(lambda: not _threads("dropped-pool"))


def test_serve_freezes_what_startup_built(api: Api, store: Store, tmp_path: Path):
    gc.unfreeze()
    server = serve(
        api,
        store,
        options=ServeOptions(
            state_dir=tmp_path / "state", port=0, insecure_http=True, log_level="error"
        ),
    )
    try:
        assert gc.get_freeze_count() > 0
        response = httpx.get(f"{server.url}/healthz")
        assert response.status_code == 200
    finally:
        server.stop()
        gc.unfreeze()
    plain = serve(
        api,
        store,
        options=ServeOptions(
            state_dir=tmp_path / "state",
            port=0,
            insecure_http=True,
            log_level="error",
            freeze_gc=False,
        ),
    )
    try:
        assert gc.get_freeze_count() == 0
    finally:
        plain.stop()


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{prefix}-")]


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
