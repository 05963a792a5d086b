"""A control plane on a real temp store with the node dispatcher and a real local agent.

``cluster`` gives one running ``ControllerManager`` (Deployment, ReplicaSet, Endpoints,
Node controllers, the scheduler and the ``NodeDispatcher``) on the system clock, plus a
real ``capstan-agent serve`` reached through the local transport, and a Node object for it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from reconciler.api import Api, ManualClock, SystemClock
from reconciler.controllers.deployment import DeploymentController
from reconciler.controllers.endpoints import EndpointsController
from reconciler.controllers.manager import ControllerManager
from reconciler.controllers.node import NodeController
from reconciler.controllers.replicaset import ReplicaSetController
from reconciler.nodes import BackoffPolicy, ConnectionSettings, DispatchSettings, NodeDispatcher
from reconciler.scheduler import Scheduler
from reconciler.store import open_store
from schemas import Node, Pod
from tests.fixtures.local_agent import (
    LocalAgent,
    cleanup_proxy,
    ensure_busybox,
    local_agent,
    proxy_args,
)

FAST = DispatchSettings(
    debounce_s=0.02,
    connection=ConnectionSettings(
        backoff=BackoffPolicy(base=0.1, factor=2.0, cap=1.0, floor=0.02), hello_timeout=10.0
    ),
)


@dataclass
class Cluster:
    api: Api
    manager: ControllerManager
    agent: LocalAgent
    store_path: Path

    @property
    def node(self) -> str:
        return self.agent.node

    @property
    def dispatcher(self) -> NodeDispatcher:
        return self.manager.component(NodeDispatcher)

    def pods(self, **labels: str) -> list[Pod]:
        return list(self.api.list(Pod, namespace="default", label_selector=labels or None).items)

    def ready_pods(self, **labels: str) -> list[Pod]:
        return [
            p
            for p in self.pods(**labels)
            if p.status is not None and p.status.ready and p.spec.node_name == self.node
        ]

    def running_containers(self) -> list[dict[str, object]]:
        return [c for c in self.agent.containers() if c["state"] == "running"]


def node_manifest(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"address": "local"},
    }


def bound_pod(api: Api, node: str, name: str = "web") -> Pod:
    """A one-container Pod (image never pulled) bound to ``node``."""
    pod = api.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "img"}]},
        }
    )
    assert isinstance(pod, Pod)
    return api.bind(pod, node)


@contextmanager
def one_node_api(tmp_path: Path, clock: ManualClock) -> Iterator[Api]:
    """A real store on ``clock`` holding Node n1 and a pod bound to it."""
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}", clock=clock.time)
    try:
        api = Api(store, clock=clock)
        api.create(node_manifest("n1"))
        bound_pod(api, "n1")
        yield api
    finally:
        store.close()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    ensure_busybox(client)
    yield client
    client.close()


@contextmanager
def control_plane(
    tmp_path: Path, *, local_agent_command: str = "capstan-agent connect"
) -> Iterator[tuple[Api, ControllerManager]]:
    """Api on a fresh store + a manager running every component the dispatcher needs."""
    clock = SystemClock()
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        api = Api(store, clock=clock)
        components = [
            DeploymentController,
            ReplicaSetController,
            EndpointsController,
            NodeController,
            Scheduler,
            functools.partial(
                NodeDispatcher, local_agent_command=local_agent_command, settings=FAST
            ),
        ]
        manager = ControllerManager(api, clock=clock, components=components)
        manager.start()
        try:
            yield api, manager
        finally:
            manager.stop()
    finally:
        store.close()


@pytest.fixture
def cluster(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[Cluster]:
    with (
        local_agent(docker_client, tmp_path) as agent,
        control_plane(tmp_path, local_agent_command=agent.connect_command) as (api, manager),
    ):
        api.create(node_manifest(agent.node))
        yield Cluster(api, manager, agent, tmp_path / "state.db")


@pytest.fixture
def proxy_tables() -> Iterator[Callable[[], tuple[str, ...]]]:
    """Unique proxy-table arguments for agents a test starts; their rules are removed at
    teardown. Request it before ``ssh_nodes`` so it is torn down after the agents stop."""
    made: list[tuple[str, ...]] = []

    def make() -> tuple[str, ...]:
        made.append(proxy_args("capi"))
        return made[-1]

    yield make
    for args in made:
        cleanup_proxy(args)


def node_condition(api: Api, node: str, kind: str) -> str | None:
    found = api.get(Node, node)
    if found.status is None:
        return None
    condition = found.status.condition(kind)
    return condition.status if condition is not None else None
