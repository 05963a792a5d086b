"""What one node's agent spends per sync when the fleet is large (the nodes' side of fleet.py).

Runs one real ``capstan-agent serve --runtime hollow --proxy-mode userspace`` and talks the
wire protocol to its socket as the control plane does, with what a node of a ``--nodes``
fleet gets from ``bench/fleet.py``'s workload: 50 pods (10 Deployments' pods, one shared
ConfigMap mounted) and 10 Services whose rules list 5 endpoints per node of the fleet. Reads
the agent's CPU time from /proc around each phase:

- **deploy**: the first sync → all 50 pods Ready (hollow start delay 0.5 s);
- **idle**: the agent's CPU, % of one core, over 10 s with nothing changing;
- **rules**: a sync carrying only Service rules (``podsUnchanged``), every rule changed
  (endpoint churn during a fleet-wide rollout), CPU ms per sync;
- **pods**: a sync resending the same 50 pods (``servicesUnchanged``), CPU ms per sync;
- **config**: a sync changing only the ConfigMap (both flags), CPU ms per sync;
- **rollout**: the pods replaced 5 at a time, each step with new rules → all Ready, seconds
  and the agent's CPU seconds.

Usage, from the repository root: ``.venv/bin/python bench/agent_sync.py [--nodes 100]``.
Last line: ``{"nodes": N, "rules_sync_ms": …, "pods_sync_ms": …, "config_sync_ms": …, …}``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

AGENT = Path(sys.executable).parent / "capstan-agent"
PODS = 50
SERVICES = 10
_TICK = os.sysconf("SC_CLK_TCK")


def pod(index: int, version: str) -> dict[str, Any]:
    app = f"app-{index % SERVICES}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{app}-{version}-{index}",
            "namespace": "fleet",
            "labels": {"app": app},
            "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{version}-{index}")),
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": app, "uid": "rs-uid"}
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "capstan.local/busybox:1",
                    "command": ["sleep", "3600"],
                    "ports": [{"containerPort": 8080}],
                    "env": [{"name": "VERSION", "value": version}],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                    "volumeMounts": [{"name": "config", "mountPath": "/config"}],
                }
            ],
            "volumes": [{"name": "config", "configMap": {"name": "fleet-config"}}],
            "terminationGracePeriodSeconds": 1,
            "nodeName": "bench",
        },
    }


def rules(nodes: int, seed: int) -> list[dict[str, Any]]:
    endpoints = [
        {"address": f"127.0.{10 + i // 200}.{2 + i % 200}", "port": 32768 + (i + seed) % 50}
        for i in range(nodes * PODS // SERVICES)
    ]
    return [
        {
            "namespace": "fleet",
            "name": f"app-{s}",
            "clusterIP": f"10.96.0.{10 + s}",
            "ports": [{"port": 80, "endpoints": endpoints}],
        }
        for s in range(SERVICES)
    ]


def config_maps(round_no: int) -> list[dict[str, Any]]:
    meta = {"name": "fleet-config", "namespace": "fleet"}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"r": f"{round_no}"}}
    ]


def cpu_s(pid: int) -> float:
    return sum(cpu_split_s(pid))


def cpu_split_s(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


class Peer:
    """The control plane's side of the socket: sends syncs, keeps the pods' last reports."""

    def __init__(self, path: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(path))
        self._cond = threading.Condition()
        self._acked: set[str] = set()
        self._reports: dict[str, dict[str, Any]] = {}
        self._generation = 0
        threading.Thread(target=self._read, daemon=True).start()
        features = ["statusDeltas", "servicesUnchanged", "podsUnchanged"]
        self._send({"type": "hello", "role": "reconciler", "capabilities": features})

    def _send(self, message: dict[str, Any]) -> None:
        self._sock.sendall(json.dumps({"v": 1, **message}).encode() + b"\n")

    def _read(self) -> None:
        for line in self._sock.makefile("rb"):
            message = json.loads(line)
            with self._cond:
                if message["type"] == "ack":
                    self._acked.add(message.get("inReplyTo"))
                elif message["type"] == "status":
                    if message.get("complete", True):
                        self._reports = {}
                    for report in message.get("pods", []):
                        self._reports[report["uid"]] = report
                    for uid in message.get("removed", []):
                        self._reports.pop(uid, None)
                self._cond.notify_all()

    def sync(self, **parts: Any) -> float:
        """Send a sync and wait for its ack; the seconds from sending to the ack."""
        started = time.monotonic()
        self._generation += 1
        msg_id = uuid.uuid4().hex
        self._send({"type": "sync", "id": msg_id, "generation": self._generation, **parts})
        with self._cond:
            self._cond.wait_for(lambda: msg_id in self._acked)
        return time.monotonic() - started

    def wait_ready(self, version: str) -> float:
        """Seconds until every pod of ``version`` reports Ready."""
        started = time.monotonic()

        def ready() -> bool:
            return (
                sum(
                    1
                    for r in self._reports.values()
                    if f"-{version}-" in r["name"]
                    and any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for c in r["status"].get("conditions", [])
                    )
                )
                >= PODS
            )

        with self._cond:
            self._cond.wait_for(ready)
        return time.monotonic() - started


def wait_files(state: Path, round_no: int) -> None:
    """Until every pod's file of the ConfigMap holds ``round_no`` (the kubelet's refresh)."""
    want = str(round_no).encode()
    pending = {p / "volumes" / "config" / "r" for p in (state / "pods").iterdir()}
    while pending:
        pending = {f for f in pending if f.read_bytes() != want}
        if pending:
            time.sleep(0.002)


def _profile(py_spy: str, pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` (raw, collapsed stacks, with idle) into ``out``."""
    recorder = subprocess.Popen(
        [
            *(py_spy, "record", "--pid", str(pid), "--rate", "500", "--gil", "--format", "raw"),
            *("--nonblocking", "--output", str(out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)
    return recorder


def _keep(path: Path) -> Path:
    kept = Path(tempfile.gettempdir()) / f"agent-sync-{path.name}"
    kept.write_bytes(path.read_bytes())
    return kept


def start_agent(work: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A real ``capstan-agent serve`` on the hollow runtime under ``work``, and its socket
    once it listens (the caller terminates it)."""
    sock = work / "agent.sock"
    agent = subprocess.Popen(
        [
            *(str(AGENT), "serve", "--state-dir", str(work / "state"), "--socket", str(sock)),
            *("--node-name", "bench", "--bind-address", "127.0.10.2", "--runtime", "hollow"),
            *("--proxy-mode", "userspace", "--ingress-http-port", "0"),
            *("--ingress-https-port", "0", "--log-level", "WARNING"),
        ]
    )
    while not sock.exists():
        if agent.poll() is not None:
            raise RuntimeError("the agent exited")
        time.sleep(0.05)
    return agent, sock


def measure(nodes: int, work: Path, py_spy: str | None) -> dict[str, Any]:
    agent, sock = start_agent(work)
    try:
        peer = Peer(sock)
        result: dict[str, Any] = {}
        before = cpu_s(agent.pid)
        peer.sync(
            pods=[pod(i, "v0") for i in range(PODS)],
            services=rules(nodes, 0),
            configMaps=config_maps(0),
        )
        result["deploy_s"] = peer.wait_ready("v0")
        result["deploy_cpu_s"] = cpu_s(agent.pid) - before
        time.sleep(2)
        before = cpu_s(agent.pid)
        time.sleep(10)
        result["idle_cpu_pct"] = 10 * (cpu_s(agent.pid) - before)
        for name, count, parts in (
            ("rules", 20, lambda k: {"podsUnchanged": True, "services": rules(nodes, k + 1)}),
            (
                "pods",
                20,
                lambda k: {"servicesUnchanged": True, "pods": [pod(i, "v0") for i in range(PODS)]},
            ),
            ("config", 40, lambda k: {"servicesUnchanged": True, "podsUnchanged": True}),
        ):
            profiler = (
                _profile(py_spy, agent.pid, work / "config.txt")
                if name == "config" and py_spy
                else None
            )
            before = cpu_s(agent.pid)
            user, system = cpu_split_s(agent.pid)
            acks = []
            for k in range(count):
                acks.append(
                    peer.sync(configMaps=config_maps(k + 1 if name == "config" else 0), **parts(k))
                )
                if name == "config":
                    # What follows the ack (the pods' volumes rewritten) is part of the sync's
                    # cost: wait for it before the next, as the fleet's nodes get one a commit.
                    wait_files(work / "state", k + 1)
            result[f"{name}_sync_ms"] = 1000 * (cpu_s(agent.pid) - before) / count
            result[f"{name}_ack_ms"] = 1000 * statistics.median(acks)
            after = cpu_split_s(agent.pid)
            result[f"{name}_user_ms"] = 1000 * (after[0] - user) / count
            result[f"{name}_sys_ms"] = 1000 * (after[1] - system) / count
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=60)
                result["profile"] = str(_keep(work / "config.txt"))
        before, started = cpu_s(agent.pid), time.monotonic()
        for step in range(0, PODS + 1, 5):
            pods = [pod(i, "v1" if i < step else "v0") for i in range(PODS)]
            peer.sync(pods=pods, services=rules(nodes, 100 + step), configMaps=config_maps(0))
            time.sleep(0.3)
        peer.wait_ready("v1")
        result["rollout_s"] = time.monotonic() - started
        result["rollout_cpu_s"] = cpu_s(agent.pid) - before
        return result
    finally:
        agent.terminate()
        agent.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100, help="fleet size the syncs stand for")
    parser.add_argument(
        "--py-spy", metavar="PATH", help="record the agent through the config syncs with py-spy"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agent-sync-") as tmp:
        result = measure(args.nodes, Path(tmp), args.py_spy)
    header = (
        f"{'nodes':>5} {'deploy s':>8} {'deploy cpu s':>12} {'idle %':>6} {'rules ms':>8} "
        f"{'pods ms':>7} {'config ms':>9} {'config ack ms':>13} {'rollout s':>9} "
        f"{'rollout cpu s':>13}"
    )
    print(header)
    print(
        f"{args.nodes:>5} {result['deploy_s']:>8.1f} {result['deploy_cpu_s']:>12.2f} "
        f"{result['idle_cpu_pct']:>6.1f} {result['rules_sync_ms']:>8.1f} "
        f"{result['pods_sync_ms']:>7.1f} {result['config_sync_ms']:>9.1f} "
        f"{result['config_ack_ms']:>13.1f} "
        f"{result['rollout_s']:>9.1f} {result['rollout_cpu_s']:>13.2f}"
    )
    if "profile" in result:
        print(f"py-spy of the config syncs (collapsed stacks): {result.pop('profile')}")
    print(json.dumps({"nodes": args.nodes, **{k: round(v, 3) for k, v in result.items()}}))


if __name__ == "__main__":
    main()
