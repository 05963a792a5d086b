"""Fan-out latency: push a changed desired set of 20 pods to N nodes, against Ansible.

N = 1, 10, 30 real ``sshd`` + real ``capstan-agent serve`` pairs on loopback (127.0.1.x). The
payload is a realistic desired set: 20 pods (four workloads of five replicas, each pod with
probes, resources, env and a ConfigMap volume) and a ConfigMap carrying the round number, so
every push changes. The agents run with ``--pod-security restricted``, which these ordinary
pods do not meet: each agent receives, persists and plans the set and acks it, then refuses
the pods before Docker sees them — so the run times delivery, not 600 container starts on a
2-core machine. Three ways, in the same run, to the same sshd hosts:

- ``pool``: Capstan's ``NodePool``: one persistent SSH connection and one long-lived
  ``capstan-agent connect`` channel per node; a push is one JSON line per node, done when
  every agent has acked (persisted) it.
- ``exec``: the ad-hoc way: per node per push, a fresh paramiko connect (host key pinned, key
  auth) + ``exec_command`` of the agent bridge, one sync, wait for its ack, close. All nodes
  in parallel (one thread per node).
- ``ansible``: ``ansible-playbook`` (ansible-core, the ``bench`` extra) with one ``copy`` task
  writing the same encoded sync message to a file on every host: forks = N, OpenSSH with
  ControlPersist kept warm across rounds (a warm-up round opens the masters), pipelining on,
  no fact gathering — Ansible's fastest ordinary configuration. Ansible logs in with a key of
  its own, unrestricted (it needs a shell and Python on the host), added beside Capstan's.

Prints a table, then as its last line JSON: ``{"push_30_p50_s": X, "exec_30_p50_s": Y,
"speedup_30": Y/X, "ansible_30_p50_s": Z, "vs_ansible": Z/X}``.

Run from the repository root: ``python bench/fanout.py [--rounds 30] [--ansible-rounds 5]``
with the project's Python (``pip install -e '.[bench]'`` for Ansible).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
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
from schemas import ConfigMap, Pod
from schemas.protocol import Ack, decode_message
from tests.fixtures.local_agent import cleanup_proxy, proxy_args
from tests.fixtures.sshd import SshNode, SshNodeFarm

SIZES = (1, 10, 30)


WORKLOADS = ("web", "api", "worker", "cache")
REPLICAS = 5


def _pod(app: str, replica: int) -> Pod:
    return Pod.model_validate(
        {
            "metadata": {
                "name": f"{app}-7d4b9c6f5-{replica:05d}",
                "namespace": "default",
                "uid": f"0b3c{replica:04d}-{len(app):04d}-4e4f-9a2b-{app:0>12}"[-36:],
                "labels": {"app": app, "pod-template-hash": "7d4b9c6f5", "tier": "backend"},
                "annotations": {"example.com/revision": "42"},
            },
            "spec": {
                "nodeName": "bench",
                "terminationGracePeriodSeconds": 30,
                "containers": [
                    {
                        "name": app,
                        "image": f"registry.example.com/shop/{app}:1.24.3",
                        "command": ["/app/server"],
                        "args": ["--port=8080", "--log-format=json"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "env": [
                            {"name": "APP_NAME", "value": app},
                            {"name": "LOG_LEVEL", "value": "info"},
                            {"name": "DATABASE_HOST", "value": "db.default.svc"},
                            {"name": "CACHE_TTL_SECONDS", "value": "300"},
                        ],
                        "resources": {
                            "requests": {"cpu": "250m", "memory": "256Mi"},
                            "limits": {"cpu": "1", "memory": "512Mi"},
                        },
                        "readinessProbe": {
                            "httpGet": {"path": "/healthz", "port": "http"},
                            "periodSeconds": 5,
                        },
                        "livenessProbe": {
                            "httpGet": {"path": "/livez", "port": "http"},
                            "periodSeconds": 10,
                            "failureThreshold": 3,
                        },
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}],
                    }
                ],
                "volumes": [{"name": "config", "configMap": {"name": "bench"}}],
            },
        }
    )


PODS = tuple(_pod(app, replica) for app in WORKLOADS for replica in range(REPLICAS))


def _desired(round_no: int) -> DesiredSet:
    config = ConfigMap.model_validate(
        {"metadata": {"name": "bench", "namespace": "default"}, "data": {"round": str(round_no)}}
    )
    return DesiredSet(pods=PODS, config_maps=(config,))


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


class Ansible:
    """``ansible-playbook`` copying one file to every node over OpenSSH with ControlPersist."""

    def __init__(self, nodes: list[SshNode], work: Path) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        key = work / "ansible_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ansible", "-f", str(key)],
            check=True,
        )
        public = key.with_suffix(".pub").read_text().strip()
        known = work / "known_hosts"
        known.write_text("".join(f"[{n.address}]:{n.port} {n.host_key_line}\n" for n in nodes))
        for node in nodes:
            with (node.root / "authorized_keys").open("a") as keys:
                keys.write(public + "\n")  # Ansible needs a shell: a key of its own
            (node.root / "ansible").mkdir(exist_ok=True)
        # A short directory: ControlPath sockets must fit in a Unix socket path.
        self.control_dir = Path(tempfile.mkdtemp(prefix="capans-", dir="/tmp"))
        self.playbook = work / "copy.yml"
        self.playbook.write_text(
            "- hosts: all\n"
            "  gather_facts: false\n"
            "  tasks:\n"
            "    - name: the desired set\n"
            "      ansible.builtin.copy:\n"
            '        src: "{{ payload }}"\n'
            '        dest: "{{ dest }}"\n'
            '        mode: "0600"\n'
        )
        self.config = work / "ansible.cfg"
        self.config.write_text("")
        self.executable = Path(sys.executable).parent / "ansible-playbook"
        if not self.executable.exists():
            raise SystemExit(
                f"{self.executable} is missing: pip install -e '.[bench]' (ansible-core)"
            )
        self.env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(self.config),
            "ANSIBLE_HOME": str(work / "home"),
            "ANSIBLE_LOCAL_TEMP": str(work / "local-tmp"),
            "ANSIBLE_REMOTE_TEMP": str(work / "remote-tmp"),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_ARGS": (
                "-o ControlMaster=auto -o ControlPersist=600s -o IdentitiesOnly=yes "
                f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes"
            ),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir),
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_GATHERING": "explicit",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_NOCOLOR": "1",
        }
        self._key = key

    def inventory(self, nodes: list[SshNode]) -> Path:
        path = self.work / f"inventory-{len(nodes)}.ini"
        lines = [
            f"{n.name} ansible_host={n.address} ansible_port={n.port} "
            f"dest={n.root / 'ansible' / 'desired.json'}"
            for n in nodes
        ]
        lines += [
            "",
            "[all:vars]",
            f"ansible_user={nodes[0].endpoint().user}",
            f"ansible_ssh_private_key_file={self._key}",
            f"ansible_python_interpreter={sys.executable}",
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    def push(self, nodes: list[SshNode], inventory: Path, payload: bytes, tag: str) -> float:
        """One ``ansible-playbook`` run; its wall time. Fails unless every host changed."""
        source = self.work / f"payload-{tag}.json"
        source.write_bytes(payload)
        started = time.perf_counter()
        done = subprocess.run(
            [
                str(self.executable),
                "-i",
                str(inventory),
                "-f",
                str(len(nodes)),
                "-e",
                f"payload={source}",
                str(self.playbook),
            ],
            env=self.env,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"ansible-playbook failed:\n{done.stdout[-3000:]}{done.stderr}")
        # The PLAY RECAP: one "host : ok=1 changed=1 unreachable=0 failed=0 ..." per host.
        recap = dict(re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", done.stdout, re.M))
        if sorted(recap) != sorted(n.name for n in nodes) or set(recap.values()) != {"1"}:
            raise RuntimeError(f"ansible did not change every host:\n{done.stdout[-3000:]}")
        for node in nodes:
            if (node.root / "ansible" / "desired.json").read_bytes() != payload:
                raise RuntimeError(f"{node.name}: the copied file differs from the payload")
        return elapsed

    def close(self) -> None:
        for control in self.control_dir.iterdir():
            subprocess.run(
                ["ssh", "-o", f"ControlPath={control}", "-O", "exit", "control"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.control_dir, ignore_errors=True)


def bench_ansible(ansible: Ansible, nodes: list[SshNode], rounds: int) -> list[float]:
    inventory = ansible.inventory(nodes)
    generation = int(time.time() * 1000)
    # Warm-up: opens the ControlPersist masters (and loads the copy module's caches).
    ansible.push(nodes, inventory, _wire.encode_sync(generation, _desired(-1)), "warm")
    times = []
    for round_no in range(rounds):
        payload = _wire.encode_sync(generation + 1 + round_no, _desired(20_000 + round_no))
        times.append(ansible.push(nodes, inventory, payload, f"{len(nodes)}-{round_no}"))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="pushes per size (pool)")
    parser.add_argument("--exec-rounds", type=int, default=8, help="pushes per size (exec)")
    parser.add_argument("--ansible-rounds", type=int, default=5, help="pushes per size (ansible)")
    args = parser.parse_args()

    rows = []
    results: dict[int, tuple[float, float, float]] = {}
    payload_bytes = len(_wire.encode_sync(0, _desired(0)))
    work = Path(tempfile.mkdtemp(prefix="capstan-bench-fanout-"))
    # Proxy rules of the bench's own (the set has no Service: every agent's table stays
    # empty, so the 30 agents may share one), removed at the end.
    proxy = proxy_args("capf")
    try:
        with SshNodeFarm(prefix="fanout") as farm:
            print(f"starting {max(SIZES)} sshd + capstan-agent pairs on 127.0.1.x ...", flush=True)
            nodes = farm.start(
                max(SIZES),
                addresses=[f"127.0.1.{i + 1}" for i in range(max(SIZES))],
                agent_args=("--pod-security", "restricted", *proxy),
            )
            ansible = Ansible(nodes, work / "ansible")
            try:
                for size in SIZES:
                    subset = nodes[:size]
                    pool_times = bench_pool(subset, args.rounds)
                    exec_times = bench_exec(subset, args.exec_rounds)
                    ansible_times = bench_ansible(ansible, subset, args.ansible_rounds)
                    pool_p50 = statistics.median(pool_times)
                    exec_p50 = statistics.median(exec_times)
                    ansible_p50 = statistics.median(ansible_times)
                    results[size] = (pool_p50, exec_p50, ansible_p50)
                    rows.append(
                        (
                            size,
                            pool_p50,
                            _percentile(pool_times, 0.99),
                            exec_p50,
                            ansible_p50,
                            _percentile(ansible_times, 0.99),
                        )
                    )
            finally:
                ansible.close()
            refused = _refused_everywhere(nodes)
    finally:
        cleanup_proxy(proxy)
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        f"push a changed desired set of {len(PODS)} pods ({payload_bytes} bytes) to N nodes and "
        "wait until every node has it (real sshd + capstan-agent, loopback, "
        f"{os.cpu_count()} cores)"
    )
    print(
        f"{'N':>4} {'pool p50 s':>11} {'pool p99 s':>11} {'exec p50 s':>11} "
        f"{'ansible p50 s':>14} {'ansible p99 s':>14} {'vs ansible':>11}"
    )
    for size, pp50, pp99, ep50, ap50, ap99 in rows:
        print(
            f"{size:>4} {pp50:>11.4f} {pp99:>11.4f} {ep50:>11.4f} {ap50:>14.3f} {ap99:>14.3f} "
            f"{ap50 / pp50:>10.0f}x"
        )
    print(
        f"(pool: {args.rounds} pushes per N; exec: {args.exec_rounds}, fresh connect + exec per "
        f"node per push; ansible: {args.ansible_rounds} ansible-playbook runs of one copy task, "
        f"forks=N, ControlPersist warm, pipelining; agents refused the pods: {refused})"
    )
    pool_30, exec_30, ansible_30 = results[30]
    print(
        json.dumps(
            {
                "push_30_p50_s": round(pool_30, 4),
                "exec_30_p50_s": round(exec_30, 4),
                "speedup_30": round(exec_30 / pool_30, 2),
                "ansible_30_p50_s": round(ansible_30, 3),
                "vs_ansible": round(ansible_30 / pool_30, 1),
            }
        )
    )


def _refused_everywhere(nodes: list[SshNode]) -> str:
    """Whether the agents started no container for the bench's pods (they must not)."""
    started = sum(len(node.containers()) for node in nodes)
    return "yes, no container started" if started == 0 else f"NO: {started} containers"


if __name__ == "__main__":
    main()
