"""A throwaway etcd server on free loopback ports, for the store's integration tests."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def etcd_available() -> bool:
    return Path(ETCD).is_file()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EtcdServer:
    """``with EtcdServer() as etcd: etcd.endpoint`` — started healthy, killed and removed after."""

    def __init__(self) -> None:
        self.client_port = free_port()
        self.peer_port = free_port()
        self.endpoint = f"127.0.0.1:{self.client_port}"
        self._dir = Path(tempfile.mkdtemp(prefix="capstan-etcd-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EtcdServer:
        client = f"http://{self.endpoint}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        self._log = (self._dir / "etcd.log").open("ab")
        self._proc = subprocess.Popen(
            [
                ETCD,
                "--name",
                "capstan-test",
                "--data-dir",
                str(self._dir / "data"),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"capstan-test={peer}",
                # Room for a MAX_VALUE_BYTES value plus key and framing.
                "--max-request-bytes",
                str(2 * 1024 * 1024),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"etcd exited early: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{client}/health", timeout=1).json().get("health") == "true":
                    return self
            time.sleep(0.05)
        log = self.log_tail()
        self.stop()
        raise RuntimeError(f"etcd did not become healthy: {log}")

    def kill(self) -> None:
        """SIGKILL the server but keep its data directory, so ``start()`` brings it back."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._proc = None
        if hasattr(self, "_log"):
            self._log.close()

    def log_tail(self) -> str:
        path = self._dir / "etcd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
