"""Faults of the hosts around the control plane, injected for real into one ``capstan up``.

- Docker on the node's host is stopped and started again: a second dockerd of the test's own
  (its own data root, socket, exec root and bridge; the machine's dockerd is shared and never
  touched) runs the local agent's pods. In between the node is NotReady and every pod not
  Ready, both saying the runtime is down; afterwards the same pods run again and their
  restart counts show it.
- The Git remote (``git http-backend`` over HTTP) goes away for 2 minutes: ``capstan status``
  shows the error and a capped exponential back-off all along, nothing running changes, and
  the commit pushed meanwhile syncs once the remote is back.
- The state directory is a small tmpfs that fills up: API writes answer 507 with the reason,
  what was acknowledged stays, and the same process works again once space is freed.
- The node agent's clocks are 10 minutes ahead and behind: its wall clock through libfaketime
  (monotonic left alone), its monotonic and boot clocks through a time namespace of its own.
  The agent's own stamps show the skew; the node stays Ready, its lease renewed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
import pytest

from reconciler.api import Api, ApiError
from reconciler.client import Client
from reconciler.sync import list_sync_records, read_sync_state
from schemas import ConfigMap, Node, Pod
from schemas.meta import ObjectMeta
from tests.e2e.conftest import CapstanUp, GitRepo
from tests.e2e.test_gitops_loop import NODE, version_files
from tests.faults.harness import monotonic_wait
from tests.fixtures.git_http import git_http_handler
from tests.fixtures.local_agent import BUSYBOX, LocalAgent
from tests.fixtures.waiting import wait_until

ROLLOUT_S = 180


def _rolled_out(up: CapstanUp, version: str) -> bool:
    pods = up.ready_pods()
    return len(pods) == 2 and all(
        p.metadata.annotations.get("example.com/version") == version for p in pods
    )


def _wait_rollout(up: CapstanUp, version: str) -> None:
    try:
        wait_until(lambda: _rolled_out(up, version), timeout=ROLLOUT_S, what=f"{version} up")
    except AssertionError as exc:
        agent_log = up.state_dir / "agent" / "agent.log"
        tail = agent_log.read_text(errors="replace")[-3000:] if agent_log.exists() else ""
        raise AssertionError(f"{exc}\n{up.log()[-3000:]}\n--- agent\n{tail}") from None


def _restarts(pods: list[Pod]) -> dict[str, int]:
    return {
        p.name: sum(c.restart_count for c in p.status.container_statuses)
        for p in pods
        if p.status is not None
    }


def _ready_condition(api: Api, node: str) -> tuple[str, str | None, str | None]:
    found = api.get(Node, node)
    ready = found.status.condition("Ready") if found.status is not None else None
    assert ready is not None
    return ready.status, ready.reason, ready.message


# -- 4. Docker stopped and started on the node's host --------------------------------------


class SecondDockerd:
    """A dockerd of the test's own: data root, exec root, pidfile and socket in a temporary
    directory, containers on a bridge it alone uses, no iptables rules (published ports go
    through docker-proxy), containerd objects in namespaces of its own."""

    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="hfd-", dir="/tmp"))  # short: socket path
        self.socket = self.work / "docker.sock"
        self.url = f"unix://{self.socket}"
        tag = uuid.uuid4().hex[:6]
        self.bridge = f"hfbr{tag}"
        self.namespace = f"hf{tag}"
        self.subnet = _free_subnet()
        self.log_path = self.work / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def create_bridge(self) -> None:
        gateway = next(self.subnet.hosts())
        for argv in (
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{gateway}/{self.subnet.prefixlen}", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True)

    def start(self) -> docker.DockerClient:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "dockerd",
                    "--host",
                    self.url,
                    "--data-root",
                    str(self.work / "data"),
                    "--exec-root",
                    str(self.work / "exec"),
                    "--pidfile",
                    str(self.work / "docker.pid"),
                    "--bridge",
                    self.bridge,
                    "--iptables=false",
                    "--ip6tables=false",
                    "--ip-masq=false",
                    "--containerd-namespace",
                    self.namespace,
                    "--containerd-plugins-namespace",
                    f"{self.namespace}p",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client: docker.DockerClient = wait_until(
            self._client, timeout=60, what="the test's dockerd up"
        )
        return client

    def _client(self) -> docker.DockerClient | None:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log()
        # The client's constructor asks the daemon for its API version, and one that fails
        # leaves its socket to the garbage collector: ping on a socket of our own first.
        path = self.url.removeprefix("unix://")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(5)
                probe.connect(path)
                probe.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                if b" 200 " not in probe.recv(1024):
                    return None
        except OSError:
            return None
        return docker.DockerClient(base_url=self.url, timeout=60)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, as ``systemctl stop docker`` does: dockerd stops every container first."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def close(self) -> None:
        self.stop()
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 172.31.0.0/16 no route of this host uses (the shared dockerd has 172.17)."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    while True:
        net = ipaddress.IPv4Network(f"172.31.{random.randint(1, 254)}.0/24")
        if str(net.network_address).rsplit(".", 1)[0] + "." not in routes:
            return net


@pytest.fixture
def second_dockerd(docker_client: docker.DockerClient) -> Iterator[SecondDockerd]:
    daemon = SecondDockerd()
    try:
        daemon.create_bridge()
        client = daemon.start()
        # The pods' image, copied from the shared daemon (no registry here).
        client.images.load(b"".join(docker_client.images.get(BUSYBOX).save(named=True)))
        client.close()
        yield daemon
    finally:
        daemon.close()


@pytest.mark.timeout(600)
def test_docker_stopped_and_started_brings_the_pods_back(
    second_dockerd: SecondDockerd, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("v1", {"node.yaml": NODE, **version_files("v1")})
    client = docker.DockerClient(base_url=second_dockerd.url, timeout=60)
    up = CapstanUp(repo, tmp_path, client)
    try:
        up.start(
            f"--agent-arg=--docker-host={second_dockerd.url}",
            "--agent-arg=--backoff-initial=1",
            "--agent-arg=--heartbeat=1",
        )
        _wait_rollout(up, "v1")
        before = {p.metadata.uid: p for p in up.ready_pods()}
        restarts_before = _restarts(list(before.values()))
        assert up.containers(), "the pods run in the test's dockerd"

        # Its pooled connections die with dockerd: closed here, a new client comes after.
        client.close()
        second_dockerd.stop()
        # In between: the node is NotReady because of the runtime, and no pod is Ready.
        wait_until(
            lambda: _ready_condition(up.api, "local")[:2] == ("False", "RuntimeUnavailable"),
            timeout=60,
            what="the node NotReady for its runtime",
        )
        assert "Docker is unreachable" in (_ready_condition(up.api, "local")[2] or "")
        # The node's reports say why, pod by pod: wait until every pod carries the reason
        # (a pod can turn not Ready a report before its reason is written).
        wait_until(
            lambda: (
                not up.ready_pods()
                and all(
                    p.status is not None and p.status.reason == "ContainerRuntimeDown"
                    for p in up.pods()
                )
            ),
            timeout=60,
            what="the pods not Ready, each saying the runtime is down",
        )
        for pod in up.pods():
            assert pod.metadata.uid in before, "no replacement is made for a runtime outage"
            assert pod.status is not None
            assert pod.status.reason == "ContainerRuntimeDown"
            assert "Docker is unreachable" in (pod.status.message or "")
        status = up.status()
        assert [n["ready"] for n in status["nodes"]] == ["False"]

        client = up.docker = second_dockerd.start()
        wait_until(
            lambda: len(up.ready_pods()) == 2, timeout=ROLLOUT_S, what="the pods Ready again"
        )
        after = up.ready_pods()
        assert {p.metadata.uid for p in after} == set(before), "the same pods came back"
        restarts_after = _restarts(after)
        for name, count in restarts_before.items():
            assert restarts_after[name] > count, (name, restarts_before, restarts_after)
        wait_until(
            lambda: _ready_condition(up.api, "local")[0] == "True",
            timeout=60,
            what="the node Ready again",
        )
    finally:
        if not second_dockerd.running():
            # Failed while Docker was down: bring it back, so teardown can clean up.
            client = up.docker = second_dockerd.start()
        up.close()
        client.close()


# -- 5. The Git remote down for 2 minutes -------------------------------------------------

OUTAGE_S = 120
FETCH_BACKOFF = (0.5, 4.0)


class GitHttpServer:
    """``git http-backend`` for the bare repositories under ``root``, on one fixed port that
    survives a stop and a start (the remote going away and coming back)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None

    def _count(self, _request: BaseHTTPRequestHandler) -> None:
        self.requests += 1

    def start(self) -> None:
        handler = git_http_handler(self.root, on_request=self._count)
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@pytest.mark.timeout(600)
def test_git_remote_down_backs_off_says_why_and_syncs_when_back(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    work = GitRepo(tmp_path / "work")
    work.commit("v1", {"node.yaml": NODE, **version_files("v1")})
    bare = tmp_path / "srv" / "repo.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(bare)], check=True)
    server = GitHttpServer(bare.parent)
    server.start()
    up = CapstanUp(work, tmp_path, docker_client, source=server.url("repo.git"))
    try:
        up.start("--poll-interval", "1", "--fetch-backoff", *map(str, FETCH_BACKOFF))
        wait_until(lambda: _rolled_out(up, "v1"), timeout=ROLLOUT_S, what="v1 from the remote")
        containers = up.app_containers()
        records = len(list_sync_records(up.api))

        server.stop()
        down_at = time.monotonic()
        # A commit pushed while the forge's HTTP side is down (the push goes to its disk).
        v2 = work.commit("v2", version_files("v2"))
        work.git("push", "-q", str(bare), "main")
        seen: dict[int, float] = {}

        def backed_off_to_the_cap() -> bool:
            fetch = up.status()["sync"]["fetch"]
            if fetch is not None:
                seen[fetch["failures"]] = fetch["backoffSeconds"]
            return len(seen) >= 2 and max(seen) >= 5

        wait_until(backed_off_to_the_cap, timeout=90, interval=0.3, what="5 failed fetches")
        # Each failure in a row doubles the pause, from 0.5 s up to the 4 s cap.
        initial, cap = FETCH_BACKOFF
        assert all(backoff == min(cap, initial * 2 ** (n - 1)) for n, backoff in seen.items()), seen
        status = up.status()["sync"]
        fetch = status["fetch"]
        assert f"127.0.0.1:{server.port}" in fetch["error"]
        assert "fetch" in fetch["error"]
        assert datetime.fromisoformat(fetch["nextAttemptAt"]) > datetime.fromisoformat(
            fetch["failingSince"]
        )
        text = up.cli("status")
        assert "Fetch:    FAILING since" in text
        assert fetch["error"] in text
        # Nothing running changed: the same containers, v1 still live, no sync of v2.
        assert status["liveCommit"] == status["seenCommit"] != v2
        assert up.app_containers() == containers
        assert all(r.commit != v2 for r in list_sync_records(up.api))
        assert len(list_sync_records(up.api)) == records

        # The rest of the outage: still failing at the capped pace, still saying why, and
        # nothing running changes (the live commit keeps being resynced as it is).
        failures = max(seen)
        while time.monotonic() - down_at < OUTAGE_S:
            status = up.status()["sync"]
            fetch = status["fetch"]
            assert fetch is not None, "the fetch error vanished while the remote was down"
            assert fetch["backoffSeconds"] == cap, fetch
            assert f"127.0.0.1:{server.port}" in fetch["error"]
            assert status["liveCommit"] == status["seenCommit"] != v2
            assert up.app_containers() == containers
            failures = fetch["failures"]
            monotonic_wait(2.0)
        assert failures >= max(seen) + 5, "the fetch was not retried all along the outage"
        assert len(list_sync_records(up.api)) == records

        server.start()
        wait_until(lambda: _rolled_out(up, "v2"), timeout=ROLLOUT_S, what="v2 once it is back")
        final = up.status()["sync"]
        assert final["liveCommit"] == v2
        assert final["fetch"] is None
        assert "Fetch:" not in up.cli("status")
        assert server.requests > 0
    finally:
        up.close()
        server.stop()


# -- 6. The disk under the state directory full --------------------------------------------


@contextlib.contextmanager
def _tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            path.rmdir()


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem refuses more (ENOSPC); returns it."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    # Unbuffered: a buffered file would keep the refused bytes and fail again on close.
    with open(filler, "wb", buffering=0) as handle:
        with contextlib.suppress(OSError):
            while True:
                handle.write(chunk)
                handle.flush()
        with contextlib.suppress(OSError):
            while True:  # the last partial megabyte too
                handle.write(b"\0" * 4096)
                handle.flush()
    return filler


def _note(name: str, *, size: int = 1000) -> ConfigMap:
    return ConfigMap(
        metadata=ObjectMeta(name=name, namespace="default"), data={"k": _value(name, size)}
    )


def _value(name: str, size: int) -> str:
    return (name * (size // len(name) + 1))[:size]


@pytest.mark.timeout(600)
def test_disk_full_under_the_state_dir_refuses_writes_and_recovers(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("v1", {"node.yaml": NODE, **version_files("v1")})
    up = CapstanUp(repo, tmp_path, docker_client)
    with _tmpfs(up.state_dir, 64):
        try:
            up.start("--listen", "127.0.0.1:0", "--fetch-backoff", "0.5", "4")
            wait_until(lambda: _rolled_out(up, "v1"), timeout=ROLLOUT_S, what="v1 rolled out")
            assert up.proc is not None
            pid = up.proc.pid
            config = up.state_dir / "config"
            wait_until(config.exists, timeout=30, what="the client config")
            with Client.from_config(config) as client:
                acked: dict[str, int] = {}
                for i in range(20):
                    acked[client.create(_note(f"acked-{i}")).name] = 1000

                filler = _fill(up.state_dir)
                refused: dict[str, ApiError] = {}

                def write_refused() -> bool:
                    # SQLite's WAL may still have room it allocated before: writes that fit
                    # there are durable and acknowledged; big ones soon need new pages.
                    name = f"while-full-{len(acked) + len(refused)}"
                    try:
                        client.create(_note(name, size=200_000))
                    except ApiError as exc:
                        refused[name] = exc
                        return exc.code == 507
                    acked[name] = 200_000
                    return False

                wait_until(write_refused, timeout=60, what="a write refused for the full disk")
                error = list(refused.values())[-1]
                assert error.reason == "InsufficientStorage"
                assert "database or disk is full" in error.message
                assert str(up.state_dir / "state.db") in error.message
                # A commit made meanwhile cannot even be fetched into the state dir's cache.
                v2 = repo.commit("v2", version_files("v2"))
                wait_until(
                    lambda: (
                        "No space left on device" in up.log()
                        or "database or disk is full" in up.log()
                    ),
                    timeout=60,
                    what="the sync loop failing for the full disk, in the log",
                )
                # Reads still work, and what was acknowledged is all there.
                for name, size in acked.items():
                    got = client.get(ConfigMap, name, namespace="default")
                    assert got.data["k"] == _value(name, size)
                assert up.app_containers(), "pods keep running"

                filler.unlink()
                # The same process writes again: no restart.
                wait_until(
                    lambda: _created(client, "after-full"), timeout=60, what="writes accepted again"
                )
                wait_until(
                    lambda: _rolled_out(up, "v2"), timeout=ROLLOUT_S, what="v2 after space is back"
                )
                assert read_sync_state(up.api).live_commit == v2
                assert up.proc is not None
                assert up.proc.pid == pid
                assert up.proc.poll() is None
                names = {cm.name for cm in client.list(ConfigMap, namespace="default").items}
                assert set(acked) <= names
                # A refused write left nothing behind.
                assert not set(refused) & names
        finally:
            up.close()
    # The 507 is also in the log of the API call that got it.
    assert "InsufficientStorage" in up.log() or "disk is full" in up.log()


def _created(client: Client, name: str) -> bool:
    try:
        client.create(_note(name))
    except ApiError as exc:
        return exc.code == 409
    return True


# -- 8. The node agent's clock 10 minutes off ----------------------------------------------

SKEW_S = 600
GRACE_S = 15
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
MONOTONIC_SLEEP = Path(__file__).with_name("monotonic_sleep.c")


@pytest.fixture(scope="module")
def monotonic_sleep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``monotonic_sleep.c`` built: preloaded before libfaketime (see the source for why)."""
    assert LIBFAKETIME.exists(), f"libfaketime is not installed ({LIBFAKETIME})"
    built = tmp_path_factory.mktemp("clock") / "monotonic_sleep.so"
    flags = ("-shared", "-fPIC", "-O2", "-Wall", "-Werror")
    subprocess.run(
        ["gcc", *flags, "-o", str(built), str(MONOTONIC_SLEEP), "-ldl"],
        check=True,
        capture_output=True,
    )
    return built


def _skewed(offset_s: int, monotonic_sleep: Path) -> tuple[str, ...]:
    """What runs the agent with every clock ``offset_s`` off. The wall clock: libfaketime
    (monotonic clocks left alone: ``FAKETIME_DONT_FAKE_MONOTONIC``). The monotonic and boot
    clocks: a time namespace of its own, whose clocks the kernel moves by ``offset_s``."""
    return (
        "unshare",
        "--time",
        "--fork",
        "--kill-child=SIGTERM",
        "--monotonic",
        str(offset_s),
        "--boottime",
        str(offset_s),
        "--",
        "env",
        f"LD_PRELOAD={monotonic_sleep} {LIBFAKETIME}",
        f"FAKETIME={offset_s:+d}",
        "FAKETIME_DONT_FAKE_MONOTONIC=1",
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("offset_s", [SKEW_S, -SKEW_S])
def test_a_node_whose_clock_is_ten_minutes_off_stays_ready(
    docker_client: docker.DockerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    monotonic_sleep: Path,
    offset_s: int,
) -> None:
    agent = LocalAgent(docker_client, tmp_path)
    repo = GitRepo(tmp_path / "repo")
    repo.commit("v1", {"node.yaml": NODE, **version_files("v1")})
    monkeypatch.setenv("CAPSTAN_AGENT_SOCKET", str(agent.socket))
    up = CapstanUp(repo, tmp_path, docker_client)
    up.node = agent.node  # the test's containers are the agent's
    try:
        agent.start(wrapper=_skewed(offset_s, monotonic_sleep))
        assert agent.proc is not None
        _assert_skewed(agent.proc.pid, offset_s)
        up.start("--no-local-agent", "--node-monitor-grace-period", str(GRACE_S))
        wait_until(lambda: _rolled_out(up, "v1"), timeout=ROLLOUT_S, what="v1 on the node")
        # The agent's own stamps are its wall clock's: the skew is real in the process.
        node_status = up.api.get(Node, "local").status
        assert node_status is not None
        condition = node_status.condition("Ready")
        assert condition is not None
        for stamp in (condition.last_heartbeat_time, condition.last_transition_time):
            assert stamp is not None
            ahead = (stamp - datetime.now(tz=UTC)).total_seconds()
            assert abs(ahead - offset_s) < 120, (ahead, offset_s)
        # The pods' Ready times are the control plane's (minReadySeconds counts from them).
        for pod in up.ready_pods():
            assert pod.status is not None
            pod_ready = pod.status.condition("Ready")
            assert pod_ready is not None
            assert pod_ready.last_transition_time is not None
            lag = (datetime.now(tz=UTC) - pod_ready.last_transition_time).total_seconds()
            assert 0 <= lag < 120, lag
        # Several grace periods, each ending with the node controller's verdict on a lease
        # renewed since: the node never turns Unknown or NotReady.
        lease = up.api.get_node_lease("local")
        assert lease is not None
        renewals = [lease.renew_time]
        deadline = time.monotonic() + 2 * GRACE_S
        while time.monotonic() < deadline or len(renewals) < 4:
            assert _ready_condition(up.api, "local")[0] == "True"
            assert len(up.ready_pods()) == 2
            current = up.api.get_node_lease("local")
            assert current is not None
            if current.renew_time != renewals[-1]:
                renewals.append(current.renew_time)
            time.sleep(0.2)
        assert renewals[-1] > renewals[0]
        assert _ready_condition(up.api, "local")[0] == "True"
    finally:
        up.close()
        agent.close()


def _assert_skewed(unshare_pid: int, offset_s: int) -> None:
    """The agent (unshare's child) runs in a time namespace with the offsets asked for, with
    libfaketime preloaded to move its wall clock by as much."""
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children")
    child = wait_until(lambda: children.read_text().split(), timeout=10, what="the agent process")
    offsets = {
        clock: int(seconds)
        for clock, seconds, _ns in (
            line.split()
            for line in Path(f"/proc/{child[0]}/timens_offsets").read_text().splitlines()
        )
    }
    assert offsets == {"monotonic": offset_s, "boottime": offset_s}, offsets
    maps = Path(f"/proc/{child[0]}/maps").read_text()
    assert str(LIBFAKETIME) in maps, "libfaketime is not loaded in the agent"
