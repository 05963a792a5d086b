"""Scheduler throughput: 10,000 pods onto 1,000 and 5,000 simulated nodes of mixed sizes.

The headline is measured as kube-scheduler's scheduler_perf measures SchedulingThroughput:
the live ``Scheduler`` component runs against the API and its store (embedded sqlite)
holding the nodes; the pods are then created through ``Api.create`` from a pool of client
threads, and the figure is pods bound per second from the first create to the last bind seen
by a watch — informer events, placement, assume and the ``Api.bind`` write all included.

Two secondary figures on the same pods and nodes:

- ``placement`` (median of 3 runs): the scheduling loop's work per pod alone — ``pod_info``
  (from a real ``Pod``), ``select_node`` (filters, scores, pick) and ``assume`` on a
  ``ClusterState`` built with ``node_info`` from real ``Node`` objects. No I/O.
- ``bind writes``: ``Api.bind`` of every pod to its chosen node from the scheduler's bind
  pool size of threads (the store group-commits them), without the scheduler.

Nodes come in five shapes (4 to 64 CPU, 8 to 256 GiB, 32 to 110 pods) and three zones, some
tainted; pods in 17 request shapes (BestEffort to 2 CPU / 4 GiB, one to three containers)
over 100 owners, 10% with a zone nodeSelector, 5% tolerating the taint, 1% with a hostPort:
so the scheduler's per-request-shape score cache and the filters do real work.

Run from the repository root: ``python bench/scheduler.py [--pods 10000]``. Prints a table,
then as its last line JSON with ``pods_per_s_1000_nodes`` and ``pods_per_s_5000_nodes``
(through the API), ``placement_pods_per_s_*`` and ``bind_writes_per_s_*``.
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
from schemas.node import NodeSpec, NodeStatus, Taint
from schemas.pod import Container, ContainerPort, PodSpec, ResourceRequirements, Toleration
from schemas.quantity import Quantity

SIZES = (1000, 5000)
ZONES = ("a", "b", "c")
BIND_THREADS = 8
PLACEMENT_RUNS = 3


#: (cpu, memory, pods) of the node shapes, in turn.
NODE_SHAPES = (
    ("4", "8Gi", 32),
    ("8", "32Gi", 64),
    ("16", "64Gi", 110),
    ("32", "128Gi", 110),
    ("64", "256Gi", 110),
)
#: (cpu, memory) requests per container; None: no request (BestEffort).
POD_SHAPES = (
    (None, None),
    ("50m", "64Mi"),
    ("100m", "128Mi"),
    ("100m", "256Mi"),
    ("150m", "192Mi"),
    ("200m", "256Mi"),
    ("250m", "128Mi"),
    ("250m", "512Mi"),
    ("300m", "384Mi"),
    ("500m", "512Mi"),
    ("500m", "1Gi"),
    ("750m", "768Mi"),
    ("1", "1Gi"),
    ("1", "2Gi"),
    ("1500m", "2Gi"),
    ("2", "2Gi"),
    ("2", "4Gi"),
)
TAINT_EVERY = 10  # every tenth node is tainted dedicated=batch:NoSchedule


def make_nodes(count: int) -> list[Node]:
    nodes = []
    for i in range(count):
        cpu, memory, max_pods = NODE_SHAPES[i % len(NODE_SHAPES)]
        resources = {"cpu": Quantity(cpu), "memory": Quantity(memory), "pods": Quantity(max_pods)}
        taints = (
            [Taint(key="dedicated", value="batch", effect="NoSchedule")]
            if i % TAINT_EVERY == 0
            else []
        )
        nodes.append(
            Node(
                metadata=ObjectMeta(name=f"node-{i}", labels={"zone": ZONES[i % 3]}),
                spec=NodeSpec(address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", taints=taints),
                status=NodeStatus(
                    capacity=resources,
                    allocatable=resources,
                    conditions=[Condition(type="Ready", status="True")],
                ),
            )
        )
    return nodes


def _container(
    index: int, shape: tuple[str | None, str | None], ports: list[ContainerPort]
) -> Container:
    cpu, memory = shape
    requests = {}
    if cpu is not None:
        requests["cpu"] = Quantity(cpu)
    if memory is not None:
        requests["memory"] = Quantity(memory)
    return Container(
        name=f"c{index}",
        image="capstan.local/busybox:1",
        resources=ResourceRequirements(requests=requests),
        ports=ports if index == 0 else [],
    )


def make_pods(count: int, rng: random.Random) -> list[Pod]:
    pods = []
    for i in range(count):
        owner = f"rs-{i % 100}"
        selector = {"zone": ZONES[i % 3]} if i % 10 == 0 else {}
        ports = [ContainerPort(container_port=80, host_port=8080)] if i % 100 == 7 else []
        tolerations = (
            [Toleration(key="dedicated", operator="Equal", value="batch", effect="NoSchedule")]
            if i % 20 == 3
            else []
        )
        containers = [
            _container(c, rng.choice(POD_SHAPES), ports)
            for c in range(1 + (i % 7 == 0) + (i % 13 == 0))
        ]
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
                    containers=containers, node_selector=selector, tolerations=tolerations
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


def bench_through_api(
    directory: Path, nodes: list[Node], pods: list[Pod], expected: int
) -> tuple[float, int]:
    """scheduler_perf's SchedulingThroughput: the scheduler runs, the pods are created through
    the API, and pods bound per second are counted from the first create to the last bind."""
    with open_store(f"sqlite:///{directory / 'e2e.db'}") as store:
        api = Api(store)
        with ThreadPoolExecutor(BIND_THREADS) as pool:
            list(pool.map(api.create, nodes))
        bound = threading.Semaphore(0)
        manager = ControllerManager(api, components=[Scheduler])
        manager.start()
        scheduler = manager.component(Scheduler)
        informer = manager.ctx.informers.informer(Pod)
        informer.wait_synced(60)
        while sum(1 for _ in scheduler.state.nodes()) < len(nodes):
            time.sleep(0.05)  # the scheduler's node cache filling from its informer
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
        start = time.perf_counter()
        with ThreadPoolExecutor(BIND_THREADS) as clients:
            created = clients.map(api.create, pods)
            deadline = time.perf_counter() + 600
            done = 0
            while done < expected and time.perf_counter() < deadline:
                if bound.acquire(timeout=1):
                    done += 1
            elapsed = time.perf_counter() - start
            list(created)
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
            directory = Path(tmp) / str(size)
            directory.mkdir()
            # This machine is shared: repeat the (I/O-free) placement loop and take the median.
            runs = [bench_placement(nodes, pods) for _ in range(PLACEMENT_RUNS)]
            placement = statistics.median(run[0] for run in runs)
            _, chosen, failed = runs[0]
            through_api, done = bench_through_api(directory, nodes, pods, len(chosen))
            binds = bench_binds(directory, nodes, pods, chosen)
            rows.append((size, len(pods), failed, through_api, done, placement, binds))
            results[f"pods_per_s_{size}_nodes"] = round(through_api, 1)
            results[f"placement_pods_per_s_{size}_nodes"] = round(placement, 1)
            results[f"bind_writes_per_s_{size}_nodes"] = round(binds, 1)
    print(
        "scheduler throughput: pods created through the API with the scheduler running, "
        "bound per second (kube-scheduler scheduler_perf's SchedulingThroughput)"
    )
    print(
        f"{'nodes':>6} {'pods':>6} {'unsched':>8} {'API pods/s':>11} {'bound':>6} "
        f"{'placement/s':>12} {'bind writes/s':>14}"
    )
    for size, count, failed, through_api, done, placement, binds in rows:
        print(
            f"{size:>6} {count:>6} {failed:>8} {through_api:>11.0f} {done:>6} "
            f"{placement:>12.0f} {binds:>14.0f}"
        )
    print(
        f"(API: embedded sqlite store through reconciler.api, {BIND_THREADS} client threads "
        f"creating; placement: in memory, no I/O, median of {PLACEMENT_RUNS} runs; bind "
        f"writes: Api.bind alone from {BIND_THREADS} threads)"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
