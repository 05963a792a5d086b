"""Async callers' view of :class:`Api`: each call runs in a worker thread.

For code that lives on an event loop (a later HTTP server, async controllers). The blocking
:class:`Api` is the real one; this adds nothing but ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypeVar

from reconciler.api._records import EventRecord, NodeLease
from reconciler.api._server import Api
from reconciler.api._types import ObjectList, WatchStream
from schemas import KubeObject, LabelSelector, Pod

__all__ = ["AsyncApi"]

T = TypeVar("T", bound=KubeObject)


class AsyncApi:
    """The same operations as :class:`Api`, awaitable. ``watch`` returns the same stream,
    which supports ``async for``."""

    def __init__(self, api: Api) -> None:
        self.sync = api

    async def get(self, kind: type[T], name: str, *, namespace: str | None = None) -> T:
        return await asyncio.to_thread(self.sync.get, kind, name, namespace=namespace)

    async def list(
        self,
        kind: type[T],
        *,
        namespace: str | None = None,
        label_selector: LabelSelector | Mapping[str, str] | None = None,
    ) -> ObjectList[T]:
        return await asyncio.to_thread(
            self.sync.list, kind, namespace=namespace, label_selector=label_selector
        )

    async def create(self, obj: T) -> T:
        return await asyncio.to_thread(self.sync.create, obj)

    async def update(self, obj: T) -> T:
        return await asyncio.to_thread(self.sync.update, obj)

    async def update_status(self, obj: T) -> T:
        return await asyncio.to_thread(self.sync.update_status, obj)

    async def delete(
        self,
        kind: type[T],
        name: str,
        *,
        namespace: str | None = None,
        resource_version: str | int | None = None,
    ) -> T:
        return await asyncio.to_thread(
            self.sync.delete, kind, name, namespace=namespace, resource_version=resource_version
        )

    async def bind(self, pod: Pod, node_name: str) -> Pod:
        return await asyncio.to_thread(self.sync.bind, pod, node_name)

    def watch(
        self,
        kind: type[T],
        *,
        namespace: str | None = None,
        from_revision: int | str | None = None,
    ) -> WatchStream[T]:
        return self.sync.watch(kind, namespace=namespace, from_revision=from_revision)

    async def record_event(self, involved: KubeObject, **kwargs: Any) -> EventRecord:
        return await asyncio.to_thread(self.sync.record_event, involved, **kwargs)

    async def renew_node_lease(
        self, node_name: str, *, now: float | None = None, duration_s: int = 40
    ) -> NodeLease:
        return await asyncio.to_thread(
            self.sync.renew_node_lease, node_name, now=now, duration_s=duration_s
        )
