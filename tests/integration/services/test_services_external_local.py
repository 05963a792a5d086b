"""``externalTrafficPolicy: Local`` at the agent level: real Docker, two agents, real kernel
rules (nftables, iptables) or userspace listeners.

Two replicas on the first node and one on the second behind one NodePort Service with
``Local``: each node's NodePort reaches only its own replicas, a node left without a replica
forwards nothing, and the Service's virtual address (in-cluster traffic) still reaches all.
"""

from __future__ import annotations

import shutil

import pytest
from services_harness import Cluster, get, replica, tally, wait_until

from agent.proxy import ServiceRuleSet
from schemas.protocol import ServiceRule

MODES = ["nftables", *(["iptables"] if shutil.which("iptables-restore") else []), "userspace"]
ON_FIRST, ON_SECOND = ["r0", "r1"], ["r2"]


def publish_local(cluster: Cluster, pods: list[str]) -> str:
    """The Service with ``Local`` over ``pods``; returns its virtual address."""
    service = cluster.service("web", pods, node_port=cluster.node_port)
    service["externalTrafficPolicy"] = "Local"
    cluster.services = [service]
    cluster.sync()
    (rule,) = ServiceRuleSet.from_protocol([ServiceRule.model_validate(service)])
    return rule.virtual_address


def answers(address: str, port: int, count: int) -> set[str] | None:
    """The replicas ``count`` requests reached, None when a request was not answered."""
    try:
        return set(tally(address, port, count))
    except OSError:
        return None


def not_forwarded(address: str, port: int) -> bool:
    try:
        get(address, port, timeout=1.0)
    except OSError:
        return True
    return False


@pytest.mark.parametrize("mode", MODES)
def test_local_node_port_reaches_only_the_nodes_own_endpoints(make_cluster, mode):
    cluster = make_cluster(proxy_mode=mode)
    ns = cluster.namespace
    first, second = cluster.nodes
    first.pods = [replica(name, ns) for name in ON_FIRST]
    second.pods = [replica(name, ns) for name in ON_SECOND]
    cluster.sync()
    cluster.wait_ready(ON_FIRST + ON_SECOND)
    virtual = publish_local(cluster, ON_FIRST + ON_SECOND)

    port = cluster.node_port
    wait_until(
        lambda: (
            answers(first.address, port, 20) == set(ON_FIRST)
            and answers(second.address, port, 20) == set(ON_SECOND)
        ),
        timeout=10,
        what="each NodePort serving its own node's replicas",
    )
    # Enough requests that an endpoint on the other node would have been hit (p < 1e-17).
    assert set(tally(first.address, port, 100)) == set(ON_FIRST)
    assert set(tally(second.address, port, 100)) == set(ON_SECOND)
    # In-cluster traffic (the virtual address, from the node's namespace) reaches all three.
    wait_until(
        lambda: answers(virtual, 80, 60) == set(ON_FIRST + ON_SECOND),
        timeout=10,
        what="the virtual address reaching every replica",
    )

    # The second node's replica leaves the Service: that node has no local endpoint now.
    publish_local(cluster, ON_FIRST)
    wait_until(
        lambda: not_forwarded(second.address, port),
        timeout=10,
        what="the second node's NodePort no longer forwarding",
    )
    for _ in range(5):
        assert not_forwarded(second.address, port)
    assert set(tally(first.address, port, 50)) == set(ON_FIRST)
    assert answers(virtual, 80, 30) == set(ON_FIRST)
