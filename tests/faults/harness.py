"""Real parts for the fault suite: a 3-member etcd cluster, supervised ``capstan up`` replicas.

``EtcdCluster`` runs three real etcd members on 127.0.0.x (loopback addresses of their own,
free ports) that can be killed and restarted with their data. ``ControlPlane`` runs N
``capstan up --store etcd://...`` replicas as child processes sharing one local agent (a real
``capstan-agent serve`` with Docker), restarts one that exits as systemd's
``Restart=always`` would, and reads the leader key to say which replica leads.
``PodCensus`` follows every Pod change through a store watch and keeps the highest number of
live pods of one app seen at any revision (the maxSurge invariant). Used by
tests/faults and bench/faults.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

from reconciler.api import DATA_KEYS_FILE, Api, SystemClock
from reconciler.store import Store, StoreError, open_store
from reconciler.store.election import LEADER_KEY, ControlPlaneView, read_control_plane
from schemas import Pod
from schemas.datakeys import DataKeys
from tests.fixtures.waiting import wait_until
from tests.integration.store.etcd_server import ETCD

ROOT = Path(__file__).resolve().parents[2]
CAPSTAN = ROOT / ".venv" / "bin" / "capstan"

#: Short leases so a takeover takes seconds (the defaults are Kubernetes' 15/10/2).
FAST_ELECTION = ("3", "2", "0.5")


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


class EtcdMember:
    def __init__(self, name: str, address: str, work: Path, *, log_applies: bool = False) -> None:
        self.name = name
        self.address = address
        self.log_applies = log_applies
        self.client_url = f"http://{address}:{_free_port(address)}"
        self.peer_url = f"http://{address}:{_free_port(address)}"
        self.data_dir = work / f"{name}.data"
        self.log_path = work / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return self.client_url.removeprefix("http://")

    def start(self, initial_cluster: str) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    ETCD,
                    "--name",
                    self.name,
                    "--data-dir",
                    str(self.data_dir),
                    "--listen-client-urls",
                    self.client_url,
                    "--advertise-client-urls",
                    self.client_url,
                    "--listen-peer-urls",
                    self.peer_url,
                    "--initial-advertise-peer-urls",
                    self.peer_url,
                    "--initial-cluster",
                    initial_cluster,
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    f"capstan-faults-{os.getpid()}",
                    "--max-request-bytes",
                    str(2 * 1024 * 1024),
                    # Every applied request logged with its compares (as "took too long"):
                    # the store's own record of who wrote under which term.
                    *(
                        ("--logger", "zap", "--experimental-warning-apply-duration", "1ns")
                        if self.log_applies
                        else ()
                    ),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def healthy(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log_tail()
        try:
            reply = httpx.get(f"{self.client_url}/health", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return False
        return bool(reply.get("health") == "true")

    def kill(self) -> None:
        """SIGKILL; the data directory stays, so ``start`` brings the member back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-2000:]

    def applied_writes(self) -> list[AppliedWrite]:
        """The writes this member applied, in order (needs ``log_applies``)."""
        assert self.log_applies
        writes = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"apply request took too long"' not in line:
                continue
            entry = json.loads(line)
            request = entry.get("request", "")
            keys = tuple(_WRITE_KEY.findall(request))
            if not keys:
                continue  # a lease grant/revoke, a compaction, a read-only txn
            fence = _FENCE.search(request)
            request_id = _REQUEST_ID.search(request)
            writes.append(
                AppliedWrite(
                    at=datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")),
                    keys=keys,
                    term=int(fence.group(1)) if fence else None,
                    request_id=request_id.group(1) if request_id else "",
                )
            )
        return writes


@dataclass(frozen=True)
class AppliedWrite:
    """One write request an etcd member applied: when, the keys it writes, and the term it
    was fenced with (the leader key's create_revision it compared; None: not fenced)."""

    at: datetime
    keys: tuple[str, ...]
    term: int | None
    #: The raft request's header ID: the same in every member's log.
    request_id: str = ""


_WRITE_KEY = re.compile(r'(?:request_put|request_delete_range|put|delete_range):<key:"([^"]*)"')
_REQUEST_ID = re.compile(r"header:<ID:(\d+)")
_FENCE = re.compile(r'target:CREATE key:"' + LEADER_KEY + r'" create_revision:(\d+)\b')


class EtcdCluster:
    """Three etcd members, each on its own 127.0.0.x address."""

    def __init__(self, work: Path, *, size: int = 3, log_applies: bool = False) -> None:
        base = 20 + os.getpid() % 200
        self.members = [
            EtcdMember(f"m{i}", f"127.0.{base}.{10 + i}", work, log_applies=log_applies)
            for i in range(size)
        ]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(m.endpoint for m in self.members)

    def start(self) -> EtcdCluster:
        for member in self.members:
            member.start(self.initial_cluster)
        wait_until(
            lambda: all(m.healthy() for m in self.members), timeout=60, what="etcd cluster healthy"
        )
        return self

    def applied_writes(self) -> list[AppliedWrite]:
        """Every write any member logged applying, once each, in order of time.

        WARNING: one member's log is not the record. etcd's zap logger samples (after 100
        lines of one message in a second it keeps every 100th), and the member serving a
        replica's reads logs each read with the same message, so it drops writes; the members
        that only apply raft entries keep them. Each write's header ID joins the logs."""
        by_id: dict[str, AppliedWrite] = {}
        for member in self.members:
            for write in member.applied_writes():
                by_id.setdefault(write.request_id or f"{member.name}:{write.at}", write)
        return sorted(by_id.values(), key=lambda write: write.at)

    def restart(self, member: EtcdMember) -> None:
        member.start(self.initial_cluster)

    def close(self) -> None:
        for member in self.members:
            member.kill()


class Replica:
    """One ``capstan up`` process; ``generation`` counts its (re)starts."""

    def __init__(self, index: int, plane: ControlPlane) -> None:
        self.index = index
        self.plane = plane
        self.state_dir = Path(tempfile.mkdtemp(prefix=f"capf{index}-", dir="/tmp"))
        shutil.copy2(plane.data_keys, self.state_dir / DATA_KEYS_FILE)
        self.log_path = plane.work / f"replica-{index}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self.identity = ""
        self.exits: list[int] = []

    def start(self) -> None:
        self.generation += 1
        self.identity = f"replica-{self.index}.{self.generation}"
        lease, renew, retry = self.plane.election
        args = [
            str(CAPSTAN),
            "up",
            str(self.plane.repo),
            "--store",
            self.plane.store_url,
            "--state-dir",
            str(self.state_dir),
            "--no-local-agent",
            "--listen",
            "127.0.0.1:0",
            "--insecure-http",
            "--resync",
            "2",
            "--log-level",
            "INFO",
            "--leader-elect-lease-duration",
            lease,
            "--leader-elect-renew-deadline",
            renew,
            "--leader-elect-retry-period",
            retry,
            "--leader-elect-identity",
            self.identity,
            *self.plane.extra_args,
        ]
        env = {
            **os.environ,
            "CAPSTAN_AGENT_SOCKET": str(self.plane.agent_socket),
            **self.plane.env,
        }
        with open(self.log_path, "ab") as log:
            log.write(f"==== start {self.identity}\n".encode())
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reap(self) -> int | None:
        """The exit status if the process ended (recorded once), else None."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is not None:
            self.exits.append(code)
            self.proc = None
        return code

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reap()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status(self, *args: str) -> str:
        """``capstan status ARGS`` as an operator on this replica's host runs it: through the
        replica's HTTP API (its state directory's client config and run info)."""
        done = subprocess.run(
            [str(CAPSTAN), "status", "--state-dir", str(self.state_dir), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


class ControlPlane:
    """``count`` supervised replicas on one etcd cluster (each with ``env`` added to this
    process's environment); a replica that exits is restarted (after ``restart_delay_s``)
    unless it is ``held``."""

    def __init__(
        self,
        *,
        repo: Path,
        store_url: str,
        agent_socket: Path,
        work: Path,
        count: int = 3,
        election: tuple[str, str, str] = FAST_ELECTION,
        restart_delay_s: float = 0.5,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.repo = repo
        self.store_url = store_url
        self.agent_socket = agent_socket
        self.work = work
        self.election = election
        self.restart_delay_s = restart_delay_s
        self.extra_args = extra_args
        self.env = dict(env or {})
        # Replicas on one store share one data key file, as docs/ha.md tells an operator to
        # (each would otherwise make its own and could not open the others' Secrets).
        self.data_keys = work / DATA_KEYS_FILE
        DataKeys.load_or_create(self.data_keys)
        self.replicas = [Replica(i, self) for i in range(count)]
        self.held: set[int] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._supervisor = threading.Thread(
            target=self._supervise, daemon=True, name="faults-supervisor"
        )
        self._store: Store | None = None
        self._api: Api | None = None

    def start(self) -> ControlPlane:
        for replica in self.replicas:
            replica.start()
        self._supervisor.start()
        return self

    def _supervise(self) -> None:
        while not self._stopped.wait(0.1):
            with self._lock:
                for replica in self.replicas:
                    if replica.index in self.held or replica.running():
                        continue
                    if replica.reap() is not None or replica.proc is None:
                        if self._stopped.wait(self.restart_delay_s):
                            return
                        replica.start()

    def hold(self, replica: Replica) -> None:
        with self._lock:
            self.held.add(replica.index)

    def release(self, replica: Replica) -> None:
        with self._lock:
            self.held.discard(replica.index)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.store_url)
        return self._store

    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = Api(self.store, clock=SystemClock())
        return self._api

    def view(self) -> ControlPlaneView | None:
        try:
            return read_control_plane(self.store)
        except StoreError:
            return None

    def leader(self) -> Replica | None:
        view = self.view()
        if view is None or view.leader is None:
            return None
        for replica in self.replicas:
            if replica.identity == view.leader and replica.running():
                return replica
        return None

    def wait_leader(self, *, timeout: float = 60) -> Replica:
        leader: Replica = wait_until(self.leader, timeout=timeout, what="a leader")
        return leader

    def term(self) -> int | None:
        view = self.view()
        return view.term if view is not None else None

    def logs(self) -> str:
        return "\n".join(f"--- replica {r.index}\n{r.log()[-4000:]}" for r in self.replicas)

    def close(self) -> None:
        self._stopped.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=5)
        for replica in self.replicas:
            replica.stop()
        if self._store is not None:
            self._store.close()
        for replica in self.replicas:
            shutil.rmtree(replica.state_dir, ignore_errors=True)


class PodCensus:
    """Follows Pods of ``app`` from a store watch, from the moment it is made (the app rolled
    out). After every change it notes the live pods (not terminating: ``max_live``, the
    maxSurge bound), the available ones (live and Ready: ``min_available``, the
    maxUnavailable bound: below it a serving pod was lost) and every container restart
    (``restarts``: a container that died under a pod). ``close`` fails if the watch broke
    before (nothing after it would have been seen)."""

    def __init__(self, api: Api, *, app: str) -> None:
        self._api = api
        self._app = app
        self.live: dict[str, Pod] = {}
        self.max_live = 0
        self.min_available: int | None = None
        #: The live pods when ``min_available`` was reached (for the failure message).
        self.low_point: list[str] = []
        self.restarts: dict[str, int] = {}
        self.changes = 0
        self.watch_error: BaseException | None = None
        self._lock = threading.Lock()
        listed = api.list(Pod)
        with self._lock:  # the listed pods are one moment: counted together
            for pod in listed.items:
                self._apply(pod, deleted=False, count=False)
        self._count()
        self._stream = api.watch(Pod, from_revision=listed.resource_version)
        self._closed = False
        self._thread = threading.Thread(target=self._follow, daemon=True, name="pod-census")
        self._thread.start()

    def _apply(self, pod: Pod, *, deleted: bool, count: bool = True) -> None:
        if pod.metadata.labels.get("app") != self._app:
            return
        key = f"{pod.namespace}/{pod.name}"
        if deleted or pod.metadata.deletion_timestamp is not None:
            self.live.pop(key, None)
        else:
            self.live[key] = pod
        for status in pod.status.container_statuses if pod.status else ():
            if status.restart_count:
                self.restarts[f"{key}/{status.name}"] = status.restart_count
        if count:
            self.changes += 1
            self._count()

    def _count(self) -> None:
        available = sum(1 for p in self.live.values() if p.status and p.status.ready)
        self.max_live = max(self.max_live, len(self.live))
        if self.min_available is None or available < self.min_available:
            self.min_available = available
            self.low_point = [_describe(p) for p in self.live.values()]

    def _follow(self) -> None:
        try:
            for event in self._stream:
                with self._lock:
                    self._apply(event.object, deleted=event.type == "DELETED")
        except Exception as exc:  # reported by close()
            if not self._closed:
                self.watch_error = exc
            return
        if not self._closed:
            self.watch_error = RuntimeError("the watch ended")

    def close(self) -> None:
        """Stops following; raises if the watch broke before (the census would be partial)."""
        self._closed = True
        self._stream.close()
        if self.watch_error is not None:
            raise AssertionError(f"the pod census's watch broke: {self.watch_error!r}")


def _describe(pod: Pod) -> str:
    ready = pod.status.condition("Ready") if pod.status else None
    state = f"Ready={ready.status} ({ready.reason})" if ready else "no Ready condition"
    version = pod.metadata.annotations.get("example.com/version")
    return f"{pod.name} {version} on {pod.spec.node_name or '-'}: {state}"


def monotonic_wait(seconds: float) -> None:
    """A pause that is part of the scenario (a fault's duration), not a wait for an event."""
    time.sleep(seconds)
