"""NodePool against real OpenSSH sshd and real capstan-agent daemons on loopback."""

from __future__ import annotations

import time

from reconciler.nodes import DesiredSet, Phase
from schemas.pod import Pod
from schemas.protocol import Ack
from tests.fixtures.sshd import SshNode
from tests.integration.nodes.conftest import Recorder

ACK_TIMEOUT = 20.0


def _sleeper(name: str) -> Pod:
    return Pod.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "capstan.local/busybox:1",
                        "imagePullPolicy": "Never",
                        "command": ["sleep", "3600"],
                    }
                ],
                "terminationGracePeriodSeconds": 1,
            },
        }
    )


def _connected(recorder: Recorder, node: SshNode) -> bool:
    state = recorder.last_state(node.name)
    return state is not None and state.phase is Phase.CONNECTED


def test_push_and_status_round_trip_on_three_nodes(ssh_nodes, pool, recorder):
    nodes = ssh_nodes(3)
    for node in nodes:
        pool.ensure(node.endpoint())
    futures = pool.push_all({node.name: DesiredSet() for node in nodes})
    acks = {name: future.result(ACK_TIMEOUT) for name, future in futures.items()}
    for node in nodes:
        ack = acks[node.name]
        assert isinstance(ack, Ack)
        assert ack.applied
        assert pool.get(node.name).acked_generation == ack.generation
    # Every node reports status for the generation it acknowledged.
    recorder.wait(
        lambda r: all(
            any(s.generation == acks[n.name].generation for s in r.statuses(n.name)) for n in nodes
        )
    )
    for node in nodes:
        assert recorder.statuses(node.name)[-1].node_name == node.name
        assert _connected(recorder, node)

    # A changed set gets a higher generation; an unchanged one is not sent again.
    again = pool.push_all({node.name: DesiredSet() for node in nodes})
    assert all(again[n.name].result(0).generation == acks[n.name].generation for n in nodes)


def test_sshd_restart_reconnects_and_repushes_without_duplicate_containers(
    ssh_nodes, pool, recorder
):
    (node,) = ssh_nodes(1)
    pool.ensure(node.endpoint())
    first = pool.push(node.name, DesiredSet(pods=(_sleeper("web"),))).result(ACK_TIMEOUT)
    recorder.wait(
        lambda r: any(
            s.generation == first.generation and s.pods and s.pods[0].status.phase == "Running"
            for s in r.statuses(node.name)
        ),
        timeout=60,
    )
    before = sorted(node.containers())
    assert before

    node.kill_sshd()
    recorder.wait(lambda r: r.last_state(node.name).phase is not Phase.CONNECTED)
    # At least one reconnect attempt fails against the closed port before sshd is back.
    recorder.wait(lambda r: "connect failed" in r.last_state(node.name).message)
    node.start_sshd()
    recorder.wait(lambda r: _connected(r, node))
    # The re-push after reconnect carries a new, higher generation and is acknowledged.
    recorder.wait(
        lambda r: any(
            isinstance(m, Ack) and m.applied and m.generation > first.generation
            for n, m in r.messages
            if n == node.name
        )
    )
    # A status after a sync carries only the pods whose report changed (none here): the
    # pod's last report, from before the restart, still stands.
    recorder.wait(
        lambda r: any(
            s.generation is not None and s.generation > first.generation
            for s in r.statuses(node.name)
        )
    )
    latest = next(s for s in reversed(recorder.statuses(node.name)) if s.pods)
    assert latest.pods[0].status.phase == "Running"
    assert sorted(node.containers()) == before  # same containers: nothing restarted or doubled
    phases = [s.phase for s in recorder.states if s.node == node.name]
    assert Phase.DISCONNECTED in phases or Phase.CONNECTING in phases


def test_stalled_node_does_not_delay_the_others(ssh_nodes, pool, recorder):
    fast_a, fast_b, slow = ssh_nodes(3)
    for node in (fast_a, fast_b, slow):
        pool.ensure(node.endpoint())
    for future in pool.push_all({n.name: DesiredSet() for n in (fast_a, fast_b, slow)}).values():
        future.result(ACK_TIMEOUT)

    slow.stall()
    pod = _sleeper("stall")
    changed = DesiredSet(pods=(pod,))
    started = time.monotonic()
    futures = pool.push_all({n.name: changed for n in (fast_a, fast_b, slow)})
    futures[fast_a.name].result(ACK_TIMEOUT)
    futures[fast_b.name].result(ACK_TIMEOUT)
    print(f"\nfast nodes acknowledged in {time.monotonic() - started:.2f} s")
    # The order is the proof: both fast nodes acknowledged while the slow one, still stalled,
    # has not (a fan-out that waited for it could not have answered them first).
    assert not futures[slow.name].done()

    # Two more changes while it is stalled: the first sync is in flight, so these wait in the
    # node's one-slot queue and the later replaces the earlier (latest wins, no backlog).
    mid = DesiredSet(pods=(_sleeper("mid"),))
    middle = pool.push_all({n.name: mid for n in (fast_a, fast_b, slow)})
    latest = pool.push_all({n.name: DesiredSet() for n in (fast_a, fast_b, slow)})
    for fast in (fast_a, fast_b):
        middle[fast.name].result(ACK_TIMEOUT)
        latest[fast.name].result(ACK_TIMEOUT)
    assert not latest[slow.name].done()  # still stalled: the fast ones did not wait for it
    slow.resume()
    ack = latest[slow.name].result(ACK_TIMEOUT)
    assert ack.applied
    assert futures[slow.name].result(0).generation < ack.generation
    assert middle[slow.name].result(0) == ack  # superseded before it was ever sent
    sent = [m for n, m in recorder.messages if n == slow.name and isinstance(m, Ack)]
    first_generation = futures[slow.name].result(0).generation
    assert [a.generation for a in sent][-2:] == [first_generation, ack.generation]


def test_local_transport_speaks_the_same_protocol(ssh_nodes, pool):
    (node,) = ssh_nodes(1)
    pool.ensure(node.local_endpoint())
    ack = pool.push(node.name, DesiredSet()).result(ACK_TIMEOUT)
    assert ack.applied


def test_endpoint_change_replaces_the_connection_and_keeps_the_desired_set(
    ssh_nodes, pool, recorder
):
    (node,) = ssh_nodes(1)
    pool.ensure(node.endpoint(port=1))  # a wrong port: this push cannot be delivered...
    pending = pool.push(node.name, DesiredSet())
    recorder.wait(lambda r: "connect failed" in r.last_state(node.name).message)
    # ...until the Node is fixed: the new connection delivers it and answers the old future.
    connection = pool.ensure(node.endpoint())
    first = pending.result(ACK_TIMEOUT)
    assert first.applied
    # Re-pinning by fingerprint is a different endpoint: a new connection, same set re-pushed.
    connection = pool.ensure(node.endpoint(host_key=node.host_fingerprint))
    recorder.wait(
        lambda r: any(isinstance(m, Ack) and m.generation > first.generation for n, m in r.messages)
    )
    assert connection.desired == DesiredSet()
