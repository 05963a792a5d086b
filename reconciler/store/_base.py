"""The ``Store`` interface both backends implement, the ``Watch`` stream they return, and
``StoreWrapper``, the base of the views that change a few calls of another store.

Sits under ``reconciler.api`` (its only caller) and above the two backends
(``_sqlite`` for the embedded file, ``_etcd`` for a real etcd server). Every
method is blocking and thread-safe; the API layer calls them from worker
threads or wraps them with ``asyncio.to_thread``. Watches offer both a blocking
iterator and an async iterator because the controllers run in asyncio.
"""

from __future__ import annotations

import abc
import asyncio
import threading
from collections import deque
from collections.abc import Sequence
from types import TracebackType

from reconciler.store._types import (
    Compare,
    DeleteResult,
    Event,
    KeyValue,
    LeaseID,
    Op,
    PutResult,
    RangeResult,
    Revision,
    TxnResult,
)

#: How long a blocking poll waits before re-checking whether the watch was closed.
_POLL_SLICE_S = 0.25


class Watch(abc.ABC):
    """Events after ``from_revision`` for one key or prefix, in revision order, each once.

    Iterate it (``for event in watch``) or, in asyncio, ``async for event in watch``.
    Iteration raises ``Compacted`` if the history it needs is gone, and stops
    after ``close()``. Use it as a (async) context manager so it is always closed.
    """

    def __init__(self) -> None:
        self._buffer: deque[Event] = deque()
        self._pump: threading.Thread | None = None
        self._queue: asyncio.Queue[list[Event] | BaseException | None] | None = None
        self._consumed = threading.Event()

    @abc.abstractmethod
    def poll(self, timeout: float | None) -> list[Event]:
        """Next events in order, waiting up to ``timeout`` seconds; [] on timeout or when closed."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the stream and release its connection; safe to call twice, from any thread."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool: ...

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> Event:
        while not self._buffer:
            if self.closed:
                raise StopIteration
            self._buffer.extend(self.poll(_POLL_SLICE_S))
        return self._buffer.popleft()

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- asyncio adapter ---------------------------------------------------------------
    # A dedicated pump thread per async watch, not the loop's default executor: a
    # controller manager holds dozens of watches and the executor has a handful of
    # threads, so parking blocking polls there would starve everything else.

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Event:
        if self._queue is None:
            loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue()
            self._consumed.set()
            self._pump = threading.Thread(
                target=self._pump_events,
                args=(loop, self._queue),
                daemon=True,
                name="store-watch-pump",
            )
            self._pump.start()
        while not self._buffer:
            item = await self._queue.get()
            if item is None:
                raise StopAsyncIteration
            if isinstance(item, BaseException):
                raise item
            self._buffer.extend(item)
            self._consumed.set()
        return self._buffer.popleft()

    def _pump_events(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[list[Event] | BaseException | None],
    ) -> None:
        try:
            while not self.closed:
                # Backpressure: read the next batch only after the consumer took the last one.
                if not self._consumed.wait(_POLL_SLICE_S):
                    continue
                batch = self.poll(_POLL_SLICE_S)
                if batch:
                    self._consumed.clear()
                    loop.call_soon_threadsafe(queue.put_nowait, batch)
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except RuntimeError:
            return  # the event loop closed under us; nobody is listening any more
        except BaseException as exc:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            except RuntimeError:
                return

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def aclose(self) -> None:
        self.close()


class Store(abc.ABC):
    """An etcd-v3-like revisioned key-value store. See the package docstring for semantics."""

    @abc.abstractmethod
    def range(
        self,
        key: str,
        *,
        prefix: bool = False,
        at_revision: Revision | None = None,
        limit: int | None = None,
    ) -> RangeResult:
        """Keys equal to ``key`` (or starting with it when ``prefix``), as of ``at_revision``
        (default: now). Raises ``Compacted`` / ``FutureRevision`` for a revision out of reach."""

    def get(self, key: str, *, at_revision: Revision | None = None) -> KeyValue | None:
        result = self.range(key, at_revision=at_revision)
        return result.kvs[0] if result.kvs else None

    @abc.abstractmethod
    def put(self, key: str, value: bytes, *, lease: LeaseID | None = None) -> PutResult:
        """Write one key durably; returns the new revision and the previous value."""

    @abc.abstractmethod
    def delete(self, key: str, *, prefix: bool = False) -> DeleteResult:
        """Delete a key, or every key under a prefix, in one revision (none if nothing matched)."""

    @abc.abstractmethod
    def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """If every compare holds run ``success``, else ``failure``, atomically, in one revision."""

    @abc.abstractmethod
    def watch(
        self,
        key: str,
        *,
        prefix: bool = False,
        from_revision: Revision | None = None,
    ) -> Watch:
        """Events with revision > ``from_revision`` (default: the current revision)."""

    @abc.abstractmethod
    def compact(self, revision: Revision) -> None:
        """Drop history before ``revision``; reads at and watches from older revisions fail."""

    @abc.abstractmethod
    def revision(self) -> Revision:
        """The store's current revision (the last write's)."""

    @abc.abstractmethod
    def grant(self, ttl: int) -> LeaseID:
        """A new lease that expires ``ttl`` seconds from now unless kept alive."""

    @abc.abstractmethod
    def keepalive(self, lease: LeaseID) -> int:
        """Restart the lease's TTL; returns the TTL. Raises ``LeaseNotFound`` if it expired."""

    @abc.abstractmethod
    def revoke(self, lease: LeaseID) -> None:
        """End the lease now, deleting its keys (one revision). Raises ``LeaseNotFound``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and threads; open watches stop."""

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class StoreWrapper(Store):
    """A store that passes every call to ``inner``; a subclass overrides what it changes.

    The base of the store views: Secrets sealed at rest (:mod:`reconciler.api._atrest`) and
    writes fenced by the leader's term (:class:`reconciler.store.FencedStore`).
    """

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def range(
        self,
        key: str,
        *,
        prefix: bool = False,
        at_revision: Revision | None = None,
        limit: int | None = None,
    ) -> RangeResult:
        return self._inner.range(key, prefix=prefix, at_revision=at_revision, limit=limit)

    def get(self, key: str, *, at_revision: Revision | None = None) -> KeyValue | None:
        return self._inner.get(key, at_revision=at_revision)

    def put(self, key: str, value: bytes, *, lease: LeaseID | None = None) -> PutResult:
        return self._inner.put(key, value, lease=lease)

    def delete(self, key: str, *, prefix: bool = False) -> DeleteResult:
        return self._inner.delete(key, prefix=prefix)

    def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        return self._inner.txn(compares, success, failure)

    def watch(
        self,
        key: str,
        *,
        prefix: bool = False,
        from_revision: Revision | None = None,
    ) -> Watch:
        return self._inner.watch(key, prefix=prefix, from_revision=from_revision)

    def compact(self, revision: Revision) -> None:
        self._inner.compact(revision)

    def revision(self) -> Revision:
        return self._inner.revision()

    def grant(self, ttl: int) -> LeaseID:
        return self._inner.grant(ttl)

    def keepalive(self, lease: LeaseID) -> int:
        return self._inner.keepalive(lease)

    def revoke(self, lease: LeaseID) -> None:
        self._inner.revoke(lease)

    def close(self) -> None:
        self._inner.close()
