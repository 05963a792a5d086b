"""``capstan-agent connect``: stdin/stdout bridged byte for byte to the agent's socket.

What the reconciler runs on a node over SSH (or as a local subprocess), like
``docker system dial-stdio``. Standard library only, so it starts in milliseconds. When stdin
ends, the socket's write side is shut down and the bridge keeps copying the agent's replies
until the agent closes; when the agent closes (or stdout goes away), the bridge exits.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from pathlib import Path

_CHUNK = 256 * 1024


def _copy_stdin(sock: socket.socket, stdin_fd: int) -> None:
    try:
        with contextlib.suppress(OSError):
            while chunk := os.read(stdin_fd, _CHUNK):
                sock.sendall(chunk)
    finally:
        # Half-close: the agent sees the end of input and closes after its last reply.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


def bridge(socket_path: Path, *, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Copy both ways until the agent closes; returns the exit status."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path))
    except OSError as exc:
        sys.stderr.write(
            f"capstan-agent connect: cannot reach the agent at {socket_path}: "
            f"{exc.strerror or exc}\n"
        )
        return 1
    # A daemon thread: a stdin that never ends must not keep the process alive once the
    # agent side has closed.
    threading.Thread(target=_copy_stdin, args=(sock, stdin_fd), daemon=True).start()
    try:
        while chunk := sock.recv(_CHUNK):
            view = memoryview(chunk)
            while view:
                written = os.write(stdout_fd, view)
                view = view[written:]
    except BrokenPipeError:
        return 0
    except OSError as exc:
        sys.stderr.write(f"capstan-agent connect: {exc.strerror or exc}\n")
        return 1
    finally:
        sock.close()
    return 0
