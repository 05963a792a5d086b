"""Opening listening sockets inside a pod's network namespace.

Called by the userspace engine when a pod is attached or the Service set changes. A socket
belongs to the network namespace it was created in for its whole life, whatever thread
later uses it; so a fresh thread joins the pod's namespace (``setns`` on a held
``/proc/<pid>/ns/net`` descriptor), creates and binds the listeners, and ends. The event loop
then serves them from the node's namespace, where its outbound connections to the endpoints
(127.0.0.x host ports) are made.

WARNING: the thread must be fresh and must end: a pooled thread (``run_in_executor``) would be
left in the pod's namespace and later work on it would silently dial from the wrong place.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Sequence
from typing import Final

_CLONE_NEWNET: Final = 0x40000000
_BACKLOG: Final = 1024


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


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


def bind_listeners(
    addresses: Sequence[tuple[str, int]], *, netns_fd: int | None
) -> list[socket.socket | OSError]:
    """Bind each ``(address, port)``, in the namespace of ``netns_fd`` (None: this one).

    Returns, per address, the socket or the error that prevented it; an error entering the
    namespace is returned for every address.
    """
    if netns_fd is None:
        results: list[socket.socket | OSError] = []
        for address, port in addresses:
            try:
                results.append(bind_listener(address, port))
            except OSError as exc:
                results.append(exc)
        return results

    outcome: list[list[socket.socket | OSError]] = []

    def work() -> None:
        try:
            _setns(netns_fd)
        except OSError as exc:
            outcome.append([exc for _ in addresses])
            return
        outcome.append(bind_listeners(addresses, netns_fd=None))

    thread = threading.Thread(target=work, name="capstan-proxy-netns", daemon=True)
    thread.start()
    thread.join()
    return outcome[0]


def open_netns(path: str) -> int:
    """A descriptor that names (and keeps alive) the namespace at ``path``."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
