"""Benchmark: how fast the node agent converges pods, against plain sequential Docker SDK calls.

Runs a real ``capstan-agent serve`` (its own node name, state directory and loopback bind
address) against the local Docker Engine and measures, for 1, 10 and 50 pods (one httpd
container plus the sandbox each, a published port):

* from empty: seconds from sending the ``sync`` to every pod Ready in the agent's status;
* from a one-image change (the pods' image tag changes, as a Deployment rollout would):
  seconds until every pod is Ready again on the new image;
* the same work done as sequential plain Docker SDK calls (sandbox ``run`` + app ``run`` per
  pod; ``stop``/``remove`` + ``run`` for the change), with the same container options;
* the agent's RSS and CPU while idle with 50 pods (read from /proc).

Usage: ``python bench/agent_bench.py [--sizes 1,10,50]`` with the project's Python, from the
repository root. Removes every container it made.
Last line: ``{"converge_50_s": X, "baseline_50_s": Y, "ratio_50": X/Y, "idle_rss_mb": Z}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import docker

ROOT = Path(__file__).resolve().parents[1]
# The console script installed beside this interpreter (the project virtualenv's bin/).
AGENT = Path(sys.executable).parent / "capstan-agent"
IMAGE = "capstan.local/busybox:1"
IMAGE_V2 = "capstan.local/busybox:bench-v2"
PAUSE = "capstan.local/pause:1"
LABEL = "io.capstan.managed-by"
BASELINE_LABEL = "io.capstan.bench-baseline"


def pod(i: int, image: str, *, round_: int) -> dict[str, Any]:
    # A fresh uid per round: pods of an earlier round may still be stopping.
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"bench-{i}",
            "namespace": "default",
            "uid": f"bench-uid-{round_}-{i}",
        },
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                    "ports": [{"containerPort": 8080}],
                }
            ],
        },
    }


class StatusClient:
    """Reads the agent's status stream; answers "are these pods all Ready on this image?"."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.latest: dict[str, Any] = {}
        self.acks: dict[str, dict[str, Any]] = {}
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.sock.makefile("rb"):
            message = json.loads(line)
            with self.cond:
                if message["type"] == "status":
                    self.latest = message
                elif message["type"] == "ack":
                    self.acks[message.get("inReplyTo", "")] = message
                self.cond.notify_all()

    def sync(self, pods: list[dict[str, Any]], generation: int) -> None:
        msg_id = uuid.uuid4().hex
        line = {"v": 1, "type": "sync", "id": msg_id, "generation": generation, "pods": pods}
        self.sock.sendall(json.dumps(line).encode() + b"\n")
        with self.cond:
            self.cond.wait_for(lambda: msg_id in self.acks, timeout=30)

    def _all_ready(self, names: set[str], image: str) -> bool:
        reports = {p["name"]: p["status"] for p in self.latest.get("pods", [])}
        if set(reports) != names:
            return False
        for status in reports.values():
            ready = any(
                c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
            )
            if not ready or status["containerStatuses"][0]["image"] != image:
                return False
        return True

    def wait_ready(self, names: set[str], image: str, timeout: float = 300) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self._all_ready(names, image), timeout=timeout):
                raise RuntimeError(f"pods not ready within {timeout}s")

    def wait_empty(self, timeout: float = 300) -> None:
        with self.cond:
            self.cond.wait_for(lambda: not self.latest.get("pods"), timeout=timeout)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_no_containers(client: docker.DockerClient, node: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while client.api.containers(all=True, filters={"label": f"{LABEL}={node}"}):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the agent did not remove its containers within {timeout}s")
        time.sleep(0.2)


def baseline_run(client: docker.DockerClient, n: int, bind: str) -> tuple[float, float]:
    """Sequential plain SDK: the same containers with the same options, one call at a time."""
    common = {
        "detach": True,
        "security_opt": ["no-new-privileges"],
        "init": True,
        "labels": {BASELINE_LABEL: "1"},
    }
    started = time.perf_counter()
    sandboxes = []
    apps = []
    for i in range(n):
        sandbox = client.containers.run(
            PAUSE,
            name=f"bench-base-sb-{i}",
            pids_limit=16,
            ports={"8080/tcp": (bind, None)},
            **common,
        )
        sandboxes.append(sandbox)
        apps.append(
            client.containers.run(
                IMAGE,
                ["httpd", "-f", "-p", "8080", "-h", "/www"],
                name=f"bench-base-app-{i}-0",
                network_mode=f"container:{sandbox.id}",
                pids_limit=1024,
                **common,
            )
        )
    converge = time.perf_counter() - started
    started = time.perf_counter()
    for i, (sandbox, app) in enumerate(zip(sandboxes, apps, strict=True)):
        app.stop(timeout=10)
        app.remove()
        apps[i] = client.containers.run(
            IMAGE_V2,
            ["httpd", "-f", "-p", "8080", "-h", "/www"],
            name=f"bench-base-app-{i}-1",
            network_mode=f"container:{sandbox.id}",
            pids_limit=1024,
            **common,
        )
    change = time.perf_counter() - started
    for container in apps + sandboxes:
        container.remove(force=True)
    return converge, change


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    client = docker.from_env()
    client.images.get(IMAGE).tag("capstan.local/busybox", "bench-v2")
    node = f"bench-{uuid.uuid4().hex[:8]}"
    bind = f"127.0.{random.randint(1, 250)}.{random.randint(2, 250)}"
    work = Path(tempfile.mkdtemp(prefix="cap-bench-"))
    sock = work / "agent.sock"
    log = open(work / "agent.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            str(AGENT),
            "serve",
            "--state-dir",
            str(work / "state"),
            "--socket",
            str(sock),
            "--node-name",
            node,
            "--bind-address",
            bind,
            "--log-level",
            "WARNING",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    rows: list[tuple[int, float, float, float, float]] = []
    idle_rss = idle_cpu = 0.0
    agent_cpu: dict[int, float] = {}
    generation = 0
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"agent did not start; see {work / 'agent.log'}")
            time.sleep(0.05)
        status = StatusClient(sock)
        # Build the sandbox image once, outside the timings (both sides use it).
        generation += 1
        status.sync([pod(0, IMAGE, round_=0)], generation)
        status.wait_ready({"bench-0"}, IMAGE)
        generation += 1
        status.sync([], generation)
        status.wait_empty()
        wait_no_containers(client, node)
        for n in sizes:
            names = {f"bench-{i}" for i in range(n)}
            generation += 1
            cpu_before = proc_cpu_seconds(proc.pid)
            started = time.perf_counter()
            status.sync([pod(i, IMAGE, round_=n) for i in range(n)], generation)
            status.wait_ready(names, IMAGE)
            converge = time.perf_counter() - started
            agent_cpu[n] = proc_cpu_seconds(proc.pid) - cpu_before
            if n == max(sizes):
                time.sleep(5)  # let the last passes and probes settle
                cpu0, t0 = proc_cpu_seconds(proc.pid), time.perf_counter()
                time.sleep(10)
                idle_cpu = (proc_cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - t0) * 100
                idle_rss = proc_rss_mb(proc.pid)
            generation += 1
            started = time.perf_counter()
            status.sync([pod(i, IMAGE_V2, round_=n) for i in range(n)], generation)
            status.wait_ready(names, IMAGE_V2)
            change = time.perf_counter() - started
            generation += 1
            status.sync([], generation)
            status.wait_empty()
            wait_no_containers(client, node)
            base_converge, base_change = baseline_run(client, n, bind)
            rows.append((n, converge, base_converge, change, base_change))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        for label in (f"{LABEL}={node}", BASELINE_LABEL):
            for listed in client.api.containers(all=True, filters={"label": label}):
                client.api.remove_container(listed["Id"], force=True)
        client.images.remove("capstan.local/busybox:bench-v2")
        client.close()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"{'pods':>5} {'agent empty→ready s':>20} {'baseline s':>11} {'ratio':>6} "
        f"{'agent image change s':>21} {'baseline s':>11} {'ratio':>6}"
    )
    for n, converge, base_converge, change, base_change in rows:
        print(
            f"{n:>5} {converge:>20.2f} {base_converge:>11.2f} {converge / base_converge:>6.2f} "
            f"{change:>21.2f} {base_change:>11.2f} {change / base_change:>6.2f}"
        )
    for n, seconds in agent_cpu.items():
        print(f"agent CPU while converging {n} pods from empty: {seconds:.2f} s")
    print(f"idle with {max(sizes)} pods: RSS {idle_rss:.1f} MB, CPU {idle_cpu:.2f}% of one core")
    last = next(r for r in rows if r[0] == max(sizes))
    print(
        json.dumps(
            {
                "converge_50_s": round(last[1], 3),
                "baseline_50_s": round(last[2], 3),
                "ratio_50": round(last[1] / last[2], 3),
                "idle_rss_mb": round(idle_rss, 1),
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
