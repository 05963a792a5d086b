"""gRPC health probes (``grpc`` in a probe) dialled from inside a pod's network namespace.

Called by the prober. The check is the standard ``grpc.health.v1.Health/Check``: SERVING is a
success, anything else (NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN, an RPC error) a failure, as the
kubelet reports it. WARNING: grpcio dials from its own internal threads, which never join the
pod's network namespace, so grpcio is pointed at a Unix socket in a private temporary
directory, and a relay thread that did join the namespace (the same way as ``_netprobe`` probes)
connects each accepted stream to ``127.0.0.1:port`` there and copies bytes both ways. Without
the right to ``setns`` the relay dials the port the sandbox publishes instead.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import tempfile
import threading
from pathlib import Path
from typing import Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.kubelet._netprobe import NetTarget, ProbeOutcome
from agent.netns import enter_netns

__all__ = ["probe_grpc"]

_CHUNK: Final = 64 * 1024
_POLL_S: Final = 0.05


def _dial(target: NetTarget, *, in_pod: bool, timeout_s: float) -> socket.socket:
    if in_pod:
        return socket.create_connection(("127.0.0.1", target.port), timeout=timeout_s)
    assert target.fallback is not None
    return socket.create_connection(target.fallback, timeout=timeout_s)


def _pump(first: socket.socket, second: socket.socket, stop: threading.Event) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(first, selectors.EVENT_READ, second)
        selector.register(second, selectors.EVENT_READ, first)
        while not stop.is_set():
            for key, _ in selector.select(_POLL_S):
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = source.recv(_CHUNK)
                except OSError:
                    return
                if not data:
                    return
                key.data.sendall(data)


class _Relay(threading.Thread):
    """Accepts on a Unix socket; each stream goes to the pod's port from inside its netns."""

    def __init__(self, target: NetTarget, path: Path, timeout_s: float) -> None:
        super().__init__(name="capstan-grpc-probe", daemon=True)
        self.target = target
        self.path = path
        self.timeout_s = timeout_s
        self.listening = threading.Event()
        self.stop = threading.Event()
        self.error: OSError | None = None

    def run(self) -> None:
        in_pod = True
        try:
            enter_netns(self.target.sandbox_pid)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EACCES) or self.target.fallback is None:
                self.error = exc
                self.listening.set()
                return
            in_pod = False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(str(self.path))
            listener.listen(4)
            listener.settimeout(_POLL_S)
            self.listening.set()
            while not self.stop.is_set():
                try:
                    accepted, _ = listener.accept()
                except TimeoutError:
                    continue
                with (
                    accepted,
                    contextlib.suppress(OSError),
                    _dial(self.target, in_pod=in_pod, timeout_s=self.timeout_s) as upstream,
                ):
                    _pump(accepted, upstream, self.stop)


def probe_grpc(target: NetTarget, *, service: str | None, timeout_s: float) -> ProbeOutcome:
    """Blocking: does the pod's gRPC health service answer SERVING for ``service``?"""
    with tempfile.TemporaryDirectory(prefix="capstan-grpc-") as directory:
        relay = _Relay(target, Path(directory) / "probe.sock", timeout_s)
        relay.start()
        try:
            relay.listening.wait(timeout_s)
            if relay.error is not None:
                return ProbeOutcome(False, relay.error.strerror or str(relay.error))
            return _check(f"unix:{relay.path}", service=service or "", timeout_s=timeout_s)
        finally:
            relay.stop.set()
            relay.join(timeout_s + 1.0)


def _check(address: str, *, service: str, timeout_s: float) -> ProbeOutcome:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return ProbeOutcome(False, f"gRPC health check timed out after {timeout_s:g}s")
            name = code.name if code is not None else "error"
            return ProbeOutcome(False, f"gRPC health check failed: {name}")
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return ProbeOutcome(reply.status == health_pb2.HealthCheckResponse.SERVING, f"gRPC {status}")
