"""Values the API returns besides objects: lists, watch events and the watch stream.

Produced by :class:`reconciler.api.Api`; consumed by informers (list, then watch from the list's
``resource_version``), the scheduler and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Literal, TypeVar

from reconciler.api._errors import Expired
from reconciler.store import Compacted, Event, EventType, Watch
from schemas import KubeObject

__all__ = ["EventKind", "ObjectList", "StoredObject", "WatchEvent", "WatchStream"]

T = TypeVar("T", bound=KubeObject)
EventKind = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class ObjectList(Generic[T]):
    """A consistent snapshot: ``items`` as of store revision ``resource_version``;
    watch from it."""

    items: tuple[T, ...]
    resource_version: str


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object as a write left it: the validated model (no resourceVersion set), the
    stored bytes (compact JSON, no resourceVersion) and the store revision they carry. The
    HTTP server answers with the bytes, the same form a GET reads."""

    obj: KubeObject
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class WatchEvent(Generic[T]):
    """One change. ``object`` is the new state (for DELETED: the last state, whose
    resourceVersion is the deletion's revision). ``revision`` is that store revision."""

    type: EventKind
    object: T
    revision: int


class WatchStream(Generic[T]):
    """Events after a revision, in order, each once; iterate, or ``async for``. Raises
    :class:`Expired` when the start revision was compacted away (relist). Close it."""

    def __init__(self, watch: Watch, convert: Callable[[Event], WatchEvent[T] | None]) -> None:
        # convert returns None for store events this stream does not report (other kinds).
        self._watch = watch
        self._convert = convert

    def __iter__(self) -> WatchStream[T]:
        return self

    def __next__(self) -> WatchEvent[T]:
        while True:
            try:
                event = next(self._watch)
            except Compacted as exc:
                raise Expired(f"watch start revision is gone: {exc}") from exc
            converted = self._convert(event)
            if converted is not None:
                return converted

    def __aiter__(self) -> WatchStream[T]:
        return self

    async def __anext__(self) -> WatchEvent[T]:
        while True:
            try:
                event = await self._watch.__anext__()
            except Compacted as exc:
                raise Expired(f"watch start revision is gone: {exc}") from exc
            converted = self._convert(event)
            if converted is not None:
                return converted

    def close(self) -> None:
        self._watch.close()

    @property
    def closed(self) -> bool:
        return self._watch.closed

    def __enter__(self) -> WatchStream[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def event_kind(event: Event) -> EventKind:
    if event.type is EventType.DELETE:
        return "DELETED"
    return "ADDED" if event.kv.version == 1 else "MODIFIED"
