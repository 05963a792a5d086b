"""Rollout time: a 1,000-replica Deployment on 100 hollow nodes, created, then re-imaged.

The whole control plane on its real code path: one embedded (sqlite) store, the ``Api``, the
``ControllerManager`` with every default component (deployment, replicaset, serviceaccount,
namespace, gc, node, endpoints controllers and the scheduler), and 100 hollow nodes (simulated
agents: they renew their leases and turn pods bound to them Running + Ready
``--start-delay`` seconds after they see them). Two phases, each timed until the Deployment
reports every replica updated, ready and available and no old pod is left:

- ``create``: the Deployment appears; ReplicaSet, 1,000 pods, binds, pods Ready.
- ``update``: the image changes; a RollingUpdate (maxSurge 25%, maxUnavailable 25%) replaces
  every pod.

Store writes are counted as store revisions (every write is one revision) during each phase,
divided by the replicas: what one pod costs the store in that phase, all writers included
(pod create, bind, status, ReplicaSet/Deployment status, events, node heartbeats).

Run from the repository root: ``.venv/bin/python bench/rollout.py [--replicas 1000 --nodes 100]``.
Prints a table, then as its last line JSON:
``{"rollout_s": X, "update_rollout_s": Y, "writes_per_pod": Z}`` (Z: the create phase).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.api import Api, Conflict, SystemClock
from reconciler.controllers.manager import ControllerManager
from reconciler.store import open_store
from schemas import Deployment, Pod
from tests.fixtures.hollow import HollowCluster


def manifest(replicas: int, image: str) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                        }
                    ]
                },
            },
        },
    }


def rolled_to(api: Api, image: str, replicas: int) -> Callable[[], bool]:
    def check() -> bool:
        d = api.get(Deployment, "web")
        s = d.status
        if s is None or s.observed_generation != d.metadata.generation:
            return False
        if not s.updated_replicas == s.available_replicas == s.replicas == replicas:
            return False
        pods = api.list(Pod).items
        return len(pods) == replicas and all(
            p.spec.containers[0].image == image and p.status is not None and p.status.ready
            for p in pods
        )

    return check


def wait(predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


def set_image(api: Api, image: str) -> None:
    for _ in range(100):
        d = api.get(Deployment, "web")
        container = d.spec.template.spec.containers[0].model_copy(update={"image": image})
        template = d.spec.template.model_copy(
            update={"spec": d.spec.template.spec.model_copy(update={"containers": [container]})}
        )
        try:
            spec = d.spec.model_copy(update={"template": template})
            api.update(d.model_copy(update={"spec": spec}))
            return
        except Conflict:
            continue
    raise SystemExit("the Deployment kept conflicting")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument(
        "--start-delay", type=float, default=0.1, help="seconds a hollow node takes to start a pod"
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    clock = SystemClock()
    rows: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/state.db", clock=clock.time)
        try:
            api = Api(store, clock=clock)
            with (
                HollowCluster(api, clock=clock, start_delay_s=args.start_delay) as hollow,
                ControllerManager(api, clock=clock),
            ):
                hollow.add_nodes(args.nodes, cpu="32", memory="128Gi", pods=110)
                for phase, image, act in (
                    ("create", "img:1", lambda: api.create(manifest(args.replicas, "img:1"))),
                    ("update", "img:2", lambda: set_image(api, "img:2")),
                ):
                    before = api.current_revision()
                    started = time.perf_counter()
                    act()
                    wait(
                        rolled_to(api, image, args.replicas),
                        timeout_s=args.timeout,
                        what=f"{phase} rollout",
                    )
                    rows.append(
                        (phase, time.perf_counter() - started, api.current_revision() - before)
                    )
        finally:
            store.close()

    print(
        f"{args.replicas} replicas on {args.nodes} hollow nodes "
        f"(pod start delay {args.start_delay}s), embedded store"
    )
    print(f"{'phase':<8} {'seconds':>9} {'pods/s':>8} {'store writes':>13} {'writes/pod':>11}")
    for phase, seconds, writes in rows:
        print(
            f"{phase:<8} {seconds:>9.2f} {args.replicas / seconds:>8.0f} {writes:>13} "
            f"{writes / args.replicas:>11.2f}"
        )
    print(
        json.dumps(
            {
                "rollout_s": round(rows[0][1], 2),
                "update_rollout_s": round(rows[1][1], 2),
                "writes_per_pod": round(rows[0][2] / args.replicas, 2),
                "update_writes_per_pod": round(rows[1][2] / args.replicas, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
