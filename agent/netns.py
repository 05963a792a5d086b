"""Working inside a pod's network namespace: joining it, and listening sockets bound there.

The agent's one place for ``setns``. Called by the kubelet's probes (:mod:`agent.kubelet._netprobe`
dials ``127.0.0.1`` inside the pod; :mod:`agent.kubelet._grpcprobe`), by the proxy's userspace
engine when a pod is attached or the Service set changes (to bind listeners), and by the proxy
to run ``nft`` there (:mod:`agent.proxy._podnat`). A socket
belongs to the network namespace it was created in for its whole life, whatever thread
later uses it; so a fresh thread joins the pod's namespace (``setns`` on a held
``/proc/<pid>/ns/net`` descriptor), creates and binds the listeners, and ends. The event loop
then serves them from the node's namespace, where its outbound connections to the endpoints
(127.0.0.x host ports) are made.

A process started from such a thread is born in the pod's namespace too (a child copies the
namespaces of the *thread* that forks it), which is how ``nft`` is run there without
``nsenter`` and without the sandbox's ``/proc/<pid>`` path, only the held descriptor.

WARNING: the thread must be fresh and must end: a pooled thread (``run_in_executor``) would be
left in the pod's namespace and later work on it would silently dial from the wrong place.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

_CLONE_NEWNET: Final = 0x40000000
_BACKLOG: Final = 1024

_T = TypeVar("_T")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


def enter_netns(pid: int) -> None:
    """Move the calling thread into the network namespace of process ``pid``."""
    with open(f"/proc/{pid}/ns/net", "rb") as handle:
        _setns(handle.fileno())


def bind_listener(address: str, port: int) -> socket.socket:
    """A non-blocking TCP listener on ``address:port`` in the calling thread's namespace."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def run_in_netns(work: Callable[[], _T], *, netns_fd: int) -> _T:
    """``work()`` on a fresh thread that joined the namespace of ``netns_fd``; its result.

    Raises what ``work`` raised, or ``OSError`` when the namespace cannot be entered.
    """
    outcome: list[_T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            _setns(netns_fd)
            outcome.append(work())
        except BaseException as exc:  # handed to the caller's thread, re-raised there
            failure.append(exc)

    thread = threading.Thread(target=target, name="capstan-proxy-netns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def bind_listeners(
    addresses: Sequence[tuple[str, int]], *, netns_fd: int | None
) -> list[socket.socket | OSError]:
    """Bind each ``(address, port)``, in the namespace of ``netns_fd`` (None: this one).

    Returns, per address, the socket or the error that prevented it; an error entering the
    namespace is returned for every address.
    """
    if netns_fd is not None:
        try:
            return run_in_netns(lambda: bind_listeners(addresses, netns_fd=None), netns_fd=netns_fd)
        except OSError as exc:
            return [exc for _ in addresses]
    results: list[socket.socket | OSError] = []
    for address, port in addresses:
        try:
            results.append(bind_listener(address, port))
        except OSError as exc:
            results.append(exc)
    return results


def open_netns(path: str) -> int:
    """A descriptor that names (and keeps alive) the namespace at ``path``."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
