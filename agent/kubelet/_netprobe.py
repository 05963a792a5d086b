"""Network probes dialled from inside a pod's network namespace.

Called by the prober for httpGet and tcpSocket probes (``_grpcprobe`` joins namespaces with
:func:`agent.netns.enter_netns` too). WARNING: the agent must never send traffic to a Docker
bridge address, so a probe never dials the container's IP. Instead a fresh thread joins the
sandbox's network namespace (``setns`` on ``/proc/<pid>/ns/net``) and dials ``127.0.0.1``
there; the thread ends with the probe, so no pooled thread is ever left in a foreign
namespace. Without the right to ``setns`` the probe falls back to the port the sandbox
publishes on the agent's bind address.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from agent.netns import enter_netns

_MAX_RESPONSE_HEAD: Final = 64 * 1024


@dataclass(frozen=True)
class ProbeOutcome:
    success: bool
    message: str


@dataclass(frozen=True)
class NetTarget:
    """Where a network probe goes: ``port`` inside the pod, or ``fallback`` (ip, port) outside."""

    sandbox_pid: int
    port: int
    fallback: tuple[str, int] | None = None


def _connect(target: NetTarget, timeout_s: float) -> socket.socket:
    try:
        enter_netns(target.sandbox_pid)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EACCES) or target.fallback is None:
            raise
        return socket.create_connection(target.fallback, timeout=timeout_s)
    return socket.create_connection(("127.0.0.1", target.port), timeout=timeout_s)


def _http_exchange(
    sock: socket.socket, *, path: str, host: str, headers: tuple[tuple[str, str], ...]
) -> ProbeOutcome:
    lines = [f"GET {path or '/'} HTTP/1.0", f"Host: {host}", "User-Agent: capstan-probe/1"]
    lines += [f"{name}: {value}" for name, value in headers]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    head = b""
    while b"\r\n" not in head and len(head) < _MAX_RESPONSE_HEAD:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return ProbeOutcome(False, f"malformed HTTP response: {status_line[:80]!r}")
    code = int(parts[1])
    if 200 <= code < 400:
        return ProbeOutcome(True, f"HTTP {code}")
    return ProbeOutcome(False, f"HTTP probe failed with statuscode: {code}")


def _run_in_fresh_thread(work: Callable[[], ProbeOutcome], timeout_s: float) -> ProbeOutcome:
    result: list[ProbeOutcome] = []

    def target() -> None:
        try:
            result.append(work())
        except OSError as exc:
            result.append(ProbeOutcome(False, exc.strerror or str(exc)))

    thread = threading.Thread(target=target, name="capstan-probe", daemon=True)
    thread.start()
    thread.join(timeout_s + 1.0)
    if not result:
        return ProbeOutcome(False, f"probe timed out after {timeout_s:g}s")
    return result[0]


def probe_tcp(target: NetTarget, *, timeout_s: float) -> ProbeOutcome:
    """Blocking: can a TCP connection be made to the pod's port?"""

    def work() -> ProbeOutcome:
        with _connect(target, timeout_s):
            return ProbeOutcome(True, f"connected to port {target.port}")

    return _run_in_fresh_thread(work, timeout_s)


def probe_http(
    target: NetTarget,
    *,
    path: str,
    timeout_s: float,
    headers: tuple[tuple[str, str], ...] = (),
) -> ProbeOutcome:
    """Blocking: does ``GET path`` on the pod's port answer 2xx/3xx?"""

    def work() -> ProbeOutcome:
        with _connect(target, timeout_s) as sock:
            sock.settimeout(timeout_s)
            return _http_exchange(sock, path=path, host=f"127.0.0.1:{target.port}", headers=headers)

    return _run_in_fresh_thread(work, timeout_s)
