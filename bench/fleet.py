"""What the control plane costs as the fleet grows: 10, 30, 100 real nodes on this machine.

Each node is a real OpenSSH ``sshd`` on its own 127.0.x.y address with its own host key and a
real ``capstan-agent serve`` behind it, reached with the restricted key
(``tests/fixtures/sshd.py``). The agents run on the hollow runtime (``--runtime hollow``:
containers exist in memory and take ``--hollow-start-delay`` 0.5 s to start, as kubemark's
hollow nodes do, because Docker cannot run thousands of containers on two cores) and program
Services in userspace mode; everything else is the real path: a Git repository with one Node
manifest per node, ``capstan up --no-local-agent`` watching it, the sync engine, controllers,
scheduler, the embedded store, the node dispatcher, SSH, the wire protocol, each agent's
desired-state file, kubelet and prober.

Per size, with 50 pods per node (10 Deployments, each with a ClusterIP Service, every pod
mounting one shared ConfigMap):

- **deploy**: commit → every pod Ready (the first sync of a fresh repository);
- **idle**: once the control plane has settled after the deploy (no store write but the
  periodic ones and node links near silent for ``--settle-quiet`` seconds, waited at most
  ``--settle-max``), the ``capstan up`` process's RSS, CPU (% of one core over ``--idle``
  seconds, and the threads that used most of it), threads and open file descriptors; node
  traffic in bytes/s per node, both directions, read from the I/O counters of each node's
  ``capstan-agent connect`` (the process that bridges the SSH channel to the agent: every
  byte the control plane and the agent exchange passes it once);
- **ack**: a commit that changes only the shared ConfigMap → the time each node's agent has
  persisted the new desired set (the ack follows the write; the file's mtime is the time, so
  polling does not blur it); per round the slowest node, over ``--rounds`` rounds;
- **rollout**: a commit that changes every Deployment's template → every pod Ready again on
  the new template (default rolling update: 25 % surge, 25 % unavailable), with the control
  plane's peak RSS and mean CPU meanwhile.

Pods are counted from the store the control plane writes (a read-only watch on
``/registry/pods/`` in this process, as ``kubectl get pods -w`` would see them).

Prints a table per size, then the slopes, and last one JSON line::

    {"nodes": 100, "cp_rss_mb_100": …, "cp_cpu_idle_pct_100": …, "ack_p99_s_100": …,
     "ready_p99_s_100": …, "threads_100": …, "rss_slope_mb_per_node": …}

Run as root from the repository root: ``.venv/bin/python bench/fleet.py [--sizes 10,30,100]``.
Needs ``sshd`` and about 60 MB of memory per node (the agents).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.state import DesiredStateFile
from reconciler.store import open_store
from reconciler.store._types import EventType
from tests.fixtures.sshd import SshNode, SshNodeFarm, descendants

CAPSTAN = Path(sys.executable).parent / "capstan"
PODS_PER_NODE = 50
DEPLOYMENTS = 10
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


# -- the repository ------------------------------------------------------------------------


def config_map(round_no: int) -> str:
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: fleet-config
  namespace: fleet
data:
  round: "{round_no}"
"""


def deployment(index: int, replicas: int, version: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{index}
  namespace: fleet
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: app-{index}
  template:
    metadata:
      labels:
        app: app-{index}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: capstan.local/busybox:1
          command: ["sleep", "3600"]
          env:
            - name: VERSION
              value: "{version}"
          ports:
            - containerPort: 8080
          resources:
            requests:
              cpu: 10m
              memory: 16Mi
          volumeMounts:
            - name: config
              mountPath: /config
      volumes:
        - name: config
          configMap:
            name: fleet-config
---
apiVersion: v1
kind: Service
metadata:
  name: app-{index}
  namespace: fleet
spec:
  selector:
    app: app-{index}
  ports:
    - port: 80
      targetPort: 8080
"""


class Repo:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> None:
        subprocess.run(
            ["git", *args],
            cwd=self.path,
            check=True,
            capture_output=True,
            env={**os.environ, **GIT_ENV},
        )

    def commit(self, message: str, files: dict[str, str]) -> float:
        """Write and commit; returns the wall-clock time the commit exists."""
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return time.time()


def workload(size: int, version: str) -> dict[str, str]:
    per = size * PODS_PER_NODE // DEPLOYMENTS
    return {f"apps/app-{i}.yaml": deployment(i, per, version) for i in range(DEPLOYMENTS)}


# -- the control plane process ---------------------------------------------------------------


@dataclass(frozen=True)
class ProcSample:
    at: float
    cpu_s: float
    rss_mb: float
    threads: int
    fds: int


def sample(pid: int) -> ProcSample:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK
    threads = int(fields[17])
    rss = int(fields[21]) * _PAGE / 2**20
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return ProcSample(at=time.monotonic(), cpu_s=cpu, rss_mb=rss, threads=threads, fds=fds)


def smaps_rollup_mb(pid: int) -> dict[str, float]:
    """The process's resident memory by kind (``/proc/PID/smaps_rollup``), in MB."""
    wanted = ("Rss", "Anonymous", "Shared_Clean", "Private_Clean")
    figures: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in wanted:
            figures[key] = int(rest.split()[0]) / 1024
    return figures


def cpu_pct(first: ProcSample, last: ProcSample) -> float:
    return 100.0 * (last.cpu_s - first.cpu_s) / max(1e-9, last.at - first.at)


class Sampler:
    """Samples a process every ``every_s`` on a thread; ``window()`` returns and restarts."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        self._pid = pid
        self._every = every_s
        self._samples: list[ProcSample] = [sample(pid)]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            taken = sample(self._pid)
            with self._lock:
                self._samples.append(taken)

    def window(self) -> list[ProcSample]:
        taken = sample(self._pid)
        with self._lock:
            samples = [*self._samples, taken]
            self._samples = [taken]
        return samples

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def capstan_up(repo: Path, state: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (state.parent / "capstan-up.log").open("ab")
    proc = subprocess.Popen(
        [
            str(CAPSTAN),
            "up",
            str(repo),
            "--state-dir",
            str(state),
            "--store",
            f"sqlite:///{state / 'state.db'}",
            "--no-local-agent",
            "--log-level",
            "WARNING",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # capstan up records a context in the client config: the bench's own, not the user's.
        env={**os.environ, "CAPSTAN_CONFIG": str(state.parent / f"{state.name}-client-config")},
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# -- observing pods and acks ---------------------------------------------------------------


class PodCounter:
    """Every pod in the store, kept current by a watch: how many are Ready, on which template.

    The counts are kept as events arrive, so a wait does not go over every pod on each
    event (at 5,000 pods that made this process, which shares the cores being measured,
    take most of one)."""

    def __init__(self, store_url: str) -> None:
        self._store = open_store(store_url)
        self._lock = threading.Condition()
        self._pods: dict[str, tuple[str, bool]] = {}
        #: Ready pods per template version.
        self._ready: dict[str, int] = {}
        result = self._store.range("/registry/pods/", prefix=True)
        for kv in result.kvs:
            self._put(kv.key, self._summary(kv.value))
        self._watch = self._store.watch(
            "/registry/pods/", prefix=True, from_revision=result.revision
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _summary(value: bytes) -> tuple[str, bool]:
        pod = json.loads(value)
        version = ""
        for container in pod.get("spec", {}).get("containers", ()):
            for env in container.get("env") or ():
                if env.get("name") == "VERSION":
                    version = str(env.get("value"))
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (pod.get("status") or {}).get("conditions") or ()
        )
        return version, ready

    def _run(self) -> None:
        while not self._watch.closed:
            events = self._watch.poll(0.5)
            if not events:
                continue
            with self._lock:
                for event in events:
                    if event.type is EventType.DELETE:
                        self._put(event.kv.key, None)
                    else:
                        self._put(event.kv.key, self._summary(event.kv.value))
                self._lock.notify_all()

    def _put(self, key: str, summary: tuple[str, bool] | None) -> None:
        old = self._pods.pop(key, None)
        if old is not None and old[1]:
            self._ready[old[0]] -= 1
        if summary is not None:
            self._pods[key] = summary
            if summary[1]:
                self._ready[summary[0]] = self._ready.get(summary[0], 0) + 1

    def wait_ready(self, version: str, count: int, timeout: float) -> float:
        """Wait until exactly ``count`` pods exist, all Ready on ``version``; the time it was."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                ready = self._ready.get(version, 0)
                if len(self._pods) == count and ready == count:
                    return time.time()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{ready}/{count} pods Ready on {version} ({len(self._pods)})"
                    )
                self._lock.wait(min(left, 1.0))

    def close(self) -> None:
        self._watch.close()
        self._thread.join()
        self._store.close()


#: Keys written at idle as well, on a period: the node leases (one transaction for the fleet
#: every 10 s) and the sync state (each Git resync notes its time there).
_PERIODIC_KEYS = ("/registry/leases/", "/registry/configmaps/capstan-system/capstan-sync-state")
#: Node traffic of a settled fleet: heartbeats (~20 B/s a node) and the full status report
#: every 5 minutes; a node still getting rules or pods sends and receives far more.
_QUIET_BYTES_PER_NODE_S = 200.0


class StoreWrites:
    """Counts the store's writes by key kind (``/registry/<kind>/``; the sync state on its
    own) from creation until ``close``: what the control plane writes at idle; and, for
    Pods and Nodes, which fields each write changed (what woke their watchers for what)."""

    def __init__(self, store_url: str) -> None:
        self._store = open_store(store_url)
        self._watch = self._store.watch("/registry/", prefix=True)
        self.counts: dict[str, int] = {}
        self.changes: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._watch.closed:
            for event in self._watch.poll(0.5):
                key = event.kv.key
                kind = "sync-state" if key.startswith(_PERIODIC_KEYS[1]) else key.split("/")[2]
                self.counts[kind] = self.counts.get(kind, 0) + 1
                if kind in ("pods", "nodes") and event.prev_kv is not None:
                    what = f"{kind}: " + changed_fields(event.prev_kv.value, event.kv.value)
                    self.changes[what] = self.changes.get(what, 0) + 1

    def close(self) -> str:
        """Stop counting; the counts, most first, as one line."""
        self._watch.close()
        self._thread.join()
        self._store.close()
        ordered = sorted(self.counts.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{kind} {count}" for kind, count in ordered) or "none"

    def changed(self) -> str:
        """What the Pod and Node writes changed (after ``close``), most frequent first."""
        ordered = sorted(self.changes.items(), key=lambda kv: -kv[1])[:8]
        return "; ".join(f"{what} x{count}" for what, count in ordered) or "none"


def changed_fields(before: bytes, after: bytes) -> str:
    """The paths of the fields that differ between two stored objects (JSON), conditions by
    type, metadata's resourceVersion and managedFields left out."""

    def flat(value: object, path: str, out: dict[str, object]) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if path == "metadata" and k in ("resourceVersion", "managedFields"):
                    continue
                flat(v, f"{path}.{k}" if path else k, out)
        elif isinstance(value, list) and all(isinstance(v, dict) and "type" in v for v in value):
            for v in value:
                flat(v, f"{path}[{v['type']}]", out)
        else:
            out[path] = value

    a: dict[str, object] = {}
    b: dict[str, object] = {}
    flat(json.loads(before), "", a)
    flat(json.loads(after), "", b)
    return ",".join(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))) or "nothing"


def wait_settled(
    store_url: str, nodes: list[SshNode], quiet_s: float, longest_s: float
) -> tuple[float, int, float]:
    """Wait until, for ``quiet_s`` seconds, the store has had no write but the periodic ones
    (``_PERIODIC_KEYS``) and the nodes' links have carried at most ``_QUIET_BYTES_PER_NODE_S``
    a node (rules and pods still reaching the nodes are no store write), at most
    ``longest_s``: the deploy's tail is over. Returns the seconds waited, how many store
    writes came meanwhile, and the node traffic of the last second (B/s per node)."""
    store = open_store(store_url)
    started = time.monotonic()
    last = started
    writes = 0
    rate = 0.0
    watch = store.watch("/registry/", prefix=True)
    sent, sent_at = traffic_bytes(nodes), time.monotonic()
    try:
        while (now := time.monotonic()) - last < quiet_s and now - started < longest_s:
            for event in watch.poll(1.0):
                if not event.kv.key.startswith(_PERIODIC_KEYS):
                    writes += 1
                    last = time.monotonic()
            total, at = traffic_bytes(nodes), time.monotonic()
            rate = (total - sent) / max(1e-9, at - sent_at) / max(1, len(nodes))
            sent, sent_at = total, at
            if rate > _QUIET_BYTES_PER_NODE_S:
                last = at
        return time.monotonic() - started, writes, rate
    finally:
        watch.close()
        store.close()


def thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds so far of each of a process's threads, by thread id."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / _TICK
    return out


def thread_names(py_spy: str | None, pid: int) -> dict[int, str]:
    """Python thread names by OS thread id, from ``py-spy dump`` (empty without it)."""
    if py_spy is None:
        return {}
    dump = subprocess.run(
        [py_spy, "dump", "--pid", str(pid), "--nonblocking"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    names: dict[int, str] = {}
    for line in dump.splitlines():
        # Thread 12345 (idle): "name"
        if line.startswith("Thread ") and '"' in line:
            tid = line.split()[1]
            name = line.split('"')[1]
            try:
                names[int(tid, 0)] = name
            except ValueError:
                continue
    return names


def busiest_threads(
    before: dict[int, float], after: dict[int, float], window_s: float, names: dict[int, str]
) -> str:
    """The threads that used most CPU over the window, grouped by name, % of one core."""
    used: dict[str, tuple[float, int]] = {}
    for tid, cpu in after.items():
        name = names.get(tid, str(tid))
        # Group numbered threads of one kind ("endpoints-3", "Thread-12 (run)").
        kind = name.rstrip("0123456789").rstrip("-_ ") or name
        total, count = used.get(kind, (0.0, 0))
        used[kind] = (total + cpu - before.get(tid, cpu), count + 1)
    ranked = sorted(used.items(), key=lambda kv: -kv[1][0])
    return ", ".join(
        f"{kind} x{count} {100 * cpu / window_s:.2f}"
        for kind, (cpu, count) in ranked[:12]
        if cpu > 0
    )


def wait_nodes_ready(store_url: str, count: int, timeout: float) -> None:
    store = open_store(store_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            ready = 0
            for kv in store.range("/registry/nodes/", prefix=True).kvs:
                conditions = (json.loads(kv.value).get("status") or {}).get("conditions") or ()
                ready += any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            if ready >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ready}/{count} nodes Ready")
            time.sleep(0.5)
    finally:
        store.close()


def wait_acks(nodes: list[SshNode], round_no: int, since: float, timeout: float) -> list[float]:
    """Per node, seconds from ``since`` until its agent persisted a set with this round.

    Only a file written after ``since`` is read, and only searched (not decoded): the
    agents, the control plane and this loop share the machine's cores through the round."""
    files = {n.name: DesiredStateFile(n.state_dir) for n in nodes}
    seen_mtime: dict[str, int] = {}
    for name, state in files.items():
        with contextlib.suppress(FileNotFoundError):
            if (mtime := state.path.stat().st_mtime_ns) < since * 1e9:
                seen_mtime[name] = mtime
    acked: dict[str, float] = {}
    wanted = f'"round":"{round_no}"'.encode()
    deadline = time.monotonic() + timeout
    while len(acked) < len(nodes):
        if time.monotonic() > deadline:
            missing = sorted(set(files) - set(acked))
            raise TimeoutError(f"no ack of round {round_no} from {len(missing)} nodes")
        for name, state in files.items():
            if name in acked:
                continue
            try:
                mtime = state.path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if seen_mtime.get(name) == mtime:
                continue
            seen_mtime[name] = mtime
            if wanted in (state.read() or b""):
                acked[name] = mtime / 1e9 - since
        time.sleep(0.01)
    return list(acked.values())


def traffic_bytes(nodes: list[SshNode]) -> int:
    """Bytes read plus written by every node's ``capstan-agent connect`` bridge so far."""
    total = 0
    for node in nodes:
        for sshd in node.sshd_pids():
            for pid in descendants(sshd):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if b"connect" not in cmdline:
                        continue
                    io = dict(
                        line.split(": ")
                        for line in Path(f"/proc/{pid}/io").read_text().splitlines()
                    )
                except (FileNotFoundError, ProcessLookupError):
                    continue
                total += int(io["rchar"]) + int(io["wchar"])
    return total


def node_side_cpu_s(nodes: list[SshNode]) -> float:
    """CPU seconds used so far by every node's agent and sshd tree (the node side of the
    fleet, which shares this machine's cores with the control plane)."""
    pids: set[int] = set()
    for node in nodes:
        if node.agent is not None:
            pids.add(node.agent.pid)
        for sshd in node.sshd_pids():
            pids.add(sshd)
            pids.update(descendants(sshd))
    return sum(map(process_cpu_s, pids))


def agents_cpu_s(nodes: list[SshNode]) -> float:
    """CPU seconds used so far by the ``capstan-agent serve`` processes alone (kubelet,
    prober, proxy, the desired-state file: what a node's host spends on its pods)."""
    return sum(process_cpu_s(n.agent.pid) for n in nodes if n.agent is not None)


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of one process so far (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


@dataclass(frozen=True)
class CpuSplit:
    """CPU seconds spent meanwhile by the control plane, the agents, the whole node side
    (agents, sshd, connect bridges) and the machine (all cores), and the wall time."""

    cp_s: float
    agents_s: float
    nodes_s: float
    machine_s: float
    wall_s: float

    def line(self, what: str, pods: int) -> str:
        return (
            f"{what} CPU s: control plane {self.cp_s:.1f}, agents {self.agents_s:.1f} "
            f"({1000 * self.agents_s / max(1, pods):.1f} ms per pod), nodes in all "
            f"{self.nodes_s:.1f}, machine {self.machine_s:.1f} of {self.wall_s:.1f} s wall"
        )


@contextmanager
def cpu_split(cp_pid: int, nodes: list[SshNode]) -> Iterator[list[CpuSplit]]:
    """Measure the CPU split of the ``with`` body; the list holds the result after it."""
    out: list[CpuSplit] = []
    cp, agents, side = process_cpu_s(cp_pid), agents_cpu_s(nodes), node_side_cpu_s(nodes)
    busy, _ = machine_busy_s()
    started = time.monotonic()
    try:
        yield out
    finally:
        out.append(
            CpuSplit(
                cp_s=process_cpu_s(cp_pid) - cp,
                agents_s=agents_cpu_s(nodes) - agents,
                nodes_s=node_side_cpu_s(nodes) - side,
                machine_s=machine_busy_s()[0] - busy,
                wall_s=time.monotonic() - started,
            )
        )


@contextmanager
def profiled(
    py_spy: str | None, pid: int, out: Path, *, rate: int = 50, gil: bool = False
) -> Iterator[None]:
    """Record a process (the control plane, an agent) with ``py-spy record`` (speedscope
    JSON at ``out``) while the ``with`` body runs; nothing without ``py_spy``. ``gil``: only
    the samples of the thread holding the GIL (the process's Python CPU, without its
    threads' blocking calls)."""
    if py_spy is None:
        yield
        return
    recorder = subprocess.Popen(
        [
            *(py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--threads"),
            *("--nonblocking", "--format", "speedscope", "--output", str(out)),
            *(("--gil",) if gil else ()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(60)


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


# -- one fleet size ----------------------------------------------------------------------------


@dataclass
class SizeResult:
    nodes: int
    pods: int
    deploy_s: float = 0.0
    idle_rss_mb: float = 0.0
    idle_cpu_pct: float = 0.0
    threads: int = 0
    fds: int = 0
    bytes_per_node_s: float = 0.0
    ack_all: list[float] = field(default_factory=list)
    ack_each: list[float] = field(default_factory=list)
    ready_s: list[float] = field(default_factory=list)
    rollout_peak_rss_mb: float = 0.0
    rollout_cpu_pct: float = 0.0
    #: CPU of every node's agent and sshd tree at idle, % of one core (the node side).
    nodes_idle_cpu_pct: float = 0.0
    #: The whole machine's busy share during the rollout, % of all cores.
    rollout_machine_busy_pct: float = 0.0
    #: Where the CPU went through the deploy and through the rollout.
    deploy_cpu: CpuSplit | None = None
    rollout_cpu: CpuSplit | None = None


def addresses(count: int) -> list[str]:
    return [f"127.0.{10 + i // 200}.{2 + i % 200}" for i in range(count)]


def run_size(
    size: int,
    *,
    rounds: int,
    idle_s: float,
    timeout_s: float,
    settle_quiet_s: float = 10.0,
    settle_max_s: float = 180.0,
    work: Path,
    log: Callable[[str], None],
    rollout: bool = True,
    py_spy: str | None = None,
    spy_rate: int = 50,
    full_status_s: float | None = None,
) -> SizeResult:
    result = SizeResult(nodes=size, pods=size * PODS_PER_NODE)
    agent_args: tuple[str, ...] = ("--runtime", "hollow", "--proxy-mode", "userspace")
    if full_status_s is not None:
        agent_args += ("--full-status", str(full_status_s))
    with SshNodeFarm(prefix="fleet") as farm:
        started = time.monotonic()
        # In batches: a hundred Python agents importing at once on two cores outwait the
        # fixture's start timeout.
        nodes = []
        wanted = addresses(size)
        for first in range(0, size, 10):
            nodes += farm.start(
                len(wanted[first : first + 10]),
                addresses=wanted[first : first + 10],
                agent_args=agent_args,
            )
        log(f"{size} nodes up in {time.monotonic() - started:.0f} s")
        repo = Repo(work / f"repo-{size}")
        state = work / f"state-{size}"
        files = {f"nodes/{n.name}.yaml": n.manifest() for n in nodes}
        files["namespace.yaml"] = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fleet\n"
        files["config.yaml"] = config_map(0)
        repo.commit("fleet", files)
        with capstan_up(repo.path, state) as proc:
            while not (state / "state.db").exists():
                if proc.poll() is not None:
                    raise RuntimeError("capstan up exited; see capstan-up.log")
                time.sleep(0.1)
            store_url = f"sqlite:///{state / 'state.db'}"
            # Workloads follow once every node is Ready, or the first to report takes all.
            wait_nodes_ready(store_url, size, timeout=300)
            log(f"{size} nodes Ready")
            pods = PodCounter(store_url)
            sampler = Sampler(proc.pid)
            assert nodes[0].agent is not None
            first_agent = nodes[0].agent.pid

            def phase(what: str, version: str) -> tuple[float, CpuSplit]:
                """Commit every Deployment on ``version``: seconds until every pod is Ready
                on it (inf past the timeout), and where the CPU went meanwhile."""
                with (
                    cpu_split(proc.pid, nodes) as split,
                    profiled(py_spy, proc.pid, Path(f"fleet-{size}-{what}.json"), rate=spy_rate),
                    profiled(
                        py_spy,
                        first_agent,
                        Path(f"fleet-{size}-{what}-agent.json"),
                        rate=spy_rate,
                        gil=True,
                    ),
                ):
                    since = repo.commit(what, workload(size, version))
                    try:
                        ready_at = pods.wait_ready(version, result.pods, timeout=timeout_s)
                    except TimeoutError as exc:
                        # Still worth the other figures: the control plane's cost.
                        log(f"{what} not done after {timeout_s:.0f} s: {exc}")
                        ready_at = since + float("inf")
                log(split[0].line(what, result.pods))
                return ready_at - since, split[0]

            try:
                result.deploy_s, result.deploy_cpu = phase("deploy", "v0")
                log(f"deployed {result.pods} pods in {result.deploy_s:.1f} s")
                # Idle: let the deploy's tail (status writes, endpoints, rules) pass first.
                waited, settle_writes, rate = wait_settled(
                    store_url, nodes, settle_quiet_s, settle_max_s
                )
                log(
                    f"settled: no store write but the periodic ones and node traffic "
                    f"<= {_QUIET_BYTES_PER_NODE_S:.0f} B/s a node for {settle_quiet_s:.0f} s "
                    f"after {waited:.1f} s ({settle_writes} writes meanwhile)"
                    if waited < settle_max_s
                    else f"not settled after {waited:.1f} s ({settle_writes} writes, last second "
                    f"{rate:.0f} B/s a node): idle anyway"
                )
                sampler.window()
                before = traffic_bytes(nodes)
                nodes_before, started_idle = node_side_cpu_s(nodes), time.monotonic()
                threads_before = thread_cpu_s(proc.pid)
                writes = StoreWrites(store_url)
                with profiled(py_spy, proc.pid, Path(f"fleet-{size}-idle.json"), rate=spy_rate):
                    time.sleep(idle_s)
                log(f"idle store writes in {idle_s:.0f} s: {writes.close()}")
                log(f"idle Pod and Node writes changed: {writes.changed()}")
                idle = sampler.window()
                threads_after = thread_cpu_s(proc.pid)
                log(
                    "idle CPU % of a core by thread: "
                    + busiest_threads(
                        threads_before,
                        threads_after,
                        time.monotonic() - started_idle,
                        thread_names(py_spy, proc.pid),
                    )
                )
                after = traffic_bytes(nodes)
                node_cpu = node_side_cpu_s(nodes) - nodes_before
                result.nodes_idle_cpu_pct = 100 * node_cpu / (time.monotonic() - started_idle)
                result.idle_cpu_pct = cpu_pct(idle[0], idle[-1])
                result.idle_rss_mb = idle[-1].rss_mb
                result.threads = idle[-1].threads
                result.fds = idle[-1].fds
                result.bytes_per_node_s = (after - before) / idle_s / size
                memory = smaps_rollup_mb(proc.pid)
                log("idle memory MB: " + ", ".join(f"{k} {v:.1f}" for k, v in memory.items()))
                for round_no in range(1, rounds + 1):
                    since = repo.commit(f"config {round_no}", {"config.yaml": config_map(round_no)})
                    each = wait_acks(nodes, round_no, since, timeout=120)
                    result.ack_each.extend(each)
                    result.ack_all.append(max(each))
                    log(
                        f"round {round_no}: all {size} nodes acked in {max(each):.2f} s "
                        f"(first {min(each):.2f} s, median {pct(each, 0.5):.2f} s)"
                    )
                if not rollout:
                    return result
                sampler.window()
                busy_before, total_before = machine_busy_s()
                ready_s, result.rollout_cpu = phase("rollout", "v1")
                during = sampler.window()
                busy_after, total_after = machine_busy_s()
                result.rollout_machine_busy_pct = (
                    100 * (busy_after - busy_before) / max(1e-9, total_after - total_before)
                )
                result.ready_s.append(ready_s)
                result.rollout_peak_rss_mb = max(s.rss_mb for s in during)
                result.rollout_cpu_pct = cpu_pct(during[0], during[-1])
                log(f"rollout of {result.pods} pods Ready in {ready_s:.1f} s")
            finally:
                sampler.close()
                pods.close()
    return result


def _finite(value: float) -> float | None:
    """A figure for the JSON line: None when the wait timed out (JSON has no infinity)."""
    return round(value, 2) if math.isfinite(value) else None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,30,100")
    parser.add_argument("--rounds", type=int, default=5, help="config commits per size")
    parser.add_argument("--idle", type=float, default=30.0, help="idle window, seconds")
    parser.add_argument(
        "--settle-quiet",
        type=float,
        default=10.0,
        help="before the idle window, wait for this many seconds with no store write "
        "but the node leases' and the sync state's, and the node links near silent",
    )
    parser.add_argument(
        "--settle-max",
        type=float,
        default=180.0,
        help="longest wait for that quiet (the idle window starts then anyway, logged)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="longest wait for a deploy or rollout to be Ready (reported as inf past it)",
    )
    parser.add_argument(
        "--no-rollout",
        action="store_true",
        help="stop each size after the acks (no rollout figures: a quicker memory measurement)",
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="record the control plane and the first node's agent with this py-spy through "
        "the deploy and the rollout, and the control plane through the idle window "
        "(speedscope JSON, fleet-SIZE-deploy.json, -idle.json, -rollout.json, "
        "-deploy-agent.json and -rollout-agent.json in the current directory), and name the "
        "threads of the idle window with its dump",
    )
    parser.add_argument(
        "--py-spy-rate",
        type=int,
        default=50,
        help="samples a second (py-spy itself takes CPU from the two cores being measured)",
    )
    parser.add_argument(
        "--full-status-s",
        type=float,
        metavar="S",
        help="agents send every pod's report this often (default the agent's, 5 minutes): "
        "a short one puts several full reports of every node in a short idle window",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: list[SizeResult] = []
    with tempfile.TemporaryDirectory(prefix="fleet-", dir="/tmp") as tmp:
        for size in sizes:
            results.append(
                run_size(
                    size,
                    rounds=args.rounds,
                    idle_s=args.idle,
                    timeout_s=args.timeout,
                    settle_quiet_s=args.settle_quiet,
                    settle_max_s=args.settle_max,
                    work=Path(tmp),
                    rollout=not args.no_rollout,
                    py_spy=args.py_spy,
                    spy_rate=args.py_spy_rate,
                    full_status_s=args.full_status_s,
                    log=lambda line: print(f"  {line}", flush=True),
                )
            )
    header = (
        f"{'nodes':>5} {'pods':>6} {'deploy s':>8} {'rss MB':>7} {'cpu idle %':>10} "
        f"{'threads':>7} {'fds':>5} {'B/s/node':>8} {'ack p50':>7} {'ack p99':>7} "
        f"{'ack node p99':>12} {'ready s':>7} {'roll rss':>8} {'roll cpu %':>10} "
        f"{'nodes idle %':>12} {'machine roll %':>14}"
    )
    print(header)
    for r in results:
        print(
            f"{r.nodes:>5} {r.pods:>6} {r.deploy_s:>8.1f} {r.idle_rss_mb:>7.1f} "
            f"{r.idle_cpu_pct:>10.2f} {r.threads:>7} {r.fds:>5} {r.bytes_per_node_s:>8.0f} "
            f"{pct(r.ack_all, 0.5):>7.2f} {pct(r.ack_all, 0.99):>7.2f} "
            f"{pct(r.ack_each, 0.99):>12.2f} {max(r.ready_s, default=float('inf')):>7.1f} "
            f"{r.rollout_peak_rss_mb:>8.1f} {r.rollout_cpu_pct:>10.1f} "
            f"{r.nodes_idle_cpu_pct:>12.1f} {r.rollout_machine_busy_pct:>14.1f}"
        )
    first, last = results[0], results[-1]
    span = last.nodes - first.nodes
    slopes: dict[str, float] = {}
    if span > 0:
        slopes = {
            "rss_slope_mb_per_node": (last.idle_rss_mb - first.idle_rss_mb) / span,
            "threads_slope_per_node": (last.threads - first.threads) / span,
            "fds_slope_per_node": (last.fds - first.fds) / span,
            "cpu_idle_slope_pct_per_node": (last.idle_cpu_pct - first.idle_cpu_pct) / span,
        }
        print("slopes from", first.nodes, "to", last.nodes, "nodes:")
        for key, value in slopes.items():
            print(f"  {key}: {value:.3f}")
    else:
        print(f"slopes: none (one size, {last.nodes} nodes; give --sizes two or more)")
    n = last.nodes
    print(
        json.dumps(
            {
                "nodes": n,
                f"cp_rss_mb_{n}": round(last.idle_rss_mb, 1),
                f"cp_cpu_idle_pct_{n}": round(last.idle_cpu_pct, 2),
                f"ack_p99_s_{n}": round(pct(last.ack_all, 0.99), 3),
                f"ready_p99_s_{n}": _finite(max(last.ready_s, default=float("inf"))),
                f"deploy_s_{n}": _finite(last.deploy_s),
                f"threads_{n}": last.threads,
                f"fds_{n}": last.fds,
                f"bytes_per_node_s_{n}": round(last.bytes_per_node_s),
                "rss_slope_mb_per_node": (
                    round(slopes["rss_slope_mb_per_node"], 3) if slopes else None
                ),
                f"deploy_agents_cpu_s_{n}": (
                    round(last.deploy_cpu.agents_s, 1) if last.deploy_cpu else None
                ),
                f"rollout_agents_cpu_s_{n}": (
                    round(last.rollout_cpu.agents_s, 1) if last.rollout_cpu else None
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
