"""Real Docker: busybox httpd replicas behind a NodePort, and a pod calling a Service by name.

Replicas publish their port 80 on the "node" loopback addresses only (127.0.N.x); the client
container reaches them solely through the in-pod forwarder, by name, never by bridge address.
"""

from __future__ import annotations

import http.server
import threading
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest
from proxy_testkit import Net

from agent.proxy import PodUID, Proxy, ServiceRuleSet, extra_hosts, service_env
from schemas.protocol import Endpoint as WireEndpoint
from schemas.protocol import ServicePortRule, ServiceRule
from tests.fixtures.local_agent import ensure_busybox
from tests.fixtures.waiting import wait_until

BUSYBOX = "capstan.local/busybox:1"
LABEL = "io.capstan.test"


@pytest.fixture(scope="module")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    ensure_busybox(client)
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


@pytest.fixture
def http_backend(net: Net) -> Iterator[WireEndpoint]:
    """A plain HTTP server on the "node" loopback answering "backend" (a Service endpoint)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"backend\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer((net.node_a, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield WireEndpoint(address=net.node_a, port=server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_pod_app_binds_the_service_port_on_all_addresses(
    net: Net, make_proxy, run_container, http_backend
):
    # The example repo's case: Service "api" on port 8080, and the pod's own httpd listening
    # on 0.0.0.0:8080. A forwarder listening on virtual:8080 in the pod made that bind fail.
    port = ServicePortRule(name="http", port=8080, endpoints=[http_backend])
    rules = ServiceRuleSet.from_protocol(
        [ServiceRule(namespace="shop", name="api", type="ClusterIP", ports=[port])]
    )
    proxy: Proxy = make_proxy("nftables")
    proxy.apply(rules)
    sandbox = run_container(["sleep", "120"], extra_hosts=extra_hosts(rules, namespace="shop"))
    sandbox.reload()
    pid = sandbox.attrs["State"]["Pid"]
    report = proxy.attach_pod(PodUID("pod-web"), netns_path=f"/proc/{pid}/ns/net")
    assert report.problems == ()

    # The app starts after the forwarder, as the kubelet orders it: wildcard bind on 8080.
    sandbox.exec_run(["sh", "-c", "mkdir -p /www && echo pod-own > /www/index.html"])
    sandbox.exec_run(["sh", "-c", "exec httpd -f -p 8080 -h /www 2>/tmp/httpd.err"], detach=True)

    def fetch(url: str) -> str:
        code, output = sandbox.exec_run(["wget", "-qO-", url])
        return output.decode().strip() if code == 0 else ""

    try:
        own = wait_until(lambda: fetch("http://127.0.0.1:8080/"), timeout=5, what="pod httpd")
    except AssertionError:
        errors = sandbox.exec_run(["cat", "/tmp/httpd.err"])[1].decode()
        raise AssertionError(f"the pod's httpd did not start: {errors}") from None
    assert own == "pod-own"
    # By name: the Service's backend, not the pod's own httpd on the same port.
    assert {fetch("http://api:8080/") for _ in range(3)} == {"backend"}
    assert fetch("http://api.shop.svc.cluster.local:8080/") == "backend"

    # A restarted agent re-attaches a pod whose app already runs: still no collision.
    proxy.close()
    again: Proxy = make_proxy("nftables")
    again.apply(rules)
    assert again.attach_pod(PodUID("pod-web"), netns_path=f"/proc/{pid}/ns/net").problems == ()
    assert fetch("http://api:8080/") == "backend"
    assert fetch("http://127.0.0.1:8080/") == "pod-own"
