"""Real kernel rules, real sockets: fixtures for the node proxy's integration tests.

Every test gets its own nft table / iptables chain prefix and its own loopback addresses
(127.0.N.x with N random per test), so runs in parallel with other suites never collide, and
each fixture removes what it created — then checks the kernel has nothing of it left.
Traffic only ever goes to loopback addresses or to network namespaces created here.
"""

from __future__ import annotations

import random
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from proxy_testkit import Backend, Net, kernel_leftovers

from agent.proxy import Proxy, ProxyMode


@pytest.fixture
def net() -> Net:
    third = random.randint(100, 250)
    tag = uuid.uuid4().hex[:6]
    return Net(
        node_a=f"127.0.{third}.11",
        node_b=f"127.0.{third}.12",
        node_port=random.randint(30000, 32767),
        table=f"capstan_t{tag}",
        prefix=f"CAPT{tag.upper()}",
    )


@pytest.fixture
def backends(net: Net) -> Iterator[list[Backend]]:
    """Three backends: two on node A, one on node B (replicas of one Deployment on 2 nodes)."""
    started = [
        Backend("b0", net.node_a),
        Backend("b1", net.node_a),
        Backend("b2", net.node_b),
    ]
    yield started
    for backend in started:
        backend.stop()


@pytest.fixture
def make_proxy(net: Net) -> Iterator[Callable[..., Proxy]]:
    made: list[Proxy] = []

    def make(mode: ProxyMode, **kwargs: Any) -> Proxy:
        kwargs.setdefault("node_addresses", [net.node_a, net.node_b])
        proxy = Proxy(mode=mode, table=net.table, chain_prefix=net.prefix, **kwargs)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.cleanup()
        proxy.close()
    assert kernel_leftovers(net) == []


@pytest.fixture
def netns() -> Iterator[Callable[[], str]]:
    """Network namespaces of our own (``ip netns add``), lo up; removed afterwards."""
    created: list[str] = []

    def make() -> str:
        name = f"capstan-t{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        created.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return name

    yield make
    for name in created:
        subprocess.run(["ip", "netns", "delete", name], check=False)
