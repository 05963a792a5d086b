"""The watch cache: every object of every served kind, as response-ready bytes, kept current
by one watch on the whole keyspace; LISTs are answered from it and HTTP watches are fed from
it (Kubernetes' watch cache).

Used by the REST handlers for LIST, to feed WATCH, and as the read before a PUT
(``recent``). A LIST reads the store's current revision first and waits until the cache has
applied every write up to it, so a list still shows every write that finished before the
request (consistent reads, as Kubernetes 1.31+ serves them from its cache). Watching the
whole keyspace, not just the object prefixes, is what lets the cache reach any revision: a
write to some other key still moves the watch forward.

WHY: a LIST of 1,000 pods straight from the store costs ~7 ms of CPU (range, then splicing
resourceVersion into each value); from here it is a join of ready bytes, and repeated LISTs
of an unchanged kind reuse the joined body. Likewise a hundred HTTP watches each running its
own store watch would run a hundred store queries per write; fed from here, a write costs
one query and a hundred queue puts. A watch that starts before the cache's recent history
(``history`` events) is served by its own store watch instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from reconciler.api import event_kind
from reconciler.api.server._raw import with_revision, without_revision
from reconciler.store import (
    Compacted,
    Event,
    EventType,
    KeyValue,
    Revision,
    Store,
    StoreError,
    Watch,
)
from schemas import LabelSelector

__all__ = ["ListCache", "Subscription"]

_log = logging.getLogger(__name__)
_IDLE_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class _Entry:
    """One object: its response bytes, and its KeyValue without the value (the stored
    value is the body without its resourceVersion; ``kv`` rebuilds it when asked: only a
    PUT's read does, and holding both doubled what the cache keeps)."""

    body: bytes
    labels: dict[str, str]
    meta: KeyValue  # as the store holds it, ``value`` left empty

    @classmethod
    def of(cls, kv: KeyValue, *, labels: dict[str, str]) -> _Entry:
        return cls(with_revision(kv.value, kv.mod_revision), labels, replace(kv, value=b""))

    @property
    def kv(self) -> KeyValue:
        return replace(self.meta, value=without_revision(self.body, self.meta.mod_revision))


def _labels(value: bytes) -> dict[str, str]:
    labels = json.loads(value).get("metadata", {}).get("labels", {})
    return labels if isinstance(labels, dict) else {}


@dataclass(frozen=True, slots=True)
class _Change:
    revision: int
    key: str
    line: bytes
    labels: dict[str, str]
    at: float  # the cache's clock when it was recorded


class Subscription:
    """One HTTP watch fed by the cache. Lines arrive on ``queue`` (on the watcher's event
    loop); None means the stream must end (the watcher fell too far behind, or the cache
    reloaded): the client resumes from the last resourceVersion it saw."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        prefix: str,
        selector: LabelSelector | None,
        after: int,
        limit: int,
        on_close: Callable[[Subscription], None],
    ) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._loop = loop
        self._prefix = prefix
        self._selector = selector
        self._after = after
        self._limit = limit
        # Each counter is written by one thread only (offers: the cache's; deliveries: the
        # loop's), so their difference is a safe backlog estimate without a lock.
        self._offered = 0
        self._delivered = 0
        self._ended = False
        self._on_close = on_close

    def offer(self, change: _Change) -> None:
        if self._ended or change.revision <= self._after or not change.key.startswith(self._prefix):
            return
        if self._selector is not None and not self._selector.matches(change.labels):
            return
        self._offered += 1
        if self._offered - self._delivered > self._limit:
            self.end()
            return
        self._loop.call_soon_threadsafe(self._deliver, change.line)

    def _deliver(self, line: bytes) -> None:
        self._delivered += 1
        self.queue.put_nowait(line)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            try:
                self._loop.call_soon_threadsafe(self.queue.put_nowait, None)
            except RuntimeError:
                return  # the watcher's loop is gone; nobody is listening

    def close(self) -> None:
        self._ended = True
        self._on_close(self)


class _Kind:
    """One kind's objects (all namespaces), keyed by store key, in key order on read."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.version = 0
        self.joined: dict[str, tuple[int, bytes]] = {}

    def body(self, prefix: str, selector: LabelSelector | None) -> bytes:
        if selector is None:
            cached = self.joined.get(prefix)
            if cached is not None and cached[0] == self.version:
                return cached[1]
        parts = [
            entry.body
            for key, entry in sorted(self.entries.items())
            if key.startswith(prefix) and (selector is None or selector.matches(entry.labels))
        ]
        joined = b",".join(parts)
        if selector is None:
            self.joined[prefix] = (self.version, joined)
        return joined


class ListCache:
    """Objects under ``prefixes`` (one per kind, e.g. ``/registry/pods/``). ``start()`` loads
    them and starts the watch thread; ``stop()`` ends it. Thread-safe."""

    def __init__(
        self,
        store: Store,
        *,
        prefixes: Sequence[str],
        catch_up_timeout_s: float = 2.0,
        history: int = 20_000,
        history_bytes: int = 16 * 2**20,
        history_s: float = 75.0,
        watcher_backlog: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Recent changes, for watches that resume from a resourceVersion: at most
        # ``history`` of them and ``history_bytes`` of their lines (a rollout on a large
        # fleet writes thousands of pod statuses, each a whole Pod), none older than
        # ``history_s`` seconds (Kubernetes' watch cache keeps 75 s): a client resumes within
        # seconds, and a quiet cluster holds none of a past rollout's lines.
        self._history: deque[_Change] = deque(maxlen=history)
        self._history_bytes = 0
        self._max_history_bytes = history_bytes
        self._history_s = history_s
        self._clock = clock
        self._floor = 0  # every change with a revision above this is in _history
        self._subscribers: set[Subscription] = set()
        self._backlog = watcher_backlog
        self._store = store
        self._prefixes = tuple(prefixes)
        self._timeout = catch_up_timeout_s
        self._kinds: dict[str, _Kind] = {p: _Kind() for p in self._prefixes}
        self._applied = 0
        self._cond = threading.Condition()
        self._watch: Watch | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        revision = self._load()
        self._thread = threading.Thread(
            target=self._run, args=(revision,), name="api-list-cache", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        watch = self._watch
        if watch is not None:
            watch.close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self._cond:
            for subscriber in list(self._subscribers):
                subscriber.end()
            self._cond.notify_all()

    def _load(self) -> int:
        revision = int(self._store.revision())
        kinds = {p: _Kind() for p in self._prefixes}
        for prefix, kind in kinds.items():
            result = self._store.range(prefix, prefix=True, at_revision=Revision(revision))
            for kv in result.kvs:
                kind.entries[kv.key] = _Entry.of(kv, labels=_labels(kv.value))
        with self._cond:
            for prefix, kind in kinds.items():
                kind.version = self._kinds[prefix].version + 1
            self._kinds = kinds
            self._applied = revision
            # History before a reload may have a gap: watchers fed from it start over.
            self._history.clear()
            self._history_bytes = 0
            self._floor = revision
            for subscriber in list(self._subscribers):
                subscriber.end()
            self._cond.notify_all()
        return revision

    def _run(self, revision: int) -> None:
        while not self._stopped.is_set():
            try:
                self._follow(revision)
            except Compacted:
                _log.info("list cache fell behind compaction; reloading")
            except StoreError as exc:
                _log.warning("list cache watch failed (%s); reloading", exc)
                self._stopped.wait(0.5)
            if self._stopped.is_set():
                return
            try:
                revision = self._load()
            except StoreError as exc:
                _log.warning("list cache reload failed (%s)", exc)
                self._stopped.wait(0.5)

    def _follow(self, revision: int) -> None:
        watch = self._store.watch("", prefix=True, from_revision=Revision(revision))
        self._watch = watch
        # A batch may end in the middle of one transaction's events (same revision), so the
        # last revision of a batch counts as applied only once a later poll shows nothing
        # more of it.
        pending: int | None = None
        try:
            while not self._stopped.is_set():
                batch = watch.poll(0 if pending is not None else _IDLE_POLL_S)
                if not batch:
                    if pending is not None:
                        self._advance(pending)
                        pending = None
                    else:
                        self._expire()
                    continue
                self._apply(batch)
                last = int(batch[-1].revision)
                self._advance(last - 1 if pending is None else max(pending, last - 1))
                pending = last
        finally:
            watch.close()

    def _apply(self, batch: Sequence[Event]) -> None:
        with self._cond:
            for event in batch:
                key = event.kv.key
                kind = self._kind_of(key)
                if kind is None:
                    continue
                kind_name = event_kind(event)
                if event.type is EventType.DELETE:
                    kind.entries.pop(key, None)
                    if event.prev_kv is None:
                        continue
                    # DELETED carries the last state at the deletion's revision.
                    body = with_revision(event.prev_kv.value, event.revision)
                    labels = _labels(event.prev_kv.value)
                else:
                    labels = _labels(event.kv.value)
                    entry = kind.entries[key] = _Entry.of(event.kv, labels=labels)
                    body = entry.body
                kind.version += 1
                # A joined LIST body is good for one version only: not kept past it.
                kind.joined.clear()
                self._record(
                    _Change(
                        int(event.revision),
                        key,
                        b'{"type":"' + kind_name.encode() + b'","object":' + body + b"}\n",
                        labels,
                        self._clock(),
                    )
                )

    def _record(self, change: _Change) -> None:
        history = self._history
        oldest = change.at - self._history_s
        while history and (
            len(history) == history.maxlen
            or self._history_bytes + len(change.line) > self._max_history_bytes
            or history[0].at < oldest
        ):
            self._drop_oldest()
        history.append(change)
        self._history_bytes += len(change.line)
        for subscriber in self._subscribers:
            subscriber.offer(change)

    def _drop_oldest(self) -> None:
        dropped = self._history.popleft()
        self._history_bytes -= len(dropped.line)
        self._floor = dropped.revision

    def _expire(self) -> None:
        """Drop the changes older than ``history_s`` while no write comes to do it."""
        history = self._history
        oldest = self._clock() - self._history_s
        if history and history[0].at < oldest:
            with self._cond:
                while history and history[0].at < oldest:
                    self._drop_oldest()

    def _kind_of(self, key: str) -> _Kind | None:
        for prefix in self._prefixes:
            if key.startswith(prefix):
                return self._kinds[prefix]
        return None

    def _advance(self, revision: int) -> None:
        with self._cond:
            if revision > self._applied:
                self._applied = revision
                self._cond.notify_all()

    # -- reads -------------------------------------------------------------------------------

    def items(
        self, kind_prefix: str, list_prefix: str, selector: LabelSelector | None
    ) -> tuple[bytes, int] | None:
        """The comma-joined items under ``list_prefix`` of the kind at ``kind_prefix`` and the
        revision they are current at, once the cache has caught up with the store; None if it
        does not within the timeout (the caller then reads the store)."""
        need = int(self._store.revision())
        deadline = time.monotonic() + self._timeout
        with self._cond:
            while self._applied < need:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopped.is_set():
                    return None
                self._cond.wait(remaining)
            kind = self._kinds.get(kind_prefix)
            if kind is None:
                return None
            return kind.body(list_prefix, selector), self._applied

    def recent(
        self, kind_prefix: str, key: str, *, revision: int, wait_s: float = 0.005
    ) -> KeyValue | None:
        """The cache's copy of one object, once it is at ``revision`` or later, waiting up
        to ``wait_s`` for the watch to bring it; else whatever copy there is (or None).
        For a write whose compare-and-swap on the store decides anyway whether this copy
        was still the current one (see ``Api.update_document``).

        WHY wait: a client PUTs again as soon as its last PUT returns, often before the
        watch has applied that write; without the wait such a PUT misses the cache and pays
        a store read (``bench/api.py`` measures how often). The wait is on a condition (no
        CPU), and bounded, so a resourceVersion from the future costs its request a few
        milliseconds, no more."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                kind = self._kinds.get(kind_prefix)
                entry = None if kind is None else kind.entries.get(key)
                if entry is not None and entry.meta.mod_revision >= revision:
                    return entry.kv
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or self._stopped.is_set():
                    return None if entry is None else entry.kv
                self._cond.wait(remaining)

    def subscribe(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        prefix: str,
        selector: LabelSelector | None,
        after: int,
    ) -> Subscription | None:
        """A feed of every change under ``prefix`` after revision ``after``, or None when the
        cache's history does not reach back that far (or the cache is not running)."""
        with self._cond:
            if self._thread is None or self._stopped.is_set() or after < self._floor:
                return None
            subscription = Subscription(
                loop,
                prefix=prefix,
                selector=selector,
                after=after,
                limit=self._backlog,
                on_close=self._unsubscribe,
            )
            for change in self._history:
                subscription.offer(change)
            self._subscribers.add(subscription)
            return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._cond:
            self._subscribers.discard(subscription)
