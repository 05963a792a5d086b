"""Scheduler throughput: 10,000 pods onto 1,000 and 5,000 simulated nodes.

Three figures per cluster size, each on the real code path:

- ``placement`` (median of 3 runs): the scheduling loop's own work per pod — ``pod_info``
  (from a real ``Pod``), ``select_node`` (filters, scores, pick) and ``assume`` on a
  ``ClusterState`` of the nodes (built from real ``Node`` objects with ``node_info``). No I/O.
  This is the acceptance figure (issue 6: >= 1,000 pods/s at 1,000 nodes, >= 500 pods/s at
  5,000 nodes).
- ``bind writes``: ``Api.bind`` of every pod to its chosen node, on an embedded (sqlite) store,
  from the scheduler's bind pool size of threads (the store group-commits them).
- ``end to end``: the live ``Scheduler`` component started on a store already holding the nodes
  and 10,000 pending pods: informer list, placement, assume, binds — until every pod is bound.

The pod mix: 100 owners (ReplicaSets), requests 100m-250m CPU / 128-256 MiB, 10% with a
nodeSelector on one of three zones, 1% with a hostPort. Nodes: 32 CPU, 128 GiB, 110 pods.

Run from the repository root: ``.venv/bin/python bench/scheduler.py [--pods 10000]``.
Prints a table, then as its last line JSON with ``pods_per_s_1000_nodes`` and
``pods_per_s_5000_nodes`` (placement) and the bind / end-to-end rates as extra keys.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.api import Api
from reconciler.controllers.manager import ControllerManager
from reconciler.scheduler import (
    ClusterState,
    Placement,
    Scheduler,
    node_info,
    pod_info,
    select_node,
)
from reconciler.store import open_store
from schemas import Node, Pod
from schemas.meta import Condition, ObjectMeta, OwnerReference
from schemas.node import NodeSpec, NodeStatus
from schemas.pod import Container, ContainerPort, PodSpec, ResourceRequirements
from schemas.quantity import Quantity

SIZES = (1000, 5000)
ZONES = ("a", "b", "c")
BIND_THREADS = 8
PLACEMENT_RUNS = 3


def make_nodes(count: int) -> list[Node]:
    resources = {"cpu": Quantity("32"), "memory": Quantity("128Gi"), "pods": Quantity(110)}
    return [
        Node(
            metadata=ObjectMeta(name=f"node-{i}", labels={"zone": ZONES[i % 3]}),
            spec=NodeSpec(address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"),
            status=NodeStatus(
                capacity=resources,
                allocatable=resources,
                conditions=[Condition(type="Ready", status="True")],
            ),
        )
        for i in range(count)
    ]


def make_pods(count: int, rng: random.Random) -> list[Pod]:
    pods = []
    for i in range(count):
        owner = f"rs-{i % 100}"
        cpu = rng.choice(("100m", "150m", "200m", "250m"))
        memory = rng.choice(("128Mi", "192Mi", "256Mi"))
        selector = {"zone": ZONES[i % 3]} if i % 10 == 0 else {}
        ports = [ContainerPort(container_port=80, host_port=8080)] if i % 100 == 7 else []
        pods.append(
            Pod(
                metadata=ObjectMeta(
                    name=f"pod-{i}",
                    namespace="default",
                    owner_references=[
                        OwnerReference(
                            api_version="apps/v1",
                            kind="ReplicaSet",
                            name=owner,
                            uid=f"uid-{owner}",
                            controller=True,
                        )
                    ],
                ),
                spec=PodSpec(
                    containers=[
                        Container(
                            name="app",
                            image="capstan.local/busybox:1",
                            resources=ResourceRequirements(
                                requests={"cpu": Quantity(cpu), "memory": Quantity(memory)}
                            ),
                            ports=ports,
                        )
                    ],
                    node_selector=selector,
                ),
            )
        )
    return pods


def bench_placement(nodes: list[Node], pods: list[Pod]) -> tuple[float, dict[str, str], int]:
    state = ClusterState([node_info(n) for n in nodes], initial_capacity=len(nodes))
    rng = random.Random(1)
    chosen: dict[str, str] = {}
    failed = 0
    start = time.perf_counter()
    for pod in pods:
        info = pod_info(pod)
        outcome = select_node(state, info, rng=rng)
        if isinstance(outcome, Placement):
            state.assume(info, outcome.node)
            chosen[pod.name] = outcome.node
        else:
            failed += 1
    elapsed = time.perf_counter() - start
    return len(pods) / elapsed, chosen, failed


def populate(api: Api, nodes: list[Node], pods: list[Pod]) -> list[Pod]:
    with ThreadPoolExecutor(BIND_THREADS) as pool:
        list(pool.map(api.create, nodes))
        return list(pool.map(api.create, pods))


def bench_binds(
    directory: Path, nodes: list[Node], pods: list[Pod], chosen: dict[str, str]
) -> float:
    with open_store(f"sqlite:///{directory / 'binds.db'}") as store:
        api = Api(store)
        stored = populate(api, nodes, pods)
        work = [(pod, chosen[pod.name]) for pod in stored if pod.name in chosen]
        start = time.perf_counter()
        with ThreadPoolExecutor(BIND_THREADS) as pool:
            list(pool.map(lambda item: api.bind(*item), work))
        elapsed = time.perf_counter() - start
    return len(work) / elapsed


def bench_end_to_end(
    directory: Path, nodes: list[Node], pods: list[Pod], expected: int
) -> tuple[float, int]:
    with open_store(f"sqlite:///{directory / 'e2e.db'}") as store:
        api = Api(store)
        populate(api, nodes, pods)
        bound = threading.Semaphore(0)
        manager = ControllerManager(api, components=[Scheduler])
        start = time.perf_counter()
        manager.start()
        informer = manager.ctx.informers.informer(Pod)
        seen: set[str] = set()
        lock = threading.Lock()

        def on_pod(event: object) -> None:
            pod = event.object  # type: ignore[attr-defined]
            if pod.spec.node_name:
                with lock:
                    if pod.name not in seen:
                        seen.add(pod.name)
                        bound.release()

        informer.add_handler(on_pod)
        deadline = time.perf_counter() + 600
        done = 0
        while done < expected and time.perf_counter() < deadline:
            if bound.acquire(timeout=1):
                done += 1
        elapsed = time.perf_counter() - start
        manager.stop()
    return done / elapsed, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    args = parser.parse_args()
    pods = make_pods(args.pods, random.Random(42))
    results: dict[str, float] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="capstan-bench-sched-") as tmp:
        for size in SIZES:
            nodes = make_nodes(size)
            # This machine is shared: repeat the (I/O-free) placement loop and take the median.
            runs = [bench_placement(nodes, pods) for _ in range(PLACEMENT_RUNS)]
            rates = sorted(run[0] for run in runs)
            placement, best = statistics.median(rates), rates[-1]
            _, chosen, failed = runs[0]
            directory = Path(tmp) / str(size)
            directory.mkdir()
            binds = bench_binds(directory, nodes, pods, chosen)
            e2e, done = bench_end_to_end(directory, nodes, pods, len(chosen))
            rows.append((size, len(pods), failed, placement, best, binds, e2e, done))
            results[f"pods_per_s_{size}_nodes"] = round(placement, 1)
            results[f"bind_writes_per_s_{size}_nodes"] = round(binds, 1)
            results[f"end_to_end_pods_per_s_{size}_nodes"] = round(e2e, 1)
    header = (
        "nodes",
        "pods",
        "unsched",
        "placement/s",
        "(best)",
        "bind writes/s",
        "end-to-end/s",
        "bound",
    )
    print(
        f"{header[0]:>6} {header[1]:>6} {header[2]:>8} {header[3]:>12} {header[4]:>8} "
        f"{header[5]:>14} {header[6]:>13} {header[7]:>6}"
    )
    for size, count, failed, placement, best, binds, e2e, done in rows:
        print(
            f"{size:>6} {count:>6} {failed:>8} {placement:>12.0f} {best:>8.0f} {binds:>14.0f} "
            f"{e2e:>13.0f} {done:>6}"
        )
    print(
        f"(placement: median of {PLACEMENT_RUNS} runs; bind writes and end-to-end: embedded "
        f"sqlite store through reconciler.api, {BIND_THREADS} bind threads)"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
