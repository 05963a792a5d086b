"""The node dispatcher as a controller keyed by Node, on a real store and real informers.

The pool is replaced by one that records what it is asked (connections are what
``test_local_node`` and ``test_ssh_nodes`` cover with real agents): which nodes are
connected, every push, and drains. What is checked is what the work queue decides: a
node's own pods push it, a burst of changes every node depends on is coalesced into few
visits (at most one per ``everything_interval_s``), and a deleted Node is drained with an
empty set and disconnected.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.api import Api, NotFound, SystemClock
from reconciler.controllers.runtime import ControllerContext, InformerFactory
from reconciler.nodes import DispatchSettings, NodeDispatcher
from reconciler.nodes._wire import Ack, DesiredSet
from reconciler.nodes.endpoint import NodeEndpoint, NodeName
from reconciler.store import open_store
from schemas import ConfigMap, Node, Pod, Service
from tests.fixtures.waiting import wait_until
from tests.integration.dispatch.conftest import bound_pod, node_manifest


@dataclass
class RecordingPool:
    """A ``NodePool`` that acks every push at once and remembers it."""

    connected: set[str] = field(default_factory=set)
    pushes: list[tuple[str, DesiredSet]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ensure(self, endpoint: NodeEndpoint) -> None:
        with self.lock:
            self.connected.add(endpoint.name)

    def names(self) -> list[NodeName]:
        with self.lock:
            return [NodeName(n) for n in sorted(self.connected)]

    def push(self, name: NodeName, desired: DesiredSet) -> Future[Ack]:
        with self.lock:
            self.pushes.append((name, desired))
        future: Future[Ack] = Future()
        future.set_result(Ack(generation=1, applied=True))
        return future

    def remove(self, name: NodeName) -> None:
        with self.lock:
            self.connected.discard(name)
            self.removed.append(name)

    def close(self) -> None:
        """Nothing to close: no link was ever opened."""

    def pushed(self, node: str) -> list[DesiredSet]:
        with self.lock:
            return [d for n, d in self.pushes if n == node]


@pytest.fixture
def dispatched(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Api, NodeDispatcher, RecordingPool]]:
    """A dispatcher on two nodes; ``@pytest.mark.parametrize("dispatched", [{...}],
    indirect=True)`` gives it other settings."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    clock = SystemClock()
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    pool = RecordingPool()
    try:
        api = Api(store, clock=clock)
        for name in ("n1", "n2"):
            api.create(node_manifest(name))
        informers = InformerFactory(api)
        settings = DispatchSettings(
            **{"debounce_s": 0.02, "everything_interval_s": 0.5, **overrides}
        )

        def factory(**_kw: Any) -> RecordingPool:
            return pool

        dispatcher = NodeDispatcher(
            ControllerContext(api, informers, clock), settings=settings, pool_factory=factory
        )
        informers.start()
        assert informers.wait_synced(10)
        dispatcher.start()
        try:
            yield api, dispatcher, pool
        finally:
            dispatcher.stop()
            informers.stop()
    finally:
        store.close()


def _service(api: Api, port: int) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": port}]},
    }
    try:
        current = api.get(Service, "web", namespace="default")
    except NotFound:
        api.create(body)
        return
    spec = current.spec.model_copy(
        update={"ports": [current.spec.ports[0].model_copy(update={"port": port})]}
    )
    api.update(current.model_copy(update={"spec": spec}))


def test_each_node_is_connected_and_gets_its_own_pods(
    dispatched: tuple[Api, NodeDispatcher, RecordingPool],
) -> None:
    api, _dispatcher, pool = dispatched
    wait_until(lambda: pool.connected == {"n1", "n2"}, what="both nodes connected")
    bound_pod(api, "n2")
    wait_until(
        lambda: any(p.name == "web" for d in pool.pushed("n2") for p in d.pods),
        what="n2 pushed with its pod",
    )
    assert not any(p.name == "web" for d in pool.pushed("n1") for p in d.pods)


def test_a_burst_of_changes_every_node_needs_is_coalesced(
    dispatched: tuple[Api, NodeDispatcher, RecordingPool],
) -> None:
    api, _dispatcher, pool = dispatched
    _service(api, 1000)
    wait_until(
        lambda: any(r.ports[0].port == 1000 for d in pool.pushed("n1") for r in d.services),
        what="the Service reached n1",
    )
    before = len(pool.pushed("n1"))
    writes = 30
    for port in range(1001, 1001 + writes):
        _service(api, port)
    last = 1000 + writes
    for node in ("n1", "n2"):
        wait_until(
            lambda node=node: any(
                r.ports[0].port == last for d in pool.pushed(node)[-1:] for r in d.services
            ),
            what=f"the last Service change reached {node}",
        )
    # Thirty writes, a visit of every node at most every 0.5 s: a handful of pushes, each
    # with the newest rules, not one per write.
    assert len(pool.pushed("n1")) - before < writes // 2


def _ports(desired: DesiredSet) -> list[int]:
    return [r.ports[0].port for r in desired.services]


# About 100 bytes of rules on two nodes at 20 B/s: new rules reach a node every ~10 s.
@pytest.mark.parametrize("dispatched", [{"rules_bytes_per_s": 20.0}], indirect=True)
def test_a_node_keeps_its_rules_for_the_rules_interval_while_its_pods_go_at_once(
    dispatched: tuple[Api, NodeDispatcher, RecordingPool],
) -> None:
    api, dispatcher, pool = dispatched
    _service(api, 1000)
    wait_until(
        lambda: any(_ports(d) == [1000] for d in pool.pushed("n1")),
        timeout=60,
        what="the Service reached n1",
    )
    assert dispatcher.rules_interval(dispatcher._current_rules()) > 5
    _service(api, 1001)
    bound_pod(api, "n1")
    wait_until(
        lambda: any(p.name == "web" for d in pool.pushed("n1")[-1:] for p in d.pods),
        what="n1 pushed with its new pod",
    )
    # The pod went at once, with the rules n1 was given moments ago...
    assert _ports(pool.pushed("n1")[-1]) == [1000]
    # ...and the new rules follow once the interval is over, with the pod still there.
    wait_until(
        lambda: _ports(pool.pushed("n1")[-1]) == [1001],
        timeout=60,
        what="the new rules reached n1",
    )
    assert [p.name for p in pool.pushed("n1")[-1].pods] == ["web"]


def test_the_rules_interval_grows_with_rule_bytes_times_nodes_from_the_everything_interval(
    dispatched: tuple[Api, NodeDispatcher, RecordingPool],
) -> None:
    _api, dispatcher, pool = dispatched
    wait_until(lambda: pool.connected == {"n1", "n2"}, what="both nodes connected")
    rate = dispatcher.settings.rules_bytes_per_s
    small: tuple[list[Any], str] = ([], "x" * 100)
    assert dispatcher.rules_interval(small) == dispatcher.settings.everything_interval_s
    large: tuple[list[Any], str] = ([], "x" * int(rate * 3))
    assert dispatcher.rules_interval(large) == pytest.approx(6.0)  # 3 s a node, two nodes


def _config_map(api: Api, name: str, value: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"round": value},
    }
    try:
        current = api.get(ConfigMap, name, namespace="default")
    except NotFound:
        api.create(body)
        return
    api.update(current.model_copy(update={"data": {"round": value}}))


def _rounds(desired: DesiredSet) -> list[str]:
    return [c.data["round"] for c in desired.config_maps if c.name == "config"]


# A visit of every node at most every 2 minutes: a ConfigMap change that waited for one
# would not reach n1 within the wait below.
@pytest.mark.parametrize("dispatched", [{"everything_interval_s": 120.0}], indirect=True)
def test_a_config_map_goes_to_the_nodes_whose_pods_use_it_without_waiting_for_every_node(
    dispatched: tuple[Api, NodeDispatcher, RecordingPool],
) -> None:
    api, _dispatcher, pool = dispatched
    wait_until(lambda: pool.connected == {"n1", "n2"}, what="both nodes connected")
    _config_map(api, "config", "0")
    pod = api.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "containers": [{"name": "c", "image": "img"}],
                "volumes": [{"name": "cfg", "configMap": {"name": "config"}}],
            },
        }
    )
    assert isinstance(pod, Pod)
    api.bind(pod, "n1")
    wait_until(
        lambda: any(_rounds(d) == ["0"] for d in pool.pushed("n1")),
        what="n1 pushed with its pod's ConfigMap",
    )
    # What the sync loop writes around every commit: a ConfigMap no pod uses.
    _config_map(api, "sync-state", "unused")
    _config_map(api, "config", "1")
    wait_until(
        lambda: any(_rounds(d) == ["1"] for d in pool.pushed("n1")),
        timeout=60,
        what="the ConfigMap's change reached n1",
    )
    assert not any(_rounds(d) for d in pool.pushed("n2"))


def test_a_deleted_node_is_drained_then_disconnected(
    dispatched: tuple[Api, NodeDispatcher, RecordingPool],
) -> None:
    api, _dispatcher, pool = dispatched
    wait_until(lambda: pool.connected == {"n1", "n2"}, what="both nodes connected")
    api.delete(Node, "n1")
    wait_until(lambda: "n1" in pool.removed, what="n1 disconnected")
    assert pool.pushed("n1")[-1] == DesiredSet()  # drained: an empty set went first
    assert "n2" in pool.connected
