"""Benchmark: the node proxy's data planes against direct access, and rule programming time.

For each mode this machine supports (a kernel mode when the process may program nftables or
iptables, and userspace always):

* requests/s and p99 latency of HTTP/1.0 requests (a new TCP connection each, as NodePort
  traffic from outside mostly is) through a NodePort on a loopback node address, against the
  same backend reached directly on its host port, in the same run; the ratio is via/direct;
* the time of ``Proxy.apply`` for 10, 100 and 1,000 Services (a NodePort and 3 endpoints
  each) from empty, and for a change of one endpoint in the largest set.

The backend is a small asyncio HTTP responder and the client a bounded asyncio loop
(``--concurrency`` requests in flight), each in its own process so neither competes with the
userspace proxy for the GIL; the proxy runs in this process, as it does in the agent.

Usage: ``.venv/bin/python bench/proxy.py [--seconds 6] [--rounds 24] [--concurrency 16]``.
Leaves no rule,
listener or process behind. Last line:
``{"kernel_ratio": X or null, "userspace_ratio": Y, "program_1000_s": Z}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.proxy import Proxy, ProxyMode, ServiceRuleSet, detect_mode  # noqa: E402
from schemas.protocol import Endpoint, ServicePortRule, ServiceRule  # noqa: E402

RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"


# --- child processes -----------------------------------------------------------------------


async def _backend(address: str, port: int) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # A client that leaves before its response is not an error for a backend.
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(RESPONSE)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, address, port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def _client(address: str, port: int, concurrency: int, source: str) -> None:
    """Serve rounds: for each line "SECONDS" on stdin, load the target and print the result."""
    request = f"GET / HTTP/1.0\r\nHost: {address}\r\n\r\n".encode()
    loop = asyncio.get_running_loop()

    async def one_round(seconds: float) -> dict[str, object]:
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    reader, writer = await asyncio.open_connection(
                        address, port, local_addr=(source, 0)
                    )
                    writer.write(request)
                    body = await reader.read()
                    writer.close()
                except OSError:
                    errors += 1
                    continue
                if body.startswith(b"HTTP/1.0 200"):
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        return {
            "elapsed": elapsed,
            "errors": errors,
            "latencies_ms": [round(x * 1000, 3) for x in latencies],
        }

    while line := await loop.run_in_executor(None, sys.stdin.readline):
        print(json.dumps(await one_round(float(line))), flush=True)


# --- the benchmark -------------------------------------------------------------------------


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Sample:
    """Requests through one target, pooled over the rounds of a run."""

    elapsed: float = 0.0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.elapsed if self.elapsed else 0.0

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, int(len(ordered) * 0.99) - 1)] if ordered else float("nan")


class _Client:
    """A load-generating process kept alive across rounds (no start-up cost per round).

    Each client has a source address of its own: the 4-tuples of one target never meet the
    TIME_WAIT and conntrack entries of another (which would cost SYN retransmits that have
    nothing to do with the proxy).
    """

    def __init__(self, address: str, port: int, *, concurrency: int, source: str) -> None:
        self.sample = _Sample()
        self._process = subprocess.Popen(
            [sys.executable, __file__, "_client", address, str(port), str(concurrency), source],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, seconds: float) -> None:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(f"{seconds}\n")
        self._process.stdin.flush()
        result = json.loads(self._process.stdout.readline())
        self.sample.elapsed += result["elapsed"]
        self.sample.errors += result["errors"]
        self.sample.latencies_ms += result["latencies_ms"]

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _services(
    count: int, *, endpoints: list[Endpoint], last: list[Endpoint] | None = None
) -> ServiceRuleSet:
    """``count`` NodePort Services; the last one's endpoints replaced by ``last`` if given."""
    return ServiceRuleSet.from_protocol(
        [
            ServiceRule(
                namespace="bench",
                name=f"svc-{i}",
                type="NodePort",
                ports=[
                    ServicePortRule(
                        port=80,
                        node_port=30000 + i,
                        endpoints=last if last is not None and i == count - 1 else endpoints,
                    )
                ],
            )
            for i in range(count)
        ]
    )


def _programming(
    mode: ProxyMode, node: str, table: str, prefix: str
) -> list[tuple[int, float, float]]:
    rows = []
    endpoints = [Endpoint(address="127.0.0.2", port=40000 + j) for j in range(3)]
    moved = [*endpoints[:2], Endpoint(address="127.0.0.2", port=40009)]
    for count in (10, 100, 1000):
        rules = _services(count, endpoints=endpoints)
        changed = _services(count, endpoints=endpoints, last=moved)
        with Proxy(node_addresses=[node], mode=mode, table=table, chain_prefix=prefix) as proxy:
            try:
                start = time.perf_counter()
                proxy.apply(rules)
                fresh = time.perf_counter() - start
                start = time.perf_counter()
                proxy.apply(changed)
                change = time.perf_counter() - start
            finally:
                proxy.cleanup()
        rows.append((count, fresh, change))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per target and mode")
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=16)
    options = parser.parse_args()

    third = random.randint(100, 250)
    backend_addr, node_addr = f"127.0.{third}.21", f"127.0.{third}.22"
    sources = (f"127.0.{third}.{100 + i}" for i in itertools.count())
    tag = uuid.uuid4().hex[:6]
    table, prefix = f"capstan_b{tag}", f"CAPB{tag.upper()}"
    kernel_mode = detect_mode()
    modes: list[ProxyMode] = ([kernel_mode] if kernel_mode != "userspace" else []) + ["userspace"]

    load_before = os.getloadavg()[0]
    backend_port = _free_port(backend_addr)
    backend = subprocess.Popen(
        [sys.executable, __file__, "_backend", backend_addr, str(backend_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    rows: list[tuple[str, _Sample, _Sample]] = []
    program: dict[str, list[tuple[int, float, float]]] = {}
    try:
        assert backend.stdout is not None
        backend.stdout.readline()  # "ready"
        for mode in modes:
            node_port = random.randint(30000, 32767)
            rules = ServiceRuleSet.from_protocol(
                [
                    ServiceRule(
                        namespace="bench",
                        name="web",
                        type="NodePort",
                        ports=[
                            ServicePortRule(
                                port=80,
                                node_port=node_port,
                                endpoints=[Endpoint(address=backend_addr, port=backend_port)],
                            )
                        ],
                    )
                ]
            )
            with Proxy(
                node_addresses=[node_addr], mode=mode, table=table, chain_prefix=prefix
            ) as proxy:
                try:
                    proxy.apply(rules)
                    direct = _Client(
                        backend_addr,
                        backend_port,
                        concurrency=options.concurrency,
                        source=next(sources),
                    )
                    via = _Client(
                        node_addr, node_port, concurrency=options.concurrency, source=next(sources)
                    )
                    try:
                        # Interleaved short rounds: load from other processes on the machine
                        # hits both targets alike instead of skewing one of them.
                        for _ in range(options.rounds):
                            direct.run(options.seconds / options.rounds)
                            via.run(options.seconds / options.rounds)
                    finally:
                        direct.close()
                        via.close()
                finally:
                    proxy.cleanup()
            rows.append((mode, direct.sample, via.sample))
        for mode in modes:
            program[mode] = _programming(mode, node_addr, table, prefix)
    finally:
        backend.terminate()
        backend.wait(10)

    print(
        f"load average (1 min) on {os.cpu_count()} CPUs: {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; other processes share these CPUs and skew both targets"
    )
    print(
        f"{'mode':<10} {'direct req/s':>13} {'p99 ms':>7} {'NodePort req/s':>15} {'p99 ms':>7} "
        f"{'ratio':>6} {'errors':>7}"
    )
    ratios: dict[str, float] = {}
    for name, plain, proxied in rows:
        ratio = proxied.rps / plain.rps
        ratios[name] = ratio
        print(
            f"{name:<10} {plain.rps:>13.0f} {plain.p99_ms:>7.2f} {proxied.rps:>15.0f} "
            f"{proxied.p99_ms:>7.2f} {ratio:>6.2f} {proxied.errors + plain.errors:>7}"
        )
    print()
    print(f"{'mode':<10} {'services':>9} {'apply from empty s':>19} {'change one endpoint s':>22}")
    for name, entries in program.items():
        for count, fresh, change in entries:
            print(f"{name:<10} {count:>9} {fresh:>19.3f} {change:>22.3f}")
    programmed = program[modes[0]]
    print(
        json.dumps(
            {
                "kernel_ratio": round(ratios[kernel_mode], 3) if kernel_mode in ratios else None,
                "userspace_ratio": round(ratios["userspace"], 3),
                "program_1000_s": round(next(f for c, f, _ in programmed if c == 1000), 3),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_backend":
        asyncio.run(_backend(sys.argv[2], int(sys.argv[3])))
    elif len(sys.argv) > 1 and sys.argv[1] == "_client":
        asyncio.run(_client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]))
    else:
        main()
