"""Service rules syncs to one node, whole versus as deltas (``serviceDeltas``).

Runs one real ``capstan-agent serve --runtime hollow --proxy-mode userspace`` holding 50
hollow pods (``bench/agent_sync.py``'s node), and sends it what a node of a ``--nodes``
fleet gets while a deploy brings endpoints up: 10 Services whose rules list 5 endpoints per
node of the fleet, each rules sync moving ``--moved`` endpoints of every Service (some out,
as many new in). Each sync is encoded by the control plane's own ``_wire.encode_sync``, for
an agent without the feature (the whole rules, what a node got before) and with it (the
delta against the last acknowledged sync), and the agent's ack is awaited. Per mode:

- **bytes**: the sync line's bytes;
- **encode ms**: the control plane's CPU to encode one node's sync: the whole rules' JSON
  is kept for every node, the rule-pair diffs are shared by all nodes (the first node's
  sync pays them, as here);
- **agent ms**: the agent's CPU per sync (decode, validate, merge, persist with fsync,
  proxy reprogram), from /proc;
- **ack ms**: sync sent → ack read, the median.

Usage, from the repository root: ``.venv/bin/python bench/rule_deltas.py [--nodes 100]
[--moved 20] [--syncs 20]``. Last line: ``{"nodes": N, "whole_bytes": …, "delta_bytes": …,
"whole_agent_ms": …, "delta_agent_ms": …, …}``.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.agent_sync import PODS, SERVICES, config_maps, cpu_s, pod, start_agent
from reconciler.nodes._wire import DesiredSet, encode_sync
from schemas import ConfigMap, Pod
from schemas.protocol import (
    FEATURE_SERVICE_DELTAS,
    WIRE_FEATURES,
    Endpoint,
    ServicePortRule,
    ServiceRule,
)


def endpoints_at(nodes: int, step: int, moved: int) -> list[dict[str, Any]]:
    """A Service's endpoints after ``step`` moves: a window over an endless list of
    (address, port), ``moved`` further on each step, in (address, port) order."""
    count = nodes * PODS // SERVICES
    chosen = [
        (f"127.{i // 40000}.{10 + i // 200 % 200}.{2 + i % 200}", 32768 + i // 200 % 50)
        for i in range(step * moved, step * moved + count)
    ]
    return [{"address": a, "port": p} for a, p in sorted(chosen)]


def rules_at(nodes: int, step: int, moved: int, shared: dict[Any, Endpoint]) -> list[ServiceRule]:
    """The rules after ``step`` moves; an endpoint seen before is the model made before (as
    the dispatcher shares a rule's unchanged endpoints with its previous one)."""
    endpoints = [
        shared.setdefault((e["address"], e["port"]), Endpoint.model_validate(e))
        for e in endpoints_at(nodes, step, moved)
    ]
    return [
        ServiceRule(
            namespace="fleet",
            name=f"app-{s}",
            cluster_ip=f"10.96.0.{10 + s}",
            ports=[ServicePortRule(port=80, endpoints=endpoints)],
        )
        for s in range(SERVICES)
    ]


def rules_json(rules: list[ServiceRule]) -> str:
    """The rules' wire JSON, as the dispatcher keeps it for every node."""
    return ",".join(rule.model_dump_json(by_alias=True, exclude_none=True) for rule in rules)


class Peer:
    """The control plane's side of the socket: sends sync lines, awaits their acks."""

    def __init__(self, path: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(path))
        self._cond = threading.Condition()
        self._acks: dict[int, dict[str, Any]] = {}
        self._ready: set[str] = set()
        threading.Thread(target=self._read, daemon=True).start()
        hello = {"v": 1, "type": "hello", "role": "reconciler", "capabilities": ["statusDeltas"]}
        self._sock.sendall(json.dumps(hello).encode() + b"\n")

    def _read(self) -> None:
        for line in self._sock.makefile("rb"):
            message = json.loads(line)
            with self._cond:
                if message["type"] == "ack":
                    self._acks[message["generation"]] = message
                elif message["type"] == "status":
                    for report in message.get("pods", []):
                        conditions = report["status"].get("conditions", [])
                        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                            self._ready.add(report["uid"])
                self._cond.notify_all()

    def send(self, generation: int, line: bytes) -> dict[str, Any]:
        self._sock.sendall(line)
        with self._cond:
            self._cond.wait_for(lambda: generation in self._acks, timeout=60)
            return self._acks[generation]

    def wait_ready(self, count: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: len(self._ready) >= count, timeout=120)


def measure(nodes: int, moved: int, syncs: int, work: Path) -> dict[str, float]:
    agent, sock = start_agent(work)
    try:
        peer = Peer(sock)
        pods = tuple(Pod.model_validate(pod(i, "v0")) for i in range(PODS))
        configs = tuple(ConfigMap.model_validate(c) for c in config_maps(0))
        generation = 1
        shared: dict[Any, Endpoint] = {}
        rules = rules_at(nodes, 0, moved, shared)
        first = encode_sync(
            generation, DesiredSet(pods=pods, config_maps=configs, services=tuple(rules))
        )
        assert peer.send(generation, first)["applied"]
        peer.wait_ready(PODS)
        result: dict[str, float] = {}
        step = 0
        for mode in ("whole", "delta"):
            features = frozenset(WIRE_FEATURES)
            if mode == "whole":
                features -= {FEATURE_SERVICE_DELTAS}
            sizes, encode_s, acks = [], 0.0, []
            before = cpu_s(agent.pid)
            for _ in range(syncs):
                step += 1
                new_rules = rules_at(nodes, step, moved, shared)
                desired = DesiredSet(
                    config_maps=configs,
                    services=tuple(new_rules),
                    services_json=rules_json(new_rules),
                )
                base = (generation, rules)
                generation += 1
                started = time.process_time()
                line = encode_sync(
                    generation,
                    desired,
                    pods_unchanged=True,
                    services_base=base,
                    features=features,
                )
                encode_s += time.process_time() - started
                sent = time.monotonic()
                ack = peer.send(generation, line)
                acks.append(time.monotonic() - sent)
                if not ack["applied"]:
                    raise RuntimeError(f"sync {generation} refused: {ack['message']}")
                sizes.append(len(line))
                rules = new_rules
            result[f"{mode}_bytes"] = statistics.mean(sizes)
            result[f"{mode}_encode_ms"] = 1000 * encode_s / syncs
            result[f"{mode}_agent_ms"] = 1000 * (cpu_s(agent.pid) - before) / syncs
            result[f"{mode}_ack_ms"] = 1000 * statistics.median(acks)
        return result
    finally:
        agent.terminate()
        agent.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100, help="fleet size the rules stand for")
    parser.add_argument("--moved", type=int, default=20, help="endpoints moved per Service a sync")
    parser.add_argument("--syncs", type=int, default=20, help="rules syncs per mode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rule-deltas-") as tmp:
        result = measure(args.nodes, args.moved, args.syncs, Path(tmp))
    print(
        f"{args.nodes} nodes, {SERVICES} Services of {args.nodes * PODS // SERVICES} endpoints, "
        f"{args.moved} moved per Service a sync, {args.syncs} syncs a mode"
    )
    print(f"{'mode':>6} {'bytes':>9} {'encode ms':>9} {'agent ms':>8} {'ack ms':>7}")
    for mode in ("whole", "delta"):
        print(
            f"{mode:>6} {result[f'{mode}_bytes']:>9.0f} {result[f'{mode}_encode_ms']:>9.2f} "
            f"{result[f'{mode}_agent_ms']:>8.1f} {result[f'{mode}_ack_ms']:>7.1f}"
        )
    print(
        json.dumps(
            {
                "nodes": args.nodes,
                "moved": args.moved,
                **{k: round(v, 2) for k, v in result.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
