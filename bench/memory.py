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
- **wire cache**: the node dispatcher's ``PodWireCache`` (each pod's wire form and JSON),
  filled from the informer's pods as a push to every node does.

Run from the repository root: ``.venv/bin/python bench/memory.py [--pods 5000]``. Prints a
table (MB, bytes per pod, allocations per pod), and as its last line one JSON object:
``{"pods": N, "informer_bytes_per_pod": ..., "list_cache_bytes_per_pod": ...,
"wire_cache_bytes_per_pod": ...}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.api import Api, kind_prefix, now_utc
from reconciler.api.server._cache import ListCache
from reconciler.controllers.runtime import InformerFactory
from reconciler.nodes.desired import PodWireCache
from reconciler.store import Store, open_store
from schemas import Namespace, ObjectMeta, Pod
from schemas.meta import Condition
from schemas.pod import (
    ContainerState,
    ContainerStateRunning,
    ContainerStatus,
    HostPortMapping,
    PodStatus,
)


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


def run(store: Store, api: Api, pods: int) -> dict[str, float]:
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
    tracemalloc.stop()
    cache.stop()
    factory.stop()

    print(f"{'holder':<18} {'MB':>8} {'B/pod':>8} {'allocs/pod':>11}")
    for name, size, count in rows:
        print(f"{name:<18} {size / 1e6:8.2f} {size / pods:8.0f} {count / pods:11.1f}")
    total = sum(size for _, size, _ in rows)
    print(f"{'all three':<18} {total / 1e6:8.2f} {total / pods:8.0f}")
    return {
        "informer_bytes_per_pod": round(rows[0][1] / pods),
        "list_cache_bytes_per_pod": round(rows[1][1] / pods),
        "wire_cache_bytes_per_pod": round(rows[2][1] / pods),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--deployments", type=int, default=10)
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
            figures = run(store, api, args.pods)
        finally:
            store.close()
    print(json.dumps({"pods": args.pods, **figures}))


if __name__ == "__main__":
    main()
