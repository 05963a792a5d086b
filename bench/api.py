"""HTTP API benchmark: GET, LIST (1,000 pods) and PUT latency and throughput with 1 and 32
concurrent clients, and watch fan-out to 100 watchers, against a live uvicorn on loopback.

Run from the repository root: ``python bench/api.py [--insecure-http] [--objects N]``. HTTPS by
default, as ``capstan up`` serves (its own CA; the clients verify against it).
The server runs in its own process (``serve()`` with an embedded SQLite store in a temp dir,
the same code ``capstan up`` runs), so client and server do not share a GIL; the clients are
httpx on asyncio in this process, each with its own keep-alive connection.

- get      GET one pod by name (random among the seeded ones)
- list     GET the namespace's pods (the whole list: --objects items)
- put      PUT a ConfigMap each client owns, with the resourceVersion it got back last
           (a real durable write: validation, compare-and-swap txn, fsync)
- watch    100 watchers on one namespace; a writer POSTs 50 ConfigMaps one at a time; the
           latency is from just before the POST to each watcher reading the event.

Prints a table and as its last line one JSON object:
{"put_p99_ms_32": X, "list_p99_ms_32": Y, "watch_p99_ms": Z, ...}. Never fails on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

# The project's packages come from the repository root (run as `python bench/api.py`).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WATCHERS = 100
WATCH_WRITES = 50
NAMESPACE = "bench"


def _pod(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"pod-{i:04d}",
            "namespace": NAMESPACE,
            "labels": {"app": "bench", "shard": str(i % 10)},
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "capstan.local/busybox:1",
                    "command": ["httpd", "-f", "-p", "8080"],
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                    "env": [{"name": "MODE", "value": "bench"}],
                }
            ]
        },
    }


def serve_forever(directory: Path, objects: int, tls: bool) -> None:
    """The server process: seed the store, serve, print READY, exit when stdin closes."""
    from concurrent.futures import ThreadPoolExecutor

    from reconciler.api import Api
    from reconciler.api.server import ServeOptions, serve
    from reconciler.store import open_store
    from schemas import Namespace, ObjectMeta

    store = open_store(f"sqlite://{directory}/state.db")
    api = Api(store)
    api.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
    api.create(Namespace(metadata=ObjectMeta(name="watch")))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: api.create(_pod(i)), range(objects)))
    server = serve(
        api,
        store,
        options=ServeOptions(
            state_dir=directory / "state", port=0, insecure_http=not tls, log_level="error"
        ),
    )
    ca = str(server.state.tls.ca_cert) if server.state.tls else ""
    print(f"READY {server.url} {server.state.admin_token} {ca}", flush=True)
    sys.stdin.read()
    server.stop()
    store.close()


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), to report CPU per request: on a busy
    machine wall-clock latency says more about the neighbours than about the server."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client (Content-Length bodies only) for GET/LIST/PUT.

    WHY not httpx here: clients and server share two cores, and httpx's pure-Python
    protocol handling would cost the clients more CPU than the server spends, so the figures
    would measure the client. Watches (chunked streams) still use httpx."""

    def __init__(self, url: str, token: str, verify: ssl.SSLContext | bool) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 443
        self.ssl = verify if isinstance(verify, ssl.SSLContext) else None
        self.auth = f"Authorization: Bearer {token}\r\nHost: {self.host}\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawHttp:
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl, limit=1 << 20
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.writer is not None
        self.writer.close()

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self.auth
        if body:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        self.writer.write(head + b"\r\n" + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        if status >= 400:
            raise RuntimeError(f"{method} {path}: {status} {payload[:200]!r}")
        return status, payload


class Bench:
    def __init__(self, url: str, token: str, ca: str, objects: int, server_pid: int) -> None:
        self.server_pid = server_pid
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else False
        self.objects = objects

    def raw(self) -> RawHttp:
        return RawHttp(self.url, self.headers["Authorization"].split(" ", 1)[1], self.verify)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            headers=self.headers,
            verify=self.verify,
            timeout=60,
            limits=httpx.Limits(max_connections=1),
        )

    async def _run(self, clients: int, per_client: int, make_op: Any) -> dict[str, float]:
        latencies: list[float] = []
        ready = 0
        go = asyncio.Event()

        async def worker(index: int) -> None:
            nonlocal ready
            async with self.raw() as http:
                op = await make_op(http, index)
                # Every client finishes its setup (connect, first read) before anyone is
                # timed, so setup work never lands inside another client's measurement.
                ready += 1
                if ready == clients:
                    go.set()
                await go.wait()
                for _ in range(per_client):
                    started = time.perf_counter()
                    await op()
                    latencies.append(time.perf_counter() - started)

        marks: dict[str, float] = {}

        async def clock() -> None:
            await go.wait()
            marks["started"] = time.perf_counter()
            marks["cpu"] = _cpu_seconds(self.server_pid)

        await asyncio.gather(clock(), *(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - marks["started"]
        cpu = _cpu_seconds(self.server_pid) - marks["cpu"]
        return {
            "p50_ms": _percentile(latencies, 0.50) * 1000,
            "p99_ms": _percentile(latencies, 0.99) * 1000,
            "req_s": len(latencies) / elapsed,
            "n": len(latencies),
            "cpu_ms": cpu * 1000 / max(1, len(latencies)),
        }

    async def get_op(self, http: RawHttp, index: int) -> Any:
        rng = random.Random(index)

        async def op() -> None:
            name = f"pod-{rng.randrange(self.objects):04d}"
            await http.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")

        return op

    async def list_op(self, http: RawHttp, index: int) -> Any:
        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        _, first = await http.request("GET", path)
        assert len(json.loads(first)["items"]) == self.objects

        async def op() -> None:
            # Read, don't parse: JSON-decoding 600 KB here would take the CPU the server
            # under test needs.
            await http.request("GET", path)

        return op

    async def put_op(self, http: RawHttp, index: int) -> Any:
        path = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
        name = f"put-{index}-{random.randrange(1 << 30)}"
        _, created = await http.request(
            "POST", path, json.dumps({"metadata": {"name": name}, "data": {"n": "0"}}).encode()
        )
        state = {"obj": json.loads(created), "n": 0}

        async def op() -> None:
            state["n"] += 1
            obj = dict(state["obj"], data={"n": str(state["n"])})
            _, body = await http.request("PUT", f"{path}/{name}", json.dumps(obj).encode())
            state["obj"] = json.loads(body)

        return op

    async def watch_fanout(self) -> dict[str, float]:
        latencies: list[float] = []
        sent: dict[str, float] = {}
        ready = asyncio.Event()
        connected = 0
        path = "/api/v1/namespaces/watch/configmaps"
        async with self.client() as http:
            revision = (await http.get(path)).json()["metadata"]["resourceVersion"]

        async def watcher() -> None:
            nonlocal connected
            async with (
                self.client() as http,
                http.stream(
                    "GET",
                    path,
                    params={"watch": "true", "resourceVersion": revision, "timeoutSeconds": "120"},
                ) as response,
            ):
                connected += 1
                if connected == WATCHERS:
                    ready.set()
                seen = 0
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    now = time.perf_counter()
                    name = json.loads(line)["object"]["metadata"]["name"]
                    latencies.append(now - sent[name])
                    seen += 1
                    if seen == WATCH_WRITES:
                        return

        tasks = [asyncio.create_task(watcher()) for _ in range(WATCHERS)]
        await asyncio.wait_for(ready.wait(), 60)
        await asyncio.sleep(0.5)  # let every watch's store poll start
        async with self.client() as http:
            for i in range(WATCH_WRITES):
                name = f"w-{i}"
                sent[name] = time.perf_counter()
                response = await http.post(path, json={"metadata": {"name": name}})
                response.raise_for_status()
                await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        return {
            "p50_ms": _percentile(latencies, 0.50) * 1000,
            "p99_ms": _percentile(latencies, 0.99) * 1000,
            "n": len(latencies),
        }


async def run(bench: Bench, *, scale: float) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    plans = [
        ("get", bench.get_op, 400, 40),
        ("list", bench.list_op, 40, 10),
        ("put", bench.put_op, 300, 30),
    ]
    for name, make_op, single, each in plans:
        for clients, per_client in ((1, single), (32, each)):
            count = max(1, int(per_client * scale))
            results[f"{name}_{clients}"] = await bench._run(clients, count, make_op)
    results["watch"] = await bench.watch_fanout()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000, help="pods to seed and LIST")
    parser.add_argument(
        "--insecure-http",
        action="store_true",
        help="serve plain HTTP on loopback (`capstan up --insecure-http`) instead of HTTPS",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply request counts")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve_forever(args.serve, args.objects, not args.insecure_http)
        return
    with tempfile.TemporaryDirectory(prefix="capstan-bench-api-") as tmp:
        command = [sys.executable, __file__, "--serve", tmp, "--objects", str(args.objects)]
        if args.insecure_http:
            command.append("--insecure-http")
        server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            line = server.stdout.readline().split()
            if not line or line[0] != "READY":
                raise SystemExit("the server process did not start")
            url, token, ca = line[1], line[2], line[3] if len(line) > 3 else ""
            bench = Bench(url, token, ca, args.objects, server.pid)
            results = asyncio.run(run(bench, scale=args.scale))
        finally:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(timeout=30)
    print(
        f"API server bench: {args.objects} pods, {'HTTP' if args.insecure_http else 'HTTPS'} on "
        f"loopback, {os.cpu_count()} CPUs shared by server and clients, load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"{'op':<10}{'clients':>8}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}"
        f"{'server CPU ms/req':>19}"
    )
    for key, figures in results.items():
        if key == "watch":
            continue
        op, clients = key.rsplit("_", 1)
        print(
            f"{op:<10}{clients:>8}{figures['n']:>7.0f}{figures['p50_ms']:>10.2f}"
            f"{figures['p99_ms']:>10.2f}{figures['req_s']:>10.0f}{figures['cpu_ms']:>19.2f}"
        )
    watch = results["watch"]
    print(
        f"{'watch':<10}{WATCHERS:>8}{watch['n']:>7.0f}{watch['p50_ms']:>10.2f}"
        f"{watch['p99_ms']:>10.2f}{'':>10}  ({WATCHERS} watchers x {WATCH_WRITES} events)"
    )
    summary = {
        "put_p99_ms_32": round(results["put_32"]["p99_ms"], 2),
        "list_p99_ms_32": round(results["list_32"]["p99_ms"], 2),
        "watch_p99_ms": round(watch["p99_ms"], 2),
        "get_p99_ms_32": round(results["get_32"]["p99_ms"], 2),
        "put_req_s_32": round(results["put_32"]["req_s"], 1),
        "list_req_s_32": round(results["list_32"]["req_s"], 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
