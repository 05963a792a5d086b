"""Rollouts on the whole control plane: every controller and the real scheduler from the
controller manager, on a real temp store, with hollow nodes standing in for agents (they bind
nothing themselves: the scheduler binds, they turn bound pods Running + Ready)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.api import Api, Conflict, SystemClock
from reconciler.controllers.manager import ControllerManager
from reconciler.workloads.deployment import HASH_LABEL, REVISION_ANNOTATION
from schemas import Deployment, Pod, ReplicaSet
from tests.fixtures.hollow import HollowCluster, temp_api
from tests.fixtures.waiting import wait_until


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Api, HollowCluster]]:
    # Real time here: hollow nodes start a pod 50 ms after seeing it, which is what makes a
    # rollout take several steps. Nothing asserted below depends on the clock.
    clock = SystemClock()
    with (
        temp_api(tmp_path, clock) as api,
        HollowCluster(api, clock=clock, start_delay_s=0.05) as hollow,
        ControllerManager(api, clock=clock),
    ):
        hollow.add_nodes(4, cpu="8", memory="16Gi", pods=110)
        yield api, hollow


def manifest(*, replicas: int, image: str, max_surge: int | str, max_unavailable: int | str):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ]
                },
            },
        },
    }


def set_image(api: Api, image: str) -> None:
    for _ in range(50):
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
    raise AssertionError("kept conflicting")


def rolled_to(api: Api, image: str, replicas: int) -> Callable[[], bool]:
    def check() -> bool:
        d = api.get(Deployment, "web")
        s = d.status
        pods = api.list(Pod).items
        return (
            s is not None
            and s.observed_generation == d.metadata.generation
            and s.updated_replicas == s.available_replicas == s.replicas == replicas
            and len(pods) == replicas
            and all(
                p.spec.containers[0].image == image and p.status and p.status.ready for p in pods
            )
        )

    return check


class Invariants:
    """Replays every pod change in store order and tracks total and ready pods."""

    def __init__(self, api: Api) -> None:
        listed = api.list(Pod)
        self.pods = {p.name: p for p in listed.items}
        self.max_total = len(self.pods)
        self.min_ready = self._ready()
        self.nodes_used: set[str] = set()
        self._stream = api.watch(Pod, from_revision=listed.resource_version)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _ready(self) -> int:
        return sum(1 for p in self.pods.values() if p.status and p.status.ready)

    def _run(self) -> None:
        for event in self._stream:
            if event.type == "DELETED":
                self.pods.pop(event.object.name, None)
            else:
                self.pods[event.object.name] = event.object
                if event.object.spec.node_name:
                    self.nodes_used.add(event.object.spec.node_name)
            self.max_total = max(self.max_total, len(self.pods))
            self.min_ready = min(self.min_ready, self._ready())

    def stop(self) -> None:
        self._stream.close()
        self._thread.join(timeout=5)


@pytest.mark.parametrize(
    ("surge", "unavailable", "max_total", "min_ready"),
    [
        (2, 1, 12, 9),
        ("25%", "25%", 13, 8),  # Kubernetes' defaults: surge rounds up, unavailable down
        (0, 2, 10, 8),
    ],
)
def test_rolling_update_respects_surge_and_unavailability(
    cluster, surge, unavailable, max_total, min_ready
) -> None:
    api, _hollow = cluster
    api.create(manifest(replicas=10, image="img:1", max_surge=surge, max_unavailable=unavailable))
    wait_until(rolled_to(api, "img:1", 10), what="first rollout", timeout=30)
    watch = Invariants(api)
    try:
        set_image(api, "img:2")
        wait_until(rolled_to(api, "img:2", 10), what="image rollout", timeout=30)
    finally:
        watch.stop()
    assert watch.max_total <= max_total
    assert watch.min_ready >= min_ready
    assert len(watch.nodes_used) > 1  # the scheduler spread them


def test_rollback_reuses_the_old_replicaset(cluster) -> None:
    api, _hollow = cluster
    api.create(manifest(replicas=6, image="img:1", max_surge=1, max_unavailable=1))
    wait_until(rolled_to(api, "img:1", 6), what="first rollout", timeout=30)
    (first,) = api.list(ReplicaSet).items
    set_image(api, "img:2")
    wait_until(rolled_to(api, "img:2", 6), what="update", timeout=30)
    set_image(api, "img:1")  # what `git revert` of the image change produces
    wait_until(rolled_to(api, "img:1", 6), what="rollback", timeout=30)
    sets = {rs.name: rs for rs in api.list(ReplicaSet).items}
    assert len(sets) == 2
    assert sets[first.name].metadata.uid == first.metadata.uid
    assert sets[first.name].metadata.annotations[REVISION_ANNOTATION] == "3"
    assert {p.labels[HASH_LABEL] for p in api.list(Pod).items} == {first.labels[HASH_LABEL]}
