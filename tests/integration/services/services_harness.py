"""Two real agents on one machine and a stand-in for the control plane's Endpoints controller.

Nodes are two ``capstan-agent serve`` processes bound to 127.0.0.2 and 127.0.0.3 with unique
node names and a proxy table / chain prefix of their own (one host, two agents: each programs
its whole rule set into its own table). The "control plane" here is the test: it places pods,
reads the agents' statuses, computes each Service's ready endpoints the way the Endpoints
controller does (ready pods' host ports) and sends every node the same Services with its pods.
Traffic goes only to 127.0.0.x and into the pods the agents create.
"""

from __future__ import annotations

import http.client
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_AGENT_TESTS = Path(__file__).resolve().parents[1] / "agent"
if str(_AGENT_TESTS) not in sys.path:
    sys.path.insert(0, str(_AGENT_TESTS))

from agent_harness import AGENT, BUSYBOX, Agent, Client, ready  # noqa: E402

from tests.fixtures.waiting import wait_until  # noqa: E402

__all__ = ["AGENT", "BUSYBOX", "Agent", "Client", "Cluster", "Hammer", "Node", "wait_until"]

CONTAINER_PORT = 8080


def replica(
    name: str, namespace: str, *, readiness: bool = False, grace: int = 5
) -> dict[str, Any]:
    """A busybox httpd pod answering GET / with its own pod name."""
    script = (
        "mkdir -p /www && echo $POD_NAME > /www/index.html && touch /tmp/ready && "
        f"exec httpd -f -p {CONTAINER_PORT} -h /www"
    )
    container: dict[str, Any] = {
        "name": "web",
        "image": BUSYBOX,
        "command": ["sh", "-c", script],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"containerPort": CONTAINER_PORT}],
    }
    if readiness:
        container["readinessProbe"] = {
            "exec": {"command": ["cat", "/tmp/ready"]},
            "periodSeconds": 1,
            "failureThreshold": 1,
        }
    return pod(name, namespace, [container], grace=grace)


def sleeper(name: str, namespace: str, **env: str) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": BUSYBOX,
        "command": ["sleep", "3600"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }
    return pod(name, namespace, [container], grace=1)


def pod(
    name: str, namespace: str, containers: list[dict[str, Any]], *, grace: int
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}-{uuid.uuid4().hex[:8]}",
        },
        "spec": {"terminationGracePeriodSeconds": grace, "containers": containers},
    }


@dataclass
class Node:
    agent: Agent
    client: Client
    args: tuple[str, ...] = ()
    pods: list[dict[str, Any]] = field(default_factory=list)

    def restart(self) -> None:
        """SIGTERM the agent (pods and kernel rules stay), start it again, reconnect."""
        self.agent.kill(signal.SIGTERM)
        self.agent.start(*self.args)
        self.client = self.agent.client()

    @property
    def address(self) -> str:
        return self.agent.bind

    def node_status(self) -> dict[str, Any]:
        status = self.client.latest_node_status()
        assert status is not None
        return status

    def pod_status(self, name: str) -> dict[str, Any] | None:
        return self.client.pods().get(name)


class Cluster:
    """The test's control plane over two agents: placement, endpoints, syncs."""

    def __init__(self, nodes: list[Node], *, namespace: str) -> None:
        self.nodes = nodes
        self.namespace = namespace
        self.node_port = random.randint(30000, 32767)
        self.generation = 0
        self.services: list[dict[str, Any]] = []

    def node_of(self, pod_name: str) -> Node:
        return next(n for n in self.nodes if any(p["metadata"]["name"] == pod_name for p in n.pods))

    def sync(self) -> None:
        """Every node: its pods and the same Services (a new generation)."""
        self.generation += 1
        for node in self.nodes:
            ack = node.client.sync(node.pods, self.generation, services=self.services)
            assert ack["applied"], ack

    def endpoints(self, pod_names: list[str]) -> list[dict[str, Any]]:
        """Ready endpoints of ``pod_names`` as the Endpoints controller computes them."""
        found = []
        for node in self.nodes:
            for name, status in node.client.pods().items():
                if name not in pod_names or not ready(status):
                    continue
                for mapping in status.get("hostPorts", []):
                    if mapping["containerPort"] == CONTAINER_PORT:
                        found.append({"address": mapping["hostIP"], "port": mapping["hostPort"]})
        return sorted(found, key=lambda e: (e["address"], e["port"]))

    def service(
        self, name: str, pod_names: list[str], *, port: int = 80, node_port: int | None = None
    ) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": name,
            "type": "NodePort" if node_port else "ClusterIP",
            "ports": [
                {"port": port, "nodePort": node_port, "endpoints": self.endpoints(pod_names)}
            ],
        }

    def wait_ready(self, names: list[str], *, timeout: float = 30) -> None:
        def all_ready() -> bool:
            return all(ready(self.node_of(n).pod_status(n)) for n in names)

        wait_until(all_ready, timeout=timeout, what=f"pods {names} ready")

    def container_ids(self) -> dict[str, str]:
        ids: dict[str, str] = {}
        for node in self.nodes:
            ids.update(node.agent.container_ids())
        return ids

    def exec(self, pod_name: str, container: str, argv: list[str]) -> tuple[int, str]:
        node = self.node_of(pod_name)
        name = next(
            n for n in node.agent.container_ids() if f"_{pod_name}_" in n and f"_{container}_" in n
        )
        result = subprocess.run(
            ["docker", "exec", name, *argv], capture_output=True, text=True, timeout=20
        )
        return result.returncode, result.stdout + result.stderr


def get(address: str, port: int, *, timeout: float = 2.0) -> str:
    """GET / on a new connection: the body (a replica's pod name)."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        body = response.read().decode().strip()
        if response.status != 200:
            raise ConnectionError(f"HTTP {response.status}")
        return body
    finally:
        connection.close()


def tally(address: str, port: int, count: int) -> Counter[str]:
    return Counter(get(address, port) for _ in range(count))


class Hammer:
    """A client loop on one address: every request's time and outcome, until stopped."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self.results: list[tuple[float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                body: str | None = get(self.address, self.port, timeout=1.0)
            except OSError:
                body = None
            self.results.append((started, body))
            time.sleep(0.005)

    def wait_requests(self, count: int, *, after: float = 0.0, timeout: float = 30.0) -> None:
        """Wait until ``count`` requests started at or after ``after`` (monotonic) are done."""
        wait_until(
            lambda: sum(1 for at, _ in list(self.results) if at >= after) >= count,
            timeout=timeout,
            what=f"{count} requests to {self.address}:{self.port}",
        )

    def failures_after(self, moment: float) -> int:
        return sum(1 for at, body in self.results if at >= moment and body is None)

    def answers_after(self, moment: float) -> Counter[str | None]:
        return Counter(body for at, body in self.results if at >= moment)


def kernel_leftovers(table: str, prefix: str) -> list[str]:
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    found = [line for line in nft.splitlines() if table in line]
    if shutil.which("iptables-save"):
        ipt = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        found += [line for line in ipt.splitlines() if prefix in line]
    return found


def run_cleanup(table: str, prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AGENT), "serve", "--cleanup", "--proxy-table", table, "--proxy-chain-prefix", prefix],
        capture_output=True,
        text=True,
        timeout=30,
    )
