"""Bridge from the node threads to asyncio controllers: every event on one ``asyncio.Queue``.

The node controller creates an ``AsyncQueueSink`` on its event loop, passes its two methods
as ``NodePool(on_message=..., on_state=...)``, and consumes ``await sink.queue.get()``.
The callbacks only schedule a ``put_nowait`` on the loop, so a busy controller never blocks a
node's reader thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from reconciler.nodes import _wire
from reconciler.nodes.connection import NodeState
from reconciler.nodes.endpoint import NodeName


@dataclass(frozen=True, slots=True)
class NodeMessage:
    node: NodeName
    message: _wire.AgentMessage


NodeEvent = NodeMessage | NodeState


class AsyncQueueSink:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.queue: asyncio.Queue[NodeEvent] = asyncio.Queue()

    def on_message(self, node: NodeName, message: _wire.AgentMessage) -> None:
        self._put(NodeMessage(node, message))

    def on_state(self, state: NodeState) -> None:
        self._put(state)

    def _put(self, event: NodeEvent) -> None:
        try:
            self._loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:
            # The loop is closed: the controller is gone, and so is anyone to tell.
            return
