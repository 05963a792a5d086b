"""A pool starts at most ``max_handshakes`` connections at once, from opening the link to the
agent's hello; a connected node frees its slot for the next.

The opener is the transport boundary: each link it opens says hello only when the test lets
it, so the test sees how many nodes are between "open" and "hello" at any moment.
"""

from __future__ import annotations

import json
import threading

from reconciler.nodes import ConnectionSettings, NodeEndpoint, NodeName, Phase
from reconciler.nodes._links import LinkSettings
from reconciler.nodes.pool import NodePool
from tests.fixtures.scripted_link import ScriptedLink
from tests.fixtures.waiting import wait_until

HELLO = {"v": 1, "type": "hello", "role": "agent", "versions": [1], "nodeName": "n"}


class HeldLink(ScriptedLink):
    """A link whose agent says hello when ``greet`` is called (and answers nothing else)."""

    def greet(self) -> None:
        self.agent_says(json.dumps(HELLO).encode() + b"\n")


class CountingOpener:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.links: list[HeldLink] = []

    def __call__(self, endpoint: NodeEndpoint, settings: LinkSettings) -> HeldLink:
        link = HeldLink()
        with self.lock:
            self.links.append(link)
        return link

    def opened(self) -> int:
        with self.lock:
            return len(self.links)


def test_at_most_max_handshakes_nodes_connect_at_once() -> None:
    opener = CountingOpener()
    pool = NodePool(
        on_message=lambda _n, _m: None,
        on_state=lambda _s: None,
        settings=ConnectionSettings(max_handshakes=3, hello_timeout=60),
        opener=opener,
    )
    try:
        for i in range(8):
            pool.ensure(NodeEndpoint(name=NodeName(f"n{i}"), address="127.0.0.9", port=22))
        wait_until(lambda: opener.opened() == 3, what="three handshakes started")
        # Each hello frees a slot for exactly one more node.
        for done in range(5):
            with opener.lock:
                opener.links[done].greet()
            wait_until(lambda done=done: opener.opened() == 4 + done, what="the next handshake")
        # The rest greet: every node connected, each on its one link.
        for link in opener.links[5:]:
            link.greet()
        wait_until(
            lambda: all(s.phase is Phase.CONNECTED for s in pool.states().values()),
            what="all eight connected",
        )
        assert opener.opened() == 8
    finally:
        pool.close()
