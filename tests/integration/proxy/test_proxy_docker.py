"""Real Docker: busybox httpd replicas behind a NodePort, and a pod calling a Service by name.

Replicas publish their port 80 on the "node" loopback addresses only (127.0.N.x); the client
container reaches them solely through the in-pod forwarder, by name, never by bridge address.
"""

from __future__ import annotations

import subprocess
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest
from proxy_testkit import Net, wait_until

from agent.proxy import PodUID, Proxy, ServiceRuleSet, extra_hosts, service_env
from schemas.protocol import Endpoint as WireEndpoint
from schemas.protocol import ServicePortRule, ServiceRule

BUSYBOX = "capstan.local/busybox:1"
LABEL = "io.capstan.test"


@pytest.fixture(scope="module")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    try:
        client.images.get(BUSYBOX)
    except docker.errors.ImageNotFound:
        build = Path(__file__).resolve().parents[3] / "example-repo" / "images" / "build.sh"
        subprocess.run(["bash", str(build)], check=True)
    yield client
    client.close()


@pytest.fixture
def run_container(
    docker_client: docker.DockerClient,
) -> Iterator[Callable[..., docker.models.containers.Container]]:
    tag = f"proxy-{uuid.uuid4().hex[:8]}"
    started: list[docker.models.containers.Container] = []

    def run(command: list[str], **kwargs: object) -> docker.models.containers.Container:
        container = docker_client.containers.run(
            BUSYBOX, command, detach=True, labels={LABEL: tag}, **kwargs
        )
        started.append(container)
        return container

    yield run
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda c: c.remove(force=True), started))


def httpd_replica(run: Callable[..., docker.models.containers.Container], name: str, node: str):
    """A busybox httpd serving its own name, published on ``node`` at a free host port."""
    container = run(
        [
            "sh",
            "-c",
            f"mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -p 80 -h /www",
        ],
        ports={"80/tcp": (node, None)},
    )

    def published() -> int | None:
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"].get("80/tcp")
        return int(bindings[0]["HostPort"]) if bindings else None

    port = wait_until(published, timeout=10, what=f"{name} published port")
    return container, WireEndpoint(address=node, port=port)


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as response:
        return response.read().decode().strip()


def test_nodeport_and_in_cluster_names_with_real_containers(net: Net, make_proxy, run_container):
    started = {
        "r0": httpd_replica(run_container, "r0", net.node_a),
        "r1": httpd_replica(run_container, "r1", net.node_a),
        "r2": httpd_replica(run_container, "r2", net.node_b),
    }
    replicas = {name: endpoint for name, (_, endpoint) in started.items()}

    def rule_set(endpoints: list[WireEndpoint]) -> ServiceRuleSet:
        port = ServicePortRule(name="http", port=8080, node_port=net.node_port, endpoints=endpoints)
        wire = ServiceRule(namespace="shop", name="web-front", type="NodePort", ports=[port])
        return ServiceRuleSet.from_protocol([wire])

    rules = rule_set(list(replicas.values()))
    proxy: Proxy = make_proxy("nftables")
    proxy.apply(rules)

    def all_serving() -> bool:
        try:
            return all(http_get(f"http://{ep.address}:{ep.port}/") for ep in replicas.values())
        except OSError:
            return False

    wait_until(all_serving, timeout=10, what="httpd replicas")
    for node in (net.node_a, net.node_b):
        counts = Counter(http_get(f"http://{node}:{net.node_port}/") for _ in range(300))
        assert set(counts) == set(replicas)
        assert min(counts.values()) >= 60, counts

    # A pod in namespace "shop" and one in "other": names and env as the kubelet would pass.
    clients = {}
    for namespace in ("shop", "other"):
        sandbox = run_container(
            ["sleep", "120"],
            extra_hosts=extra_hosts(rules, namespace=namespace),
            environment=service_env(rules, namespace=namespace),
        )
        sandbox.reload()
        pid = sandbox.attrs["State"]["Pid"]
        proxy.attach_pod(PodUID(f"pod-{namespace}"), netns_path=f"/proc/{pid}/ns/net")
        clients[namespace] = sandbox

    def fetch(container, url: str) -> tuple[int, str]:
        # WARNING: this busybox-static's wget crashes (SIGSEGV) when given -T.
        code, output = container.exec_run(["wget", "-qO-", url])
        return code, output.decode().strip()

    shop = clients["shop"]
    assert fetch(shop, "http://web-front:8080/")[1] in replicas
    assert fetch(shop, "http://web-front.shop:8080/")[1] in replicas
    seen = {fetch(shop, "http://web-front.shop.svc:8080/")[1] for _ in range(6)}
    assert seen == set(replicas)  # round-robin over the three

    other = clients["other"]
    assert fetch(other, "http://web-front.shop:8080/")[1] in replicas
    hosts = other.exec_run(["cat", "/etc/hosts"])[1].decode()
    assert "\tweb-front\n" not in hosts  # the short name is only for its own namespace

    env = shop.exec_run(["sh", "-c", "echo $WEB_FRONT_SERVICE_HOST:$WEB_FRONT_SERVICE_PORT"])
    virtual = rules.service("shop", "web-front")[0].virtual_address
    assert env[1].decode().strip() == f"{virtual}:8080"
    assert other.exec_run(["sh", "-c", "echo ${WEB_FRONT_SERVICE_HOST:-unset}"])[1] == b"unset\n"

    # A replica is killed; the status that says so removes its endpoint: no request fails.
    started["r2"][0].kill()
    proxy.apply(rule_set([replicas["r0"], replicas["r1"]]))
    after = Counter(http_get(f"http://{net.node_b}:{net.node_port}/") for _ in range(60))
    assert set(after) == {"r0", "r1"}
    assert {fetch(shop, "http://web-front:8080/")[1] for _ in range(4)} == {"r0", "r1"}
