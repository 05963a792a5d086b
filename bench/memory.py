"""What the control plane keeps per pod: the in-memory copies of a fleet's pods, measured.

Creates ``--pods`` pods of ``--deployments`` templates spread over ``--nodes`` nodes in a
fresh embedded store through the real ``Api`` (each pod Running and Ready, with the status a
node reports: conditions, a container status, a host port), then builds, one after the
other, each structure of ``capstan up`` that keeps a copy of every pod, and measures with
``tracemalloc`` what it keeps (the live allocations it added, after a garbage collection):

- **pod informer**: the controllers' shared Pod informer (``InformerFactory``), its cache
  and indexes;
- **API watch cache**: the HTTP API server's ``ListCache`` of pods (response bytes), after
  loading, so without history;
- **wire cache**: the node dispatcher's ``PodWireCache`` (each pod's wire form and its
  packed JSON), filled from the informer's pods as a push to every node does; and, for
  comparison, **wire cache, text JSON**: the same entries with the JSON as a ``str``, as the
  cache kept them before they were packed;
- **held reports**: the dispatcher's ``HeldReports``, fed one complete status per node
  decoded from its wire JSON as the agents' come (every pod's report: its status); and,
  for comparison, **held reports, plain JSON**: each report's JSON unpacked, keyed by its
  decoded uid, as they were kept before;
- **SQLite page caches**: what SQLite itself holds (``sqlite3_status64``, outside the Python
  heap) once ``--readers`` threads have each ranged every pod at the same time, as the
  control plane's worker threads read the store: the store keeps one reader connection
  per read ever made at once, each with its own page cache.

Run from the repository root: ``.venv/bin/python bench/memory.py [--pods 5000]``. Prints a
table (MB, bytes per pod, allocations per pod), and as its last line one JSON object:
``{"pods": N, "informer_bytes_per_pod": ..., "list_cache_bytes_per_pod": ...,
"wire_cache_bytes_per_pod": ..., "held_reports_bytes_per_pod": ..., "sqlite_mb": ...}``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.api import Api, kind_prefix, now_utc
from reconciler.api.server._cache import ListCache
from reconciler.controllers.runtime import InformerFactory, share_field_sets
from reconciler.nodes.desired import PodWireCache, _wire_pod
from reconciler.nodes.reports import HeldReports
from reconciler.store import Store, open_store
from schemas import Namespace, ObjectMeta, Pod
from schemas.meta import Condition
from schemas.node import NodeStatus
from schemas.pod import (
    ContainerState,
    ContainerStateRunning,
    ContainerStatus,
    HostPortMapping,
    PodStatus,
)
from schemas.protocol import PodReport, Status


def _pod(index: int, *, deployments: int, nodes: int) -> Pod:
    app = f"app-{index % deployments}"
    return Pod.model_validate(
        {
            "metadata": {
                "name": f"{app}-5d8f7c9b4-{index:05d}",
                "namespace": "fleet",
                "labels": {"app": app, "pod-template-hash": "5d8f7c9b4"},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{app}-5d8f7c9b4",
                        "uid": f"uid-of-{app}-replicaset",
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "nodeName": f"node-{index % nodes}",
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": "capstan.local/busybox:1",
                        "command": ["sleep", "3600"],
                        "env": [{"name": "VERSION", "value": "v0"}],
                        "ports": [{"containerPort": 8080}],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        "volumeMounts": [{"name": "config", "mountPath": "/config"}],
                    }
                ],
                "volumes": [{"name": "config", "configMap": {"name": "fleet-config"}}],
            },
        }
    )


def _running(pod: Pod, api: Api, port: int) -> PodStatus:
    now = now_utc(api.clock)
    address = f"127.0.{port % 200}.1"
    return PodStatus(
        phase="Running",
        host_ip=address,
        pod_ip=address,
        start_time=now,
        conditions=[
            Condition(type=kind, status="True", last_transition_time=now)
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ],
        container_statuses=[
            ContainerStatus(
                name="main",
                image="capstan.local/busybox:1",
                ready=True,
                started=True,
                state=ContainerState(running=ContainerStateRunning(started_at=now)),
            )
        ],
        host_ports=[
            HostPortMapping(
                container_name="main",
                container_port=8080,
                protocol="TCP",
                host_ip=address,
                host_port=32768 + port,
            )
        ],
    )


def _node_statuses(pods: list[Pod]) -> list[bytes]:
    """One complete status per node reporting each of its pods, as an agent's wire JSON."""
    by_node: dict[str, list[PodReport]] = {}
    for pod in pods:
        if pod.status is None or pod.spec.node_name is None:
            continue
        report = PodReport(
            namespace=pod.namespace, name=pod.name, uid=pod.metadata.uid or "", status=pod.status
        )
        by_node.setdefault(pod.spec.node_name, []).append(report)
    return [
        Status(node_name=node, node=NodeStatus(), pods=reports)
        .model_dump_json(by_alias=True)
        .encode()
        for node, reports in sorted(by_node.items())
    ]


def populate(api: Api, *, pods: int, deployments: int, nodes: int) -> None:
    api.create(Namespace(metadata=ObjectMeta(name="fleet")))
    for index in range(pods):
        created = api.create(_pod(index, deployments=deployments, nodes=nodes))
        api.update_status(created.model_copy(update={"status": _running(created, api, index)}))


def measured(build: Callable[[], Any]) -> tuple[Any, int, int]:
    """What ``build()`` returns, and the bytes and allocations it left live."""
    gc.collect()
    before = tracemalloc.take_snapshot()
    kept = build()
    gc.collect()
    after = tracemalloc.take_snapshot()
    diff = after.compare_to(before, "filename")
    return kept, sum(s.size_diff for s in diff), sum(s.count_diff for s in diff)


def sqlite_memory_mb() -> float:
    """What the process's SQLite library has allocated now (SQLITE_STATUS_MEMORY_USED)."""
    library = ctypes.CDLL("libsqlite3.so.0")
    current, highest = ctypes.c_int64(), ctypes.c_int64()
    library.sqlite3_status64(0, ctypes.byref(current), ctypes.byref(highest), 0)
    return current.value / 1e6


def concurrent_ranges(store: Store, readers: int) -> float:
    """SQLite's memory once ``readers`` threads have each ranged every pod at once."""
    start = threading.Barrier(readers)

    def read() -> None:
        start.wait()
        store.range(kind_prefix(Pod, None), prefix=True)

    threads = [threading.Thread(target=read) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sqlite_memory_mb()


def run(store: Store, api: Api, pods: int, readers: int) -> dict[str, float]:
    tracemalloc.start()
    rows: list[tuple[str, int, int]] = []

    def informer() -> InformerFactory:
        factory = InformerFactory(api)
        factory.informer(Pod)
        factory.start()
        if not factory.wait_synced(120):
            raise RuntimeError("the pod informer did not sync in 120 s")
        return factory

    factory, size, count = measured(informer)
    rows.append(("pod informer", size, count))

    def list_cache() -> ListCache:
        cache = ListCache(store, prefixes=[kind_prefix(Pod, None)])
        cache.start()
        return cache

    cache, size, count = measured(list_cache)
    rows.append(("API watch cache", size, count))

    cached = factory.informer(Pod).list()

    def wire_cache() -> PodWireCache:
        wires = PodWireCache()
        for pod in cached:
            wires.wire(pod)
        return wires

    _, size, count = measured(wire_cache)
    rows.append(("wire cache", size, count))

    def wire_texts() -> dict[str, tuple[str, Pod, str]]:
        # The cache's entries as they were before the JSON was packed.
        kept = {}
        for pod in cached:
            wired = _wire_pod(pod)
            share_field_sets(wired)
            text = wired.model_dump_json(by_alias=True, exclude_none=True)
            kept[pod.metadata.uid or ""] = (pod.metadata.resource_version or "", wired, text)
        return kept

    _, size, count = measured(wire_texts)
    rows.append(("wire cache, text JSON", size, count))

    # Decoded with ``json``: pydantic's JSON parser keeps the strings it read in a cache of
    # its own (bounded), which would count here as held.
    statuses = _node_statuses(cached)

    def held_reports() -> HeldReports:
        held = HeldReports()
        for line in statuses:
            status = Status.model_validate(json.loads(line))
            held.note(status.node_name, status)
        return held

    _, size, count = measured(held_reports)
    rows.append(("held reports", size, count))

    def held_json() -> dict[str, dict[str, bytes]]:
        # The held reports as they were kept before: plain JSON under the decoded uid.
        kept: dict[str, dict[str, bytes]] = {}
        for line in statuses:
            status = Status.model_validate(json.loads(line))
            kept[status.node_name] = {
                r.uid: r.model_dump_json(by_alias=True, exclude_none=True).encode()
                for r in status.pods
            }
        return kept

    _, size, count = measured(held_json)
    rows.append(("held reports, plain JSON", size, count))
    tracemalloc.stop()
    cache.stop()
    factory.stop()

    print(f"{'holder':<26} {'MB':>8} {'B/pod':>8} {'allocs/pod':>11}")
    for name, size, count in rows:
        print(f"{name:<26} {size / 1e6:8.2f} {size / pods:8.0f} {count / pods:11.1f}")
    kept = [rows[0], rows[1], rows[2], rows[4]]
    total = sum(size for _, size, _ in kept)
    print(f"{'all but the comparisons':<26} {total / 1e6:8.2f} {total / pods:8.0f}")
    sqlite_mb = concurrent_ranges(store, readers)
    print(f"SQLite page caches after {readers} concurrent ranges: {sqlite_mb:.1f} MB")
    return {
        "informer_bytes_per_pod": round(rows[0][1] / pods),
        "list_cache_bytes_per_pod": round(rows[1][1] / pods),
        "wire_cache_bytes_per_pod": round(rows[2][1] / pods),
        "held_reports_bytes_per_pod": round(rows[4][1] / pods),
        "sqlite_mb": round(sqlite_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--deployments", type=int, default=10)
    parser.add_argument("--readers", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="capstan-memory-") as directory:
        store = open_store(f"sqlite:///{Path(directory) / 'state.db'}")
        try:
            api = Api(store)
            started = time.monotonic()
            populate(api, pods=args.pods, deployments=args.deployments, nodes=args.nodes)
            print(
                f"{args.pods} pods of {args.deployments} templates on {args.nodes} nodes "
                f"written in {time.monotonic() - started:.1f} s"
            )
            figures = run(store, api, args.pods, args.readers)
        finally:
            store.close()
    print(json.dumps({"pods": args.pods, **figures}))


if __name__ == "__main__":
    main()
