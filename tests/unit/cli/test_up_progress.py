"""``capstan up``'s progress line counts pods and nodes from the controllers' informer caches
when this process runs them (nothing decoded per look), and through the API on a follower."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from reconciler.api import Api, ManualClock
from reconciler.cli.up import _pods_and_nodes, _pods_progress
from reconciler.controllers.manager import ControllerManager
from reconciler.scheduler import Scheduler
from reconciler.store import open_store
from schemas import Node, Pod
from schemas.meta import Condition, ObjectMeta
from schemas.node import NodeSpec
from schemas.pod import Container, PodSpec, PodStatus
from tests.fixtures.waiting import wait_until


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    clock = ManualClock()
    store = open_store(f"sqlite://{tmp_path}/state.db", clock=clock.time)
    yield Api(store, clock=clock)
    store.close()


def _pod(name: str, *, ready: bool) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace="default"),
        spec=PodSpec(containers=[Container(name="app", image="i")]),
        status=PodStatus(conditions=[Condition(type="Ready", status=str(ready))]),
    )


def test_the_leader_counts_from_its_informers_and_a_follower_through_the_api(api: Api) -> None:
    api.create(Node(metadata=ObjectMeta(name="n1"), spec=NodeSpec(address="10.0.0.1")))
    api.create(_pod("a", ready=True))
    api.create(_pod("b", ready=False))

    follower = cast(Any, SimpleNamespace(manager=None))
    pods, nodes = _pods_and_nodes(follower, api)
    assert _pods_progress(pods) == (1, 2)
    assert [n.name for n in nodes] == ["n1"]

    with ControllerManager(api, components=[Scheduler]) as manager:
        leader = cast(Any, SimpleNamespace(manager=manager))
        cached = manager.ctx.informers.informer(Pod)
        wait_until(lambda: len(cached.list()) == 2, what="the pod cache")
        pods, nodes = _pods_and_nodes(leader, api)
        # The very objects the cache holds: nothing was read from the store or decoded.
        assert {id(p) for p in pods} == {id(p) for p in cached.list()}
        assert _pods_progress(pods) == (1, 2)
        assert [n.name for n in nodes] == ["n1"]
