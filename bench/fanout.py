"""Fan-out latency: push a changed desired set to N nodes over SSH and wait for every ack.

N = 1, 10, 30 real ``sshd`` + real ``capstan-agent serve`` pairs on loopback (127.0.1.x), each
agent on the real Docker runtime with an empty pod set (the ack comes once the agent has
persisted the set; nothing is started). Two ways, in the same run:

- ``pool``: Capstan's ``NodePool``: one persistent SSH connection and one long-lived
  ``capstan-agent connect`` channel per node; a push is one JSON line per node.
- ``exec``: what ad-hoc tools do: per node per push, a fresh paramiko connect (host key
  pinned, key auth) + ``exec_command`` of the agent bridge, one sync, wait for its ack, close.
  All nodes in parallel (one thread per node, like Ansible forks = N).

Each push changes the set (a ConfigMap with the round number), so every one is applied.
Prints a table, then as its last line JSON:
``{"push_30_p50_s": X, "exec_30_p50_s": Y, "speedup_30": Y/X}``.

Run from the repository root: ``.venv/bin/python bench/fanout.py [--rounds 30]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.nodes import (
    DesiredSet,
    NodePool,
    NodeState,
    _wire,
)
from reconciler.nodes.hostkeys import HostKeyPin, known_hosts_name
from schemas.core import ConfigMap
from schemas.protocol import Ack, decode_message
from tests.fixtures.sshd import SshNode, SshNodeFarm

SIZES = (1, 10, 30)


def _desired(round_no: int) -> DesiredSet:
    config = ConfigMap.model_validate(
        {"metadata": {"name": "bench", "namespace": "default"}, "data": {"round": str(round_no)}}
    )
    return DesiredSet(config_maps=(config,))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def bench_pool(nodes: list[SshNode], rounds: int) -> list[float]:
    connected = threading.Semaphore(0)

    def on_state(state: NodeState) -> None:
        if state.phase == "Connected":
            connected.release()

    with NodePool(on_message=lambda _n, _m: None, on_state=on_state) as pool:
        for node in nodes:
            pool.ensure(node.endpoint())
        for _ in nodes:
            if not connected.acquire(timeout=60):
                raise RuntimeError("not every node connected")
        # One warm-up round: the first sync after connect also carries the first generation.
        for future in pool.push_all({n.name: _desired(-1) for n in nodes}).values():
            future.result(60)
        times = []
        for round_no in range(rounds):
            started = time.perf_counter()
            futures = pool.push_all({n.name: _desired(round_no) for n in nodes})
            for future in futures.values():
                ack = future.result(60)
                if not ack.applied:
                    raise RuntimeError(f"push not applied: {ack}")
            times.append(time.perf_counter() - started)
        return times


def _exec_push(node: SshNode, generation: int, desired: DesiredSet) -> None:
    """The ad-hoc way: connect, exec, one sync, wait for its ack, disconnect."""
    pin = HostKeyPin.parse(node.host_key_line)
    assert pin.key is not None
    client = paramiko.SSHClient()
    name = known_hosts_name(node.address, node.port)
    client.get_host_keys().add(name, pin.key.get_name(), pin.key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            node.address,
            port=node.port,
            username=node.endpoint().user,
            key_filename=str(node.client_key),
            allow_agent=False,
            look_for_keys=False,
            timeout=30,
            banner_timeout=30,
            auth_timeout=30,
        )
        stdin, stdout, _stderr = client.exec_command("capstan-agent connect")
        stdin.write(_wire.encode_sync(generation, desired))
        stdin.flush()
        for line in stdout:
            message = decode_message(line.strip())
            if isinstance(message, Ack) and message.generation == generation:
                if not message.applied:
                    raise RuntimeError(f"exec push not applied: {message}")
                return
        raise RuntimeError(f"{node.name}: channel closed before the ack")
    finally:
        client.close()


def bench_exec(nodes: list[SshNode], rounds: int) -> list[float]:
    times = []
    with ThreadPoolExecutor(max_workers=len(nodes)) as executor:
        for round_no in range(rounds):
            # Wall-clock milliseconds, like the pool: above anything pushed before.
            generation = int(time.time() * 1000)
            desired = _desired(10_000 + round_no)
            started = time.perf_counter()
            futures = [executor.submit(_exec_push, n, generation, desired) for n in nodes]
            wait(futures)
            for future in futures:
                future.result()
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="pushes per size (pool)")
    parser.add_argument("--exec-rounds", type=int, default=8, help="pushes per size (exec)")
    args = parser.parse_args()

    rows = []
    results: dict[int, tuple[float, float]] = {}
    with SshNodeFarm(prefix="fanout") as farm:
        print(f"starting {max(SIZES)} sshd + capstan-agent pairs on 127.0.1.x ...", flush=True)
        nodes = farm.start(max(SIZES), addresses=[f"127.0.1.{i + 1}" for i in range(max(SIZES))])
        for size in SIZES:
            subset = nodes[:size]
            pool_times = bench_pool(subset, args.rounds)
            exec_times = bench_exec(subset, args.exec_rounds)
            pool_p50, exec_p50 = statistics.median(pool_times), statistics.median(exec_times)
            results[size] = (pool_p50, exec_p50)
            rows.append(
                (
                    size,
                    pool_p50,
                    _percentile(pool_times, 0.99),
                    exec_p50,
                    _percentile(exec_times, 0.99),
                    exec_p50 / pool_p50,
                )
            )

    print()
    print(
        "push a changed desired set to N nodes and wait for every ack "
        "(real sshd + capstan-agent on Docker, loopback, 2 cores)"
    )
    print(
        f"{'N':>4} {'pool p50 s':>11} {'pool p99 s':>11} {'exec p50 s':>11} "
        f"{'exec p99 s':>11} {'speedup':>8}"
    )
    for size, pp50, pp99, ep50, ep99, ratio in rows:
        print(f"{size:>4} {pp50:>11.4f} {pp99:>11.4f} {ep50:>11.4f} {ep99:>11.4f} {ratio:>7.1f}x")
    print(
        f"(pool: {args.rounds} pushes per N; exec: {args.exec_rounds} pushes per N, "
        "fresh connect + exec per node per push)"
    )
    pool_30, exec_30 = results[30]
    print(
        json.dumps(
            {
                "push_30_p50_s": round(pool_30, 4),
                "exec_30_p50_s": round(exec_30, 4),
                "speedup_30": round(exec_30 / pool_30, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
