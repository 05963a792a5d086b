"""The reconcile contract and the one loop that runs it.

A controller declares which kinds it watches and how an object maps to the keys it must look
at; its ``reconcile(key)`` reads the whole desired and observed state (from informer caches and
the API) and converges. :meth:`Controller.process` is the central loop body: it turns the
outcome — a :class:`Result`, :class:`TransientError`, :class:`TerminalError` or any other
exception — into requeues with per-key exponential backoff (reset on success). Worker threads
take keys from the :class:`~reconciler.controllers.runtime.WorkQueue`; one key is never
reconciled twice at once, different keys run in parallel. A periodic resync enqueues every
primary object, so a dropped event costs at most one resync period.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from reconciler.api import Api, ApiError, Clock, Conflict, ManualClock
from reconciler.controllers.runtime._informer import Informer, InformerEvent, InformerFactory
from reconciler.controllers.runtime._queue import WorkQueue
from schemas import KubeObject, ObjectKey

__all__ = [
    "Component",
    "ComponentFactory",
    "Controller",
    "ControllerContext",
    "Result",
    "TerminalError",
    "TransientError",
]

_log = logging.getLogger(__name__)

T = TypeVar("T", bound=KubeObject)

_RESYNC_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class ControllerContext:
    """What every component of a controller manager shares: one API, one set of informers,
    one clock."""

    api: Api
    informers: InformerFactory
    clock: Clock


@dataclass(frozen=True, slots=True)
class Result:
    """A successful reconcile; ``requeue_after`` asks to look again after that many seconds
    (e.g. when minReadySeconds or a progress deadline will pass). ``forget=False`` keeps the
    key's failure count (its backoff) because work this reconcile started is still in flight
    (the scheduler's asynchronous bind), and that work forgets the key once it succeeds."""

    requeue_after: float | None = None
    forget: bool = True


class TransientError(Exception):
    """Try again: after ``delay`` seconds, or after the key's exponential backoff."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class TerminalError(Exception):
    """Retrying will not help (bad input); the key waits for its next event or resync."""


class Component(Protocol):
    """Anything the manager runs: controllers, the scheduler."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


ComponentFactory = Callable[[ControllerContext], Component]


class Controller(abc.ABC):
    name: ClassVar[str] = "controller"
    workers: ClassVar[int] = 2
    #: Enqueue every primary object this often (clock seconds); None disables.
    resync_period_s: ClassVar[float | None] = 30.0

    def __init__(
        self, ctx: ControllerContext, *, queue_order: Callable[[ObjectKey], Any] | None = None
    ) -> None:
        """``queue_order`` ranks keys in the work queue (lowest first); FIFO without it."""
        self.ctx = ctx
        self.api = ctx.api
        self.clock = ctx.clock
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, order=queue_order)
        self._primary: list[Informer[KubeObject]] = []
        self._handlers: list[tuple[Informer[KubeObject], Callable[..., None]]] = []
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._writes_lock = threading.Lock()
        self._writes: dict[ObjectKey, dict[int, tuple[Informer[Any], int]]] = {}
        self._events_lock = threading.Lock()
        self._events: ThreadPoolExecutor | None = None

    # -- wiring ------------------------------------------------------------------------------

    def watch(self, kind: type[T], mapper: Callable[[T], Iterable[ObjectKey]]) -> Informer[T]:
        """Watch a kind; each change enqueues the keys ``mapper`` gives for the new and the
        old state (a pod that changed owner wakes both owners)."""
        informer = self.ctx.informers.informer(kind)

        def handler(event: InformerEvent[T]) -> None:
            keys = set(mapper(event.object))
            if event.old is not None:
                keys.update(mapper(event.old))
            for key in keys:
                self.queue.add(key)

        informer.add_handler(handler)
        self._handlers.append((informer, handler))  # type: ignore[arg-type]
        return informer

    def watch_own(self, kind: type[T]) -> Informer[T]:
        """Watch the kind this controller reconciles: each object enqueues its own key."""
        informer = self.watch(kind, lambda obj: [obj.key])
        self._primary.append(informer)  # type: ignore[arg-type]
        return informer

    def watch_events(
        self, kind: type[T], handler: Callable[[InformerEvent[T]], None]
    ) -> Informer[T]:
        """Watch a kind with a raw handler (when the event type matters for *which* keys to
        enqueue, e.g. an owner's deletion waking its dependents)."""
        informer = self.ctx.informers.informer(kind)
        informer.add_handler(handler)
        self._handlers.append((informer, handler))  # type: ignore[arg-type]
        return informer

    def note_write(self, key: ObjectKey, informer: Informer[Any], revision: int) -> None:
        """Remember that reconciling ``key`` wrote an object of ``informer``'s kind at
        ``revision``; :meth:`await_own_writes` holds the next reconcile of ``key`` until the
        cache shows it. Without this a controller counts from a cache that does not yet
        have its own creations and creates them again (client-go's "expectations")."""
        with self._writes_lock:
            marks = self._writes.setdefault(key, {})
            marks[id(informer)] = (informer, max(revision, marks.get(id(informer), (None, 0))[1]))

    def await_own_writes(self, key: ObjectKey, *, timeout_s: float = 5.0) -> None:
        with self._writes_lock:
            marks = list(self._writes.get(key, {}).values())
        for informer, revision in marks:
            if not informer.wait_for_revision(revision, timeout_s):
                raise TransientError(
                    f"{informer.kind.__name__} cache is behind this controller's writes",
                    delay=0.1,
                )

    def forget_writes(self, key: ObjectKey) -> None:
        with self._writes_lock:
            self._writes.pop(key, None)

    def record_event(
        self, obj: KubeObject, *, reason: str, message: str, warning: bool = False
    ) -> None:
        """Record an Event about ``obj`` without waiting for it. Events are best effort, as
        Kubernetes' recorder makes them: each is a store write (an fsync), and a reconcile
        must not wait for one nor fail because one failed."""
        with self._events_lock:
            if self._events is None:
                self._events = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-events")
            events = self._events

        def record() -> None:
            try:
                self.api.record_event(
                    obj,
                    reason=reason,
                    message=message,
                    type="Warning" if warning else "Normal",
                    source=self.name,
                )
            except ApiError as exc:
                _log.info("%s: event %s on %s not recorded: %s", self.name, reason, obj.key, exc)

        with contextlib.suppress(RuntimeError):  # stopped: the event is dropped
            events.submit(record)

    def enqueue(self, key: ObjectKey, *, after_s: float = 0.0) -> None:
        self.queue.add_after(key, after_s)

    def resync(self) -> None:
        """Enqueue every primary object (level-triggered safety net for lost events)."""
        for informer in self._primary:
            for obj in informer.list():
                self.queue.add(obj.key)

    # -- the contract ------------------------------------------------------------------------

    @abc.abstractmethod
    def reconcile(self, key: ObjectKey) -> Result | None:
        """Converge the object ``key`` names; read everything, assume nothing from events."""

    def process(self, key: ObjectKey) -> None:
        """Run one reconcile and turn its outcome into the key's next visit."""
        try:
            result = self.reconcile(key)
        except TransientError as exc:
            delay = exc.delay if exc.delay is not None else self.queue.backoff(key)
            _log.info("%s: %s: %s (retry in %.3fs)", self.name, key, exc, delay)
            self.queue.retry_after(key, delay)
        except TerminalError as exc:
            _log.error("%s: %s: %s (not retried)", self.name, key, exc)
            self.queue.forget(key)
        except Conflict:
            # Someone wrote the object after our read: the normal optimistic-concurrency case.
            self.queue.retry_after(key, self.queue.backoff(key))
        except ApiError as exc:
            delay = self.queue.backoff(key)
            _log.warning("%s: %s: %s (retry in %.3fs)", self.name, key, exc, delay)
            self.queue.retry_after(key, delay)
        except Exception:
            delay = self.queue.backoff(key)
            _log.exception("%s: %s: reconcile crashed (retry in %.3fs)", self.name, key, delay)
            self.queue.retry_after(key, delay)
        else:
            if result is None or result.forget:
                self.queue.forget(key)
            if result is not None and result.requeue_after is not None:
                self.queue.add_after(key, result.requeue_after)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for index in range(self.workers):
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-worker-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        if self.resync_period_s is not None:
            thread = threading.Thread(
                target=self._resync_loop, name=f"{self.name}-resync", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopped.set()
        self.queue.shutdown()
        for informer, handler in self._handlers:
            informer.remove_handler(handler)
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        with self._events_lock:
            events, self._events = self._events, None
        if events is not None:
            events.shutdown(wait=True)

    def _work(self) -> None:
        while not self._stopped.is_set():
            key = self.queue.get()
            if key is None:
                continue
            try:
                self.process(key)
            finally:
                self.queue.done(key)

    def _resync_loop(self) -> None:
        assert self.resync_period_s is not None
        next_at = self.clock.time() + self.resync_period_s
        # A ManualClock moves without telling anyone: poll it; the system clock is waited on.
        manual = isinstance(self.clock, ManualClock)
        while not self._stopped.wait(
            _RESYNC_POLL_S if manual else min(max(next_at - self.clock.time(), 0.0), 1.0)
        ):
            if self.clock.time() >= next_at:
                self.resync()
                next_at = self.clock.time() + self.resync_period_s
