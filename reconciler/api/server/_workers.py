"""The threads that run the REST handlers' blocking work (API calls, store reads).

Used by :class:`reconciler.api.server._rest.RestHandler` for every request that touches the
store: the event loop hands a call over, a worker runs it, the result comes back on the loop.

WHY not ``run_in_threadpool`` (Starlette's, over anyio) or ``loop.run_in_executor``: each
wraps a call in more machinery than the call itself costs on the event loop (a capacity
limiter and cancel scope; a ``concurrent.futures`` Future chained to an asyncio one). A queue
and ``call_soon_threadsafe`` do the same hand-off.

WHY 16 threads by default (``Limits.worker_threads``): fewer make smaller group-commit
batches (more fsyncs per write), more contend for the GIL that every SQLite statement drops
and takes back; 16 gave the best throughput and p99 on the bench's 32-client PUT
(``bench/api.py``).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["WorkerPool"]

R = TypeVar("R")

_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return  # the request went away (client gone, timeout); nobody wants the answer
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _work(jobs: queue.SimpleQueue[_Job | None]) -> None:
    # A plain function holding only the queue: a worker must not keep its pool alive, so an
    # app dropped without a shutdown (no lifespan) still lets its threads end.
    while True:
        job = jobs.get()
        if job is None:
            return
        fn, loop, future = job
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn()
        except StopIteration as exc:  # an asyncio future refuses StopIteration
            error = RuntimeError(f"worker call raised StopIteration: {exc}")
        except BaseException as exc:  # handed to the awaiting request, whatever it is
            error = exc
        try:
            loop.call_soon_threadsafe(_settle, future, result, error)
        except RuntimeError:
            continue  # that loop is closed: the server stopped while this call ran
        del job, fn, result, error


def _stop(jobs: queue.SimpleQueue[_Job | None], threads: int) -> None:
    for _ in range(threads):
        jobs.put(None)


class WorkerPool:
    """``threads`` daemon threads, started on first use; ``await pool.run(fn)`` runs
    ``fn()`` on one of them and returns (or raises) what it did. ``shutdown()`` ends them
    once the queued calls are done; so does dropping the pool."""

    def __init__(self, threads: int, *, name: str) -> None:
        if threads < 1:
            raise ValueError("a worker pool needs at least one thread")
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._size = threads
        self._name = name
        self._started = False
        self._closed = False
        self._lock = threading.Lock()
        weakref.finalize(self, _stop, self._jobs, threads)

    async def run(self, fn: Callable[[], R]) -> R:
        if not self._started or self._closed:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._jobs.put((fn, loop, future))
        return await future

    def _start(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"worker pool {self._name} is shut down")
            if self._started:
                return
            for index in range(self._size):
                threading.Thread(
                    target=_work, args=(self._jobs,), daemon=True, name=f"{self._name}-{index}"
                ).start()
            self._started = True

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._started:
                _stop(self._jobs, self._size)
