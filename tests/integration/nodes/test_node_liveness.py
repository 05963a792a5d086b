"""Against the real agent: silent peers are dropped and reconnected; generations only rise."""

from __future__ import annotations

from reconciler.nodes import (
    BackoffPolicy,
    ConnectionSettings,
    DesiredSet,
    LinkSettings,
    NodePool,
    Phase,
)
from schemas.protocol import Ack


def test_a_silent_node_is_dropped_and_reconnected_after_it_resumes(ssh_nodes, recorder):
    (node,) = ssh_nodes(1, agent_args=("--heartbeat", "0.4"))
    settings = ConnectionSettings(
        link=LinkSettings(connect_timeout=2.0, keepalive_interval=1.0),
        backoff=BackoffPolicy(base=0.1, cap=0.5),
        hello_timeout=5.0,
        dead_after=2.0,  # five heartbeats
    )
    with NodePool(
        on_message=recorder.on_message, on_state=recorder.on_state, settings=settings
    ) as pool:
        pool.ensure(node.endpoint())
        recorder.wait(lambda r: r.last_state(node.name).phase is Phase.CONNECTED)
        # A talking agent is never dropped: heartbeats for well over dead_after, still connected.
        recorder.wait(lambda r: len(r.statuses(node.name)) >= 9)
        assert [s.phase for s in recorder.states] == [Phase.CONNECTING, Phase.CONNECTED]
        node.stall()
        recorder.wait(
            lambda r: (
                r.last_state(node.name).phase is not Phase.CONNECTED
                and "nothing from the agent" in " ".join(x.message for x in r.states)
            ),
            timeout=15,
        )
        node.resume()
        assert pool.push(node.name, DesiredSet()).result(30).applied


def test_a_restarted_reconciler_pushes_above_the_generation_the_agent_applied(
    ssh_nodes, new_recorder
):
    (node,) = ssh_nodes(1)
    first = new_recorder()
    # A reconciler whose clock ran ahead pushed a high generation...
    with NodePool(
        on_message=first.on_message, on_state=first.on_state, wall_clock=lambda: 5_000_000.0
    ) as pool:
        pool.ensure(node.local_endpoint())
        high = pool.push(node.name, DesiredSet()).result(20)
    assert high.applied
    assert high.generation > 5_000_000_000
    # ...and its successor starts far below it: the agent ignores that, the pool catches up.
    second = new_recorder()
    with NodePool(
        on_message=second.on_message, on_state=second.on_state, wall_clock=lambda: 1.0
    ) as pool:
        pool.ensure(node.local_endpoint())
        ack = pool.push(node.name, DesiredSet()).result(20)
    assert ack.applied
    assert ack.generation > high.generation
    acks = [m for _, m in second.messages if isinstance(m, Ack)]
    assert acks[-1] == ack
