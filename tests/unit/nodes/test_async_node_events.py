"""AsyncQueueSink: node threads hand events to an asyncio consumer without blocking."""

from __future__ import annotations

import asyncio
import threading

from reconciler.nodes import AsyncQueueSink, NodeMessage, NodeName, NodeState, Phase
from schemas.protocol import Ack


def test_events_from_threads_arrive_in_order_on_the_loop():
    async def scenario() -> list[object]:
        sink = AsyncQueueSink(asyncio.get_running_loop())
        ack = Ack(generation=7, applied=True)

        def node_thread() -> None:
            sink.on_state(NodeState(NodeName("n1"), Phase.CONNECTED))
            sink.on_message(NodeName("n1"), ack)

        thread = threading.Thread(target=node_thread)
        thread.start()
        thread.join()
        return [await asyncio.wait_for(sink.queue.get(), 5) for _ in range(2)]

    state, message = asyncio.run(scenario())
    assert isinstance(state, NodeState)
    assert state.phase is Phase.CONNECTED
    assert message == NodeMessage(NodeName("n1"), Ack(generation=7, applied=True))


def test_a_closed_loop_is_not_an_error_for_the_node_thread():
    loop = asyncio.new_event_loop()
    sink = AsyncQueueSink(loop)
    loop.close()
    sink.on_state(NodeState(NodeName("n1"), Phase.CLOSED))  # must not raise


def test_node_state_becomes_a_node_condition_with_both_fingerprints():
    refused = NodeState(
        NodeName("n1"),
        Phase.HOST_KEY_REJECTED,
        "host key for n1 refused: expected SHA256:exp, offered SHA256:off",
        expected_fingerprint="SHA256:exp",
        offered_fingerprint="SHA256:off",
    )
    condition = refused.condition()
    assert condition.type == "AgentConnected"
    assert condition.status == "False"
    assert condition.reason == "HostKeyRejected"
    assert "SHA256:exp" in (condition.message or "")
    assert "SHA256:off" in (condition.message or "")
    assert NodeState(NodeName("n1"), Phase.CONNECTED).condition().status == "True"
    assert NodeState(NodeName("n1"), Phase.CONNECTING).condition().status == "Unknown"
