"""The per-node push slot: latest-wins desired set, generations, and ack waiters.

Pure bookkeeping owned by one ``NodeConnection`` and guarded by its lock. Only the newest
desired set is kept: a node that falls behind skips the sets it never saw, which is the
back-pressure (a slow node costs one slot, not a growing queue), and is safe because every
sync carries the node's complete desired state.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Generic, NewType, TypeVar

Generation = NewType("Generation", int)

D = TypeVar("D")
A = TypeVar("A")


class SyncRejected(Exception):
    """The agent answered a sync with an error; it keeps running the previous set."""


@dataclass(frozen=True, slots=True)
class Outgoing(Generic[D]):
    generation: Generation
    desired: D


def _settle(
    future: Future[A], *, result: A | None = None, error: BaseException | None = None
) -> None:
    # A caller may cancel its future at any moment (asyncio.wrap_future propagates cancels),
    # even between the done() check and the set: a settled future stays as the caller left it.
    if future.done():
        return
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]


class PushSlot(Generic[D, A]):
    """``first_generation`` seeds the counter: the pool passes wall-clock milliseconds, so a
    restarted reconciler starts above what its predecessor sent and the agent (which ignores
    a sync older than the one it applied) takes the first push at once."""

    def __init__(self, *, first_generation: int = 0) -> None:
        self._counter = first_generation
        self._agent_generation = -1
        self._awaiting_agent_generation = False
        self._desired: D | None = None
        self._generation = Generation(0)
        self._sent = Generation(0)
        self._acked = Generation(0)
        # One sync in flight per node: newer sets wait in the slot (replacing each other)
        # until the agent answers, so a stalled node never has a backlog in socket buffers.
        self._in_flight: Generation | None = None
        self._last_ack: A | None = None
        self._waiters: list[tuple[Generation, Future[A]]] = []

    @property
    def generation(self) -> Generation:
        """Generation of the newest desired set (0 before the first push)."""
        return self._generation

    @property
    def desired(self) -> D | None:
        return self._desired

    @property
    def acked(self) -> Generation:
        return self._acked

    @property
    def in_flight(self) -> Generation | None:
        """The generation sent and not yet answered, if any."""
        return self._in_flight

    def _next(self) -> Generation:
        self._counter += 1
        return Generation(self._counter)

    def offer(self, desired: D) -> tuple[Generation, Future[A]]:
        """Make ``desired`` the newest set; an unchanged set keeps its generation."""
        if self._desired is not None and desired == self._desired:
            generation = self._generation
        else:
            self._desired = desired
            generation = self._generation = self._next()
        future: Future[A] = Future()
        if self._acked >= generation and self._last_ack is not None:
            future.set_result(self._last_ack)
        else:
            self._waiters.append((generation, future))
        return generation, future

    def new_session(self) -> None:
        """A fresh channel: the agent has seen nothing from us, so the newest set goes again,
        with a new generation (generations only rise, across reconnects too)."""
        self._sent = Generation(0)
        self._in_flight = None
        self._awaiting_agent_generation = False
        if self._desired is not None:
            self._generation = self._next()

    def observe(self, agent_generation: int) -> None:
        """The agent says it has applied ``agent_generation`` (from a status or an ack)."""
        self._agent_generation = max(self._agent_generation, agent_generation)
        self._counter = max(self._counter, agent_generation)
        unsent = self._in_flight is None and self._sent < self._generation
        if self._awaiting_agent_generation or (
            unsent and self._desired is not None and self._generation <= agent_generation
        ):
            # Renumber before sending rather than have the agent ignore a stale generation.
            self._awaiting_agent_generation = False
            self._sent = Generation(0)
            self._generation = self._next()

    def ignored(self, generation: int) -> None:
        """The agent ignored our newest sync as older than what it applied (someone else,
        or a previous reconciler, pushed a higher generation). Resend above the agent's
        generation once a status tells it."""
        if self._in_flight == generation:
            self._in_flight = None
        if self._desired is not None and generation == self._sent == self._generation:
            if self._agent_generation >= generation:
                # We already know what the agent has: resend above it straight away.
                self._sent = Generation(0)
                self._generation = self._next()
            else:
                self._awaiting_agent_generation = True

    def take(self) -> Outgoing[D] | None:
        """The set to send now, or None when the agent already has the newest one."""
        if self._desired is None or self._awaiting_agent_generation:
            return None
        if self._in_flight is not None or self._sent >= self._generation:
            return None
        self._sent = self._in_flight = self._generation
        return Outgoing(self._generation, self._desired)

    def ack(self, generation: int, message: A) -> None:
        if self._in_flight is not None and generation >= self._in_flight:
            self._in_flight = None
        if generation > self._acked:
            self._acked = Generation(generation)
            self._last_ack = message
        keep: list[tuple[Generation, Future[A]]] = []
        for wanted, future in self._waiters:
            if wanted <= generation:
                _settle(future, result=message)
            else:
                keep.append((wanted, future))
        self._waiters = keep

    def reject(self, generation: int, reason: str) -> None:
        if self._in_flight is not None and generation >= self._in_flight:
            self._in_flight = None
        keep: list[tuple[Generation, Future[A]]] = []
        for wanted, future in self._waiters:
            if wanted <= generation:
                _settle(future, error=SyncRejected(f"generation {generation}: {reason}"))
            else:
                keep.append((wanted, future))
        self._waiters = keep

    def cancel_all(self) -> None:
        for future in self.drain_waiters():
            future.cancel()

    def drain_waiters(self) -> list[Future[A]]:
        """Hand the unresolved push futures over (to ``relay`` them to a new connection)."""
        waiters = [future for _, future in self._waiters]
        self._waiters = []
        return waiters


def relay(source: Future[A], targets: list[Future[A]]) -> None:
    """Settle every target as ``source`` settles (push futures of a replaced connection)."""

    def _copy(done: Future[A]) -> None:
        for target in targets:
            if done.cancelled():
                target.cancel()
            elif (error := done.exception()) is not None:
                _settle(target, error=error)
            else:
                _settle(target, result=done.result())

    source.add_done_callback(_copy)
