"""sshd+agent fixtures and an event recorder for the node-connection tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from reconciler.nodes import (
    BackoffPolicy,
    ConnectionSettings,
    NodeName,
    NodePool,
    NodeState,
)
from schemas.protocol import Status
from tests.fixtures.sshd import ssh_nodes  # noqa: F401  (fixture)


class Recorder:
    """Collects every state and agent message the pool reports; tests wait on predicates."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self.states: list[NodeState] = []
        self.messages: list[tuple[NodeName, object]] = []

    def on_state(self, state: NodeState) -> None:
        with self._cv:
            self.states.append(state)
            self._cv.notify_all()

    def on_message(self, node: NodeName, message: object) -> None:
        with self._cv:
            self.messages.append((node, message))
            self._cv.notify_all()

    def wait(self, predicate: Callable[[Recorder], object], *, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; last states: {self.states[-6:]}")
                self._cv.wait(left)

    def last_state(self, node: NodeName) -> NodeState | None:
        return next((s for s in reversed(self.states) if s.node == node), None)

    def statuses(self, node: NodeName) -> list[Status]:
        return [m for n, m in self.messages if n == node and isinstance(m, Status)]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def new_recorder() -> type[Recorder]:
    return Recorder


FAST = ConnectionSettings(
    backoff=BackoffPolicy(base=0.1, factor=2.0, cap=1.0, floor=0.02),
    hello_timeout=10.0,
    dead_after=30.0,
)


@pytest.fixture
def pool(recorder: Recorder) -> Iterator[NodePool]:
    with NodePool(on_message=recorder.on_message, on_state=recorder.on_state, settings=FAST) as p:
        yield p
