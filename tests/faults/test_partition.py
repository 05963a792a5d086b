"""A partition between the control plane and one node, made with iptables in a namespace.

The node's sshd runs in a network namespace (``tests.faults.partition``); the partition is
``iptables -j DROP`` there, so the control plane's SSH link to the node goes silent while the
node, its agent and its containers keep running — as Kubernetes sees a partitioned node. The
other node's proxy is asked through its NodePort all along (every answer names its pod).
Expected, as Kubernetes' node lifecycle controller: after the grace period the node turns
Unknown and its pods NotReady at once, so they leave every Service's endpoints (a NodePort
and a ClusterIP one select them) and the other node's proxy stops sending there while the
pods still exist; after the eviction timeout
they are deleted and replaced on the other node; once the partition heals, the node's agent
stops the moved pods' containers (no duplicates) and nothing ever routed to a gone pod.
A partition shorter than the eviction timeout comes first: its pods return to the
endpoints, none evicted. ``run_partition`` checks the steps of the long one on the way; the
test then checks the timeouts and the probe.
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from tests.faults.partition import PartitionRig, partition_rig, run_partition
from tests.fixtures.waiting import wait_until

GRACE_S = 6
#: Long enough that grace + eviction outlast the dispatcher's ``dead_after`` (45 s): the SSH
#: link is dropped during the partition and reopened after the heal, as in a real outage.
EVICTION_S = 40


def _partition_shorter_than_the_eviction(prig: PartitionRig) -> None:
    """Cut, see the pods leave every Service's endpoints, heal: the same pods come back to
    each, none evicted."""
    prig.spread_out()
    victims = {p.name for p in prig.spread()[prig.victim.name]}
    before = {p.metadata.uid for p in prig.web_pods()}
    prig.netns.cut()
    try:
        wait_until(
            lambda: not prig.in_any_endpoints() & victims,
            timeout=GRACE_S + 60,
            what="the partitioned node's pods out of every Service's endpoints",
        )
    finally:
        prig.netns.heal()
    wait_until(
        lambda: prig.endpoints_are({p.name for p in prig.web_pods()}),
        timeout=60,
        what="the same pods back in every Service's endpoints",
    )
    assert {p.metadata.uid for p in prig.web_pods()} == before
    assert not any(
        e.reason == "NodeControllerEviction" for e in prig.api.list_events(namespace="default")
    )


@pytest.mark.timeout(900)
def test_a_partitioned_node_leaves_endpoints_at_once_and_is_evicted_after_the_timeout(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    with partition_rig(docker_client, tmp_path, grace_s=GRACE_S, eviction_s=EVICTION_S) as prig:
        _partition_shorter_than_the_eviction(prig)
        run = run_partition(prig, grace_s=GRACE_S, eviction_s=EVICTION_S)
        live = {p.name for p in prig.live_pods()}

    # NotReady only after the grace, evicted only after the timeout (both on the API clock).
    assert run.unknown_after_renewal_s >= GRACE_S
    assert run.evicted_after_unknown_s >= EVICTION_S
    # Once the other node's proxy had switched, it never sent a request to a victim again,
    # through the eviction and after the heal stopped their containers.
    routed_to_victims = [a for a in run.probe.since(run.switched_at) if a.pod in run.victims]
    assert not routed_to_victims, routed_to_victims[:5]
    # A request the proxy sends to a container that is gone is refused by the kernel.
    refused = [a for a in run.probe.answers if a.error == "refused"]
    assert not refused, refused[:5]
    answered = {a.pod for a in run.probe.since(run.healed_at) if a.pod is not None}
    assert answered
    assert answered <= live
