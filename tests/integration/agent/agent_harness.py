"""Harness for the agent's integration tests: a real ``capstan-agent serve``, a protocol client.

Each test gets a unique node name (so parallel or leftover runs never collide: the agent only
ever touches containers labelled with its node name), a loopback bind address of its own, a
temporary state directory, and a protocol client. At the end every container of that node is
removed, whatever the test did.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import docker

from schemas.protocol import WIRE_FEATURES
from tests.fixtures.waiting import wait_until

AGENT = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "capstan-agent"
BUSYBOX = "capstan.local/busybox:1"
BUSYBOX_V2 = "capstan.local/busybox:test-v2"
LABEL = "io.capstan.managed-by"


class Client:
    """A protocol client on the agent's socket that keeps every message it receives."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.messages: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.sock.makefile("rb"):
            with self._cond:
                self.messages.append(json.loads(line))
                self._cond.notify_all()

    def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        self.sock.sendall(data)

    def wait_message(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 10, after: int = 0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages[after:]:
                    if predicate(message):
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no matching message in {timeout}s: "
                        f"{[m['type'] for m in self.messages[after:]]}"
                    )
                self._cond.wait(left)

    def sync(self, pods: list[dict[str, Any]], generation: int, **extra: Any) -> dict[str, Any]:
        msg_id = uuid.uuid4().hex
        mark = len(self.messages)
        self.send(
            {"v": 1, "type": "sync", "id": msg_id, "generation": generation, "pods": pods, **extra}
        )
        return self.wait_message(lambda m: m.get("inReplyTo") == msg_id, after=mark)

    def latest_node_status(self) -> dict[str, Any] | None:
        """The node's latest status: an idle heartbeat to a peer that lists
        ``nodeUnchanged`` leaves it out, so it is the last status message that carries it."""
        with self._cond:
            statuses = [m for m in self.messages if m["type"] == "status" and "node" in m]
        return statuses[-1]["node"] if statuses else None

    def pods(self) -> dict[str, dict[str, Any]]:
        """Every pod's latest report: statuses in between full ones carry only changes."""
        reports: dict[str, dict[str, Any]] = {}
        with self._cond:
            statuses = [m for m in self.messages if m["type"] == "status"]
        for status in statuses:
            if status.get("complete", True):
                reports = {}
            for uid in status.get("removed", ()):
                reports.pop(uid, None)
            reports.update((p["uid"], p) for p in status.get("pods", ()))
        return {p["name"]: p["status"] for p in reports.values()}

    def wait_pods(
        self,
        predicate: Callable[[dict[str, dict[str, Any]]], Any],
        *,
        timeout: float = 30,
        what: str = "pod status",
    ) -> Any:
        return wait_until(lambda: predicate(self.pods()), timeout=timeout, what=what)

    def heartbeats(self, count: int = 2) -> None:
        """Wait for ``count`` more status messages: the agent made passes in between."""
        for _ in range(count):
            mark = len(self.messages)
            self.wait_message(lambda m: m["type"] == "status", after=mark, timeout=10)

    def close(self) -> None:
        self.sock.close()


def ready(status: dict[str, Any] | None) -> bool:
    if not status:
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def host_port(status: dict[str, Any], container_port: int) -> tuple[str, int]:
    mapping = next(p for p in status["hostPorts"] if p["containerPort"] == container_port)
    return mapping["hostIP"], mapping["hostPort"]


def make_pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}-{uuid.uuid4().hex[:8]}",
        },
        "spec": {"terminationGracePeriodSeconds": 5, "containers": containers, **spec},
    }


def pull_secret(registry: str, auth: str, *, name: str = "regcred") -> dict[str, Any]:
    """A kubernetes.io/dockerconfigjson Secret with ``auth`` (base64 user:password)."""
    config = json.dumps({"auths": {registry: {"auth": auth}}}).encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name, "namespace": "default"},
        "data": {".dockerconfigjson": base64.b64encode(config).decode()},
    }


def httpd(name: str = "web", *, root: str = "/www", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": BUSYBOX,
        "command": ["httpd", "-f", "-p", "8080", "-h", root],
        "ports": [{"containerPort": 8080}],
        **extra,
    }


class Agent:
    """One ``capstan-agent serve`` process with its node name, state dir and socket."""

    def __init__(self, docker_client: docker.DockerClient, work: Path) -> None:
        self.docker = docker_client
        self.node = f"t-{uuid.uuid4().hex[:10]}"
        self.bind = f"127.0.{random.randint(1, 250)}.{random.randint(2, 250)}"
        self.state_dir = work / "state"
        # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer.
        self._sock_dir = Path(tempfile.mkdtemp(prefix="cap-", dir="/tmp"))
        self.socket = self._sock_dir / "agent.sock"
        self.log_path = work / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.clients: list[Client] = []

    def start(self, *extra: str) -> None:
        args = [
            str(AGENT),
            "serve",
            "--state-dir",
            str(self.state_dir),
            "--socket",
            str(self.socket),
            "--node-name",
            self.node,
            "--bind-address",
            self.bind,
            "--backoff-initial",
            "0.5",
            "--backoff-max",
            "4",
            "--backoff-reset",
            "600",
            "--resync",
            "1",
            "--heartbeat",
            "1",
            *extra,
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def listening() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, self.log()
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(self.socket))
                return True
            except OSError:
                return False

        wait_until(listening, timeout=15, what="the agent socket")

    def client(self, features: Sequence[str] = WIRE_FEATURES) -> Client:
        """A client that says hello as the control plane does, listing ``features``."""
        client = Client(self.socket)
        self.clients.append(client)
        client.wait_message(lambda m: m["type"] == "hello")
        client.send({"v": 1, "type": "hello", "role": "reconciler", "capabilities": list(features)})
        return client

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        for client in self.clients:
            client.close()
        self.clients.clear()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def containers(self) -> list[dict[str, Any]]:
        """This node's containers as Docker lists them (no per-container inspect to race)."""
        listed = self.docker.api.containers(all=True, filters={"label": f"{LABEL}={self.node}"})
        return [
            {
                "id": c["Id"],
                "name": c["Names"][0].lstrip("/"),
                "state": c["State"],
                "image": c["Image"],
            }
            for c in listed
        ]

    def container_ids(self) -> dict[str, str]:
        """Container name (pod/container/attempt) → id for every container of this node."""
        return {c["name"]: c["id"] for c in self.containers()}

    def container_log(self, pod: str, container: str) -> str:
        """Output of the newest running container ``container`` of pod ``pod`` ("" if none)."""
        listed = self.docker.api.containers(
            filters={
                "label": [
                    f"{LABEL}={self.node}",
                    f"io.capstan.pod-name={pod}",
                    f"io.capstan.container={container}",
                ]
            }
        )
        if not listed:
            return ""
        newest = max(listed, key=lambda c: c["Created"])
        return str(self.docker.api.logs(newest["Id"]).decode(errors="replace"))

    def volume(self, pod: dict[str, Any], volume: str) -> Path:
        return self.state_dir / "pods" / pod["metadata"]["uid"] / "volumes" / volume

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for client in self.clients:
            client.close()
        for container in self.containers():
            self.docker.api.remove_container(container["id"], force=True)
        shutil.rmtree(self._sock_dir, ignore_errors=True)
