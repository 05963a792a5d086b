"""Fan-out to the fleet: one ``NodeConnection`` per node, pushes that never wait on each other.

The node controller calls ``ensure`` for every Node object (adding, or replacing a
connection whose endpoint changed) and ``remove`` for deleted ones; the pod-sync path calls
``push`` / ``push_all`` with each node's complete desired set whenever it changes. A push
only fills that node's latest-wins slot and wakes its session thread, so a fan-out to N nodes
costs N slot writes on the caller's side and proceeds on N threads; a stalled node holds
nothing but its own slot. Agent messages and connection states reach the caller through the
two callbacks (the node dispatcher's).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future

from reconciler.api.clock import MonotonicClock
from reconciler.nodes import _wire
from reconciler.nodes._links import open_link
from reconciler.nodes._slot import relay
from reconciler.nodes.connection import (
    ConnectionSettings,
    LinkOpener,
    MessageCallback,
    NodeConnection,
    NodeState,
    StateCallback,
)
from reconciler.nodes.endpoint import NodeEndpoint, NodeName


class UnknownNode(KeyError):
    """``push`` to a node the pool has no connection for (``ensure`` it first)."""


class NodePool:
    def __init__(
        self,
        *,
        on_message: MessageCallback,
        on_state: StateCallback,
        settings: ConnectionSettings | None = None,
        clock: MonotonicClock | None = None,
        rng: random.Random | None = None,
        opener: LinkOpener = open_link,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._wall_clock = wall_clock
        self._on_message = on_message
        self._on_state = on_state
        self._settings = settings or ConnectionSettings()
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._opener = opener
        self._lock = threading.Lock()
        self._connections: dict[NodeName, NodeConnection] = {}
        self._handshakes = threading.BoundedSemaphore(self._settings.max_handshakes)

    def ensure(self, endpoint: NodeEndpoint) -> NodeConnection:
        """Connect to ``endpoint`` unless already connected to exactly that endpoint.

        A changed endpoint (address, user, pinned key...) replaces the connection; the
        newest desired set is carried over and pushed on the new one.
        """
        with self._lock:
            current = self._connections.get(endpoint.name)
            if current is not None and current.endpoint == endpoint:
                return current
            connection = NodeConnection(
                endpoint,
                on_message=self._on_message,
                on_state=self._on_state,
                settings=self._settings,
                clock=self._clock,
                # One child generator per node: jitter stays reproducible under a seeded rng.
                rng=random.Random(self._rng.random()),  # noqa: S311
                opener=self._opener,
                first_generation=self._first_generation(),
                handshakes=self._handshakes,
            )
            self._connections[endpoint.name] = connection
        if current is not None:
            desired, waiting = current.detach()
            if desired is not None:
                # Callers waiting on the old connection get the ack from the new one.
                relay(connection.push(desired), waiting)
        connection.start()
        return connection

    def _first_generation(self) -> int:
        # Wall-clock milliseconds: above anything a previous reconciler process pushed.
        return int(self._wall_clock() * 1000)

    def remove(self, name: NodeName) -> None:
        with self._lock:
            connection = self._connections.pop(name, None)
        if connection is not None:
            connection.close()

    def names(self) -> list[NodeName]:
        with self._lock:
            return sorted(self._connections)

    def get(self, name: NodeName) -> NodeConnection:
        with self._lock:
            try:
                return self._connections[name]
            except KeyError:
                raise UnknownNode(name) from None

    def states(self) -> dict[NodeName, NodeState]:
        with self._lock:
            connections = list(self._connections.values())
        return {c.name: c.state for c in connections}

    def push(self, name: NodeName, desired: _wire.DesiredSet) -> Future[_wire.Ack]:
        """Non-blocking; see ``NodeConnection.push``."""
        return self.get(name).push(desired)

    def push_all(
        self, desired: Mapping[NodeName, _wire.DesiredSet]
    ) -> dict[NodeName, Future[_wire.Ack]]:
        """Push every node's set at once; each future resolves on its own node's ack."""
        return {name: self.push(name, node_desired) for name, node_desired in desired.items()}

    def close(self, names: Iterable[NodeName] | None = None) -> None:
        """Close the given connections (all by default), in parallel: a stalled node's
        close does not hold up the others."""
        with self._lock:
            chosen = list(self._connections) if names is None else list(names)
            closing = [self._connections.pop(n) for n in chosen if n in self._connections]
        threads = [threading.Thread(target=c.close, daemon=True) for c in closing]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def __enter__(self) -> NodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
