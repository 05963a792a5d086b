"""Services end to end at the agent level: real Docker, two agents, NodePort traffic.

The test plays the control plane (placement, Endpoints from the agents' status, syncs); the
agents run the pods and program their proxies. Replicas answer GET / with their pod name.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time

import pytest
from services_harness import (
    Cluster,
    Hammer,
    get,
    kernel_leftovers,
    replica,
    run_cleanup,
    sleeper,
    tally,
    wait_until,
)

REPLICAS = ["r0", "r1", "r2"]
MODES = ["nftables", *(["iptables"] if shutil.which("iptables-restore") else []), "userspace"]


def deploy(cluster: Cluster, *, readiness: bool = False, grace: int = 5) -> None:
    """Three replicas spread on two nodes (two on the first), behind one NodePort Service."""
    ns = cluster.namespace
    cluster.nodes[0].pods = [replica(n, ns, readiness=readiness, grace=grace) for n in REPLICAS[:2]]
    cluster.nodes[1].pods = [replica(REPLICAS[2], ns, readiness=readiness, grace=grace)]
    cluster.sync()
    cluster.wait_ready(REPLICAS)
    publish(cluster, REPLICAS)


def publish(cluster: Cluster, pods: list[str]) -> None:
    cluster.services = [cluster.service("web", pods, node_port=cluster.node_port)]
    assert len(cluster.services[0]["ports"][0]["endpoints"]) == len(pods)
    cluster.sync()


def proxy_condition(cluster: Cluster, index: int) -> dict[str, str]:
    conditions = cluster.nodes[index].node_status()["conditions"]
    return next(c for c in conditions if c["type"] == "ProxyReady")


def wait_serving(cluster: Cluster, expected: set[str]) -> None:
    """Until both nodes' NodePorts reach exactly ``expected`` (the sync's apply is async)."""

    def serving() -> bool:
        try:
            return all(
                set(tally(n.address, cluster.node_port, 30)) == expected for n in cluster.nodes
            )
        except OSError:
            return False

    wait_until(serving, timeout=10, what=f"NodePorts serving {sorted(expected)}")


@pytest.mark.parametrize("mode", MODES)
def test_nodeport_on_each_node_reaches_all_replicas_evenly(make_cluster, mode):
    cluster = make_cluster(proxy_mode=mode)
    deploy(cluster)
    wait_serving(cluster, set(REPLICAS))
    for node in cluster.nodes:
        counts = tally(node.address, cluster.node_port, 300)
        assert set(counts) == set(REPLICAS), counts
        # Round-robin (userspace) is exact; random (kernel) is ~100 ± 8 each.
        assert min(counts.values()) >= 60, (node.address, counts)
    for index in range(2):
        wait_until(
            lambda i=index: proxy_condition(cluster, i)["status"] == "True",
            timeout=5,
            what="ProxyReady True",
        )
        assert proxy_condition(cluster, index)["reason"] == mode.capitalize()


def programmed_generation(cluster: Cluster, index: int) -> int | None:
    """The sync generation whose Services node ``index``'s proxy last programmed."""
    found = re.search(
        r"Services of sync generation (\d+)", proxy_condition(cluster, index)["message"]
    )
    return int(found[1]) if found else None


def test_killed_replica_leaves_the_rules_and_gets_no_connection_after(make_cluster):
    cluster = make_cluster()
    deploy(cluster)
    wait_serving(cluster, set(REPLICAS))
    victim = "r1"
    with Hammer(cluster.nodes[1].address, cluster.node_port) as hammer:
        hammer.wait_requests(20)
        code, output = cluster.exec(victim, "web", ["kill", "-9", "1"])
        # PID 1 is docker's init; killing it kills the container (exit 137).
        assert code in (0, 137), output
        publish(cluster, ["r0", "r2"])  # what the Endpoints controller sends next
        synced, generation = time.monotonic(), cluster.generation
        # The event: the node reports that its proxy programmed this sync's Services. Every
        # request the hammer starts after the report reached us started after the change.
        wait_until(
            lambda: (programmed_generation(cluster, 1) or 0) >= generation,
            timeout=10,
            what=f"node 1 programming the Services of generation {generation}",
        )
        programmed = time.monotonic()
        hammer.wait_requests(60, after=programmed)
    print(f"rules without {victim} reported {programmed - synced:.3f} s after the sync")
    assert hammer.failures_after(programmed) == 0, hammer.results[-20:]
    answers = hammer.answers_after(programmed)
    assert set(answers) == {"r0", "r2"}, answers


def test_readiness_failure_drains_the_endpoint(make_cluster):
    cluster = make_cluster()
    deploy(cluster, readiness=True)
    wait_serving(cluster, set(REPLICAS))
    code, output = cluster.exec("r2", "web", ["rm", "/tmp/ready"])
    assert code == 0, output
    wait_until(
        lambda: (
            not any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (cluster.node_of("r2").pod_status("r2") or {}).get("conditions", [])
            )
        ),
        timeout=10,
        what="r2 reported not ready",
    )
    # The Endpoints controller's recomputation: only ready pods' host ports.
    cluster.services = [cluster.service("web", REPLICAS, node_port=cluster.node_port)]
    assert len(cluster.services[0]["ports"][0]["endpoints"]) == 2
    cluster.sync()
    wait_serving(cluster, {"r0", "r1"})
    for node in cluster.nodes:
        counts = tally(node.address, cluster.node_port, 100)
        assert set(counts) == {"r0", "r1"}, counts
    # Ready again: the endpoint comes back the same way.
    code, output = cluster.exec("r2", "web", ["touch", "/tmp/ready"])
    assert code == 0, output
    cluster.wait_ready(REPLICAS)
    publish(cluster, REPLICAS)
    wait_serving(cluster, set(REPLICAS))


def test_graceful_stop_drains_the_local_endpoint_before_sigterm(make_cluster):
    """The control plane's view is stale (it still lists r2): the agent stopping r2 must
    take it out of its own rules before SIGTERM, so requests on its node never fail."""
    cluster = make_cluster()
    deploy(cluster, grace=3)
    wait_serving(cluster, set(REPLICAS))
    node = cluster.nodes[1]
    with Hammer(node.address, cluster.node_port) as hammer:
        hammer.wait_requests(20)
        node.pods = []
        cluster.sync()  # r2 leaves its node; the Services still list its endpoint
        wait_until(lambda: not node.agent.containers(), timeout=15, what="r2 removed")
        hammer.wait_requests(20, after=time.monotonic())  # and requests after it is gone
    assert hammer.failures_after(0) == 0, [r for r in hammer.results if r[1] is None][:5]
    assert {"r0", "r1"} <= set(hammer.answers_after(0))


def test_cleanup_removes_every_rule(make_cluster):
    cluster = make_cluster()
    deploy(cluster)
    wait_serving(cluster, set(REPLICAS))
    node = cluster.nodes[0]
    table, prefix = _proxy_names(node.agent)
    assert kernel_leftovers(table, prefix), "the agent programmed no kernel rules"
    # A stopped agent leaves its rules: NodePorts keep answering through an agent restart.
    node.agent.kill(signal.SIGTERM)
    assert get(node.address, cluster.node_port) in REPLICAS
    result = run_cleanup(table, prefix)
    assert result.returncode == 0, result.stderr
    assert kernel_leftovers(table, prefix) == []
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    assert table not in nft
    # Idempotent: a second cleanup finds nothing and still succeeds.
    assert run_cleanup(table, prefix).returncode == 0


def _proxy_names(agent) -> tuple[str, str]:
    args = agent.proc.args
    return args[args.index("--proxy-table") + 1], args[args.index("--proxy-chain-prefix") + 1]


def test_agent_restart_keeps_nodeports_and_reattaches_pods(make_cluster):
    cluster = make_cluster()
    deploy(cluster)
    ns = cluster.namespace
    cluster.services.append(cluster.service("api", REPLICAS, port=8081))
    cluster.nodes[0].pods.append(sleeper("client", ns))
    cluster.sync()
    cluster.wait_ready(["client"])
    wait_until(
        lambda: cluster.exec("client", "main", ["wget", "-qO-", "http://api:8081/"])[0] == 0,
        timeout=10,
        what="api by name",
    )
    before = cluster.container_ids()
    node = cluster.nodes[0]
    with Hammer(node.address, cluster.node_port) as hammer:
        hammer.wait_requests(20)
        node.restart()
        node.client.heartbeats(2)
    # Kernel rules outlive the agent: the NodePort never stopped answering.
    assert hammer.failures_after(0) == 0
    assert cluster.container_ids() == before  # adopted, not restarted
    # The adopted pod's forwarder is back (it lives in the agent process).
    code, output = cluster.exec("client", "main", ["wget", "-qO-", "http://api:8081/"])
    assert code == 0, output
    assert output.strip() in REPLICAS, output


def test_refused_rules_are_reported_and_the_old_rules_keep_serving(make_cluster):
    cluster = make_cluster()
    deploy(cluster)
    wait_serving(cluster, set(REPLICAS))
    web = cluster.services[0]
    clash = {**web, "name": "clash"}  # a second Service on the same nodePort
    cluster.services = [web, clash]
    cluster.sync()
    for index in range(2):
        wait_until(
            lambda i=index: proxy_condition(cluster, i)["status"] == "False",
            timeout=5,
            what="ProxyReady False",
        )
        assert "nodePort" in proxy_condition(cluster, index)["message"]
    assert all(n.agent.proc.poll() is None for n in cluster.nodes)
    assert set(tally(cluster.nodes[0].address, cluster.node_port, 30)) == set(REPLICAS)
    cluster.services = [web]
    cluster.sync()
    wait_until(
        lambda: proxy_condition(cluster, 0)["status"] == "True",
        timeout=5,
        what="ProxyReady True again",
    )
