"""Helpers of the node proxy's integration tests: loopback backends, clients, rule builders."""

from __future__ import annotations

import ctypes
import shutil
import socket
import socketserver
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.proxy import ProxyMode, ServiceRuleSet
from schemas.protocol import Endpoint as WireEndpoint
from schemas.protocol import ServicePortRule, ServiceRule

KERNEL_MODES: list[ProxyMode] = ["nftables"]
if shutil.which("iptables-restore"):
    KERNEL_MODES.append("iptables")
ALL_MODES: list[ProxyMode] = [*KERNEL_MODES, "userspace"]


class _Handler(socketserver.StreamRequestHandler):
    """Line protocol: every line "who" is answered with the backend's name (one per line)."""

    server: _Server

    def handle(self) -> None:
        self.server.owner.record()
        for line in self.rfile:
            if line.strip() != b"who":
                break
            self.wfile.write(self.server.owner.name.encode() + b"\n")
            self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    owner: Backend


class Backend:
    """A plain TCP backend on a loopback address; counts the connections it accepted."""

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address
        self.connections = 0
        self._lock = threading.Lock()
        self._server = _Server((address, 0), _Handler)
        self._server.owner = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def record(self) -> None:
        with self._lock:
            self.connections += 1

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def endpoint(self) -> WireEndpoint:
        return WireEndpoint(address=self.address, port=self.port)


def ask(address: str, port: int, *, timeout: float = 3.0) -> str:
    """One request on a new connection: the name of the backend that answered."""
    with socket.create_connection((address, port), timeout=timeout) as sock:
        sock.sendall(b"who\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(256)
            if not chunk:
                raise ConnectionError(f"{address}:{port} closed without an answer")
            reply += chunk
        return reply.decode().strip()


def tally(address: str, port: int, count: int) -> Counter[str]:
    return Counter(ask(address, port) for _ in range(count))


def service(
    name: str,
    endpoints: Sequence[Backend],
    *,
    node_port: int | None = None,
    port: int = 80,
    namespace: str = "default",
) -> ServiceRule:
    return ServiceRule(
        namespace=namespace,
        name=name,
        type="NodePort" if node_port else "ClusterIP",
        ports=[
            ServicePortRule(
                port=port, node_port=node_port, endpoints=[b.endpoint for b in endpoints]
            )
        ],
    )


def rule_set(*services: ServiceRule) -> ServiceRuleSet:
    return ServiceRuleSet.from_protocol(list(services))


@dataclass
class Net:
    """Addresses of this test: two "nodes" on the loopback, a NodePort, unique owner names."""

    node_a: str
    node_b: str
    node_port: int
    table: str
    prefix: str


def kernel_leftovers(net: Net) -> list[str]:
    """Lines of the live rule sets that belong to this test's table or chains."""
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    found = [line for line in nft.splitlines() if net.table in line]
    if shutil.which("iptables-save"):
        ipt = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        found += [line for line in ipt.splitlines() if net.prefix in line]
    return found


def in_netns(netns: str, work: Callable[[], Any]) -> Any:
    """Run ``work`` on a fresh thread that joined the named network namespace."""
    result: list[Any] = []

    def target() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        with open(f"/run/netns/{netns}", "rb") as handle:
            if libc.setns(handle.fileno(), 0x40000000) != 0:
                result.append(OSError(ctypes.get_errno(), "setns"))
                return
        try:
            result.append(work())
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    if isinstance(result[0], Exception):
        raise result[0]
    return result[0]
