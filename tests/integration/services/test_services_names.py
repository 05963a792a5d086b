"""In-cluster names end to end: a container calls another Service by name, on two agents.

Names come from the sandbox's hosts file, the traffic from the in-pod forwarder the agent
attaches to each sandbox; the Service variables from the container's environment at start.
"""

from __future__ import annotations

import re

from services_harness import Cluster, replica, sleeper

from tests.fixtures.waiting import wait_until

API = ["a0", "a1"]


def fetch(cluster: Cluster, pod: str, url: str) -> str:
    # WARNING: this busybox-static's wget crashes (SIGSEGV) when given -T.
    code, output = cluster.exec(pod, "main", ["wget", "-qO-", url])
    assert code == 0, f"{url} from {pod}: {output}"
    return output.strip()


def env_of(cluster: Cluster, pod: str) -> dict[str, str]:
    code, output = cluster.exec(pod, "main", ["env"])
    assert code == 0, output
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def restarts(cluster: Cluster) -> dict[str, int]:
    counts = {}
    for node in cluster.nodes:
        for name, status in node.client.pods().items():
            counts[name] = sum(c["restartCount"] for c in status.get("containerStatuses", []))
    return counts


def test_container_calls_a_service_by_name_and_sees_its_variables(make_cluster):
    cluster = make_cluster()
    ns = cluster.namespace
    other_ns = f"{ns}-other"
    cluster.nodes[0].pods = [replica("a0", ns)]
    cluster.nodes[1].pods = [replica("a1", ns)]
    cluster.sync()
    cluster.wait_ready(API)
    # The Service and its callers arrive together, as after a first `git push`.
    cluster.services = [cluster.service("api", API, port=8081)]
    cluster.nodes[0].pods.append(sleeper("client", ns, API_SERVICE_PORT_EXTRA="mine"))
    cluster.nodes[1].pods.append(sleeper("stranger", other_ns))
    cluster.sync()
    cluster.wait_ready(["client", "stranger"])

    def answered(pod: str, url: str) -> bool:
        return fetch(cluster, pod, url) in API

    wait_until(
        lambda: answered("client", "http://api:8081/"), timeout=10, what="api answering by name"
    )
    seen = {fetch(cluster, "client", "http://api:8081/") for _ in range(20)}
    assert seen == set(API), seen  # both replicas, one on each node
    assert answered("client", f"http://api.{ns}:8081/")
    assert answered("client", f"http://api.{ns}.svc.cluster.local:8081/")
    assert answered("stranger", f"http://api.{ns}:8081/")  # another namespace, another node

    env = env_of(cluster, "client")
    assert re.fullmatch(r"127\.\d+\.\d+\.\d+", env["API_SERVICE_HOST"]), env
    assert env["API_SERVICE_PORT"] == "8081"
    assert env["API_PORT"] == f"tcp://{env['API_SERVICE_HOST']}:8081"
    assert env["API_SERVICE_PORT_EXTRA"] == "mine"  # the container's own env is kept
    assert "API_SERVICE_HOST" not in env_of(cluster, "stranger")  # other namespace: no vars

    # Endpoints change and a Service appears: nothing restarts (the spec hash ignores
    # Services), the new name resolves in the running pod, variables stay as started.
    before_ids, before_restarts = cluster.container_ids(), restarts(cluster)
    cluster.services = [
        cluster.service("api", ["a1"], port=8081),
        cluster.service("late", ["a0"], port=8082),
    ]
    cluster.sync()
    wait_until(
        lambda: (
            fetch(cluster, "client", "http://api:8081/") == "a1"
            and all(fetch(cluster, "client", "http://api:8081/") == "a1" for _ in range(5))
        ),
        timeout=10,
        what="api endpoints following the sync",
    )
    wait_until(
        lambda: (
            cluster.exec("client", "main", ["wget", "-qO-", "http://late:8082/"])[1].strip() == "a0"
        ),
        timeout=10,
        what="a Service created later resolving by name",
    )
    for node in cluster.nodes:
        node.client.heartbeats(2)
    assert cluster.container_ids() == before_ids
    assert restarts(cluster) == before_restarts
    assert "LATE_SERVICE_HOST" not in env_of(cluster, "client")
