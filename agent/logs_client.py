"""``capstan-agent logs``: a container's log through the agent's own protocol.

Connects to the daemon's socket like any client, sends one ``logs`` request and writes the
``logs_chunk`` data it gets back until the chunk marked ``eof`` (or an ``error``).
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from pathlib import Path

from schemas.protocol import (
    MAX_LINE_BYTES,
    ErrorMessage,
    LogsChunk,
    LogsRequest,
    ProtocolError,
    decode_message,
    encode_message,
)


def fetch_logs(
    socket_path: Path,
    *,
    namespace: str,
    pod: str,
    container: str | None,
    tail: int | None,
    follow: bool,
    out_fd: int = 1,
) -> int:
    """Stream the log to ``out_fd``; returns the exit status (1 on error)."""
    request = LogsRequest(
        id=uuid.uuid4().hex,
        namespace=namespace,
        pod=pod,
        container=container,
        tail=tail,
        follow=follow,
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(socket_path))
        except OSError as exc:
            sys.stderr.write(
                f"capstan-agent logs: cannot reach the agent at {socket_path}: "
                f"{exc.strerror or exc}\n"
            )
            return 1
        sock.sendall(encode_message(request))
        reader = sock.makefile("rb")
        for raw in reader:
            if len(raw) > MAX_LINE_BYTES + 1:
                continue
            try:
                message = decode_message(raw.rstrip(b"\n"))
            except ProtocolError:
                continue
            if isinstance(message, ErrorMessage) and message.in_reply_to in (request.id, None):
                sys.stderr.write(f"capstan-agent logs: {message.message}\n")
                return 1
            if isinstance(message, LogsChunk) and message.in_reply_to == request.id:
                if message.data:
                    os.write(out_fd, message.data.encode())
                if message.eof:
                    return 0
    sys.stderr.write("capstan-agent logs: the agent closed the connection\n")
    return 1
