"""NodeConnection when the link cannot be opened: states, retries with backoff, clean close.

The opener is the transport boundary; here it fails the way paramiko and sockets fail,
so no agent is involved (the tests with an agent run against real sshd and capstan-agent).
"""

from __future__ import annotations

import random
import threading

from reconciler.nodes import (
    BackoffPolicy,
    ConnectionSettings,
    DesiredSet,
    HostKeyRejected,
    NodeConnection,
    NodeEndpoint,
    NodeName,
    NodeState,
    Phase,
)
from reconciler.nodes._links import AuthenticationFailed, LinkSettings

ENDPOINT = NodeEndpoint(name=NodeName("n1"), address="127.0.0.9", port=2200, host_key=None)
FAST = ConnectionSettings(backoff=BackoffPolicy(base=0.01, cap=0.02, floor=0.001))


class FailingOpener:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0
        self.enough = threading.Event()

    def __call__(self, endpoint: NodeEndpoint, settings: LinkSettings):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls >= 5:
            self.enough.set()
        raise self.error


def _run(error: Exception) -> tuple[list[NodeState], FailingOpener, NodeConnection]:
    states: list[NodeState] = []
    opener = FailingOpener(error)
    connection = NodeConnection(
        ENDPOINT,
        on_message=lambda _n, _m: None,
        on_state=states.append,
        settings=FAST,
        rng=random.Random(1),
        opener=opener,
    )
    future = connection.push(DesiredSet())
    connection.start()
    assert opener.enough.wait(10)
    connection.close()
    assert future.cancelled()  # nothing was ever sent; close does not leave callers hanging
    return states, opener, connection


def test_refused_host_key_is_reported_once_with_both_fingerprints_and_retried():
    refused = HostKeyRejected(host="n1", expected="SHA256:exp", offered="SHA256:off")
    states, opener, connection = _run(refused)
    assert opener.calls >= 5
    phases = [s.phase for s in states]
    # Connecting once, then the refusal stays put across retries (no flapping), then closed.
    assert phases == [Phase.CONNECTING, Phase.HOST_KEY_REJECTED, Phase.CLOSED]
    rejected = states[1]
    assert rejected.expected_fingerprint == "SHA256:exp"
    assert rejected.offered_fingerprint == "SHA256:off"
    assert connection.state.phase is Phase.CLOSED


def test_auth_failure_and_network_errors_have_their_own_phase():
    states, _, _ = _run(AuthenticationFailed("n1: no key accepted"))
    assert states[1].phase is Phase.AUTH_FAILED
    states, _, _ = _run(ConnectionRefusedError(111, "Connection refused"))
    assert states[1].phase is Phase.DISCONNECTED
    assert "Connection refused" in states[1].message
