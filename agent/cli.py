"""``capstan-agent``: the node agent's entry point (serve, connect, logs, --version).

``connect`` is what the reconciler runs over SSH for every connection, so it is dispatched
before click and the rest of Capstan are imported: it starts in a few milliseconds. Every
other command goes through the click group in :mod:`agent._commands`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Copies of schemas.protocol's AGENT_SOCKET_ENV and DEFAULT_AGENT_SOCKET: importing schemas
# loads pydantic (a third of a second), and this path must not. A unit test keeps them equal.
_SOCKET_ENV = "CAPSTAN_AGENT_SOCKET"
_DEFAULT_SOCKET = "/run/capstan/agent.sock"


def _connect_socket(args: list[str]) -> Path | None:
    """The socket of a plain ``connect [--socket PATH]`` call; None for anything else."""
    path = os.environ.get(_SOCKET_ENV, _DEFAULT_SOCKET)
    if not args:
        return Path(path)
    if len(args) == 2 and args[0] == "--socket":
        return Path(args[1])
    if len(args) == 1 and args[0].startswith("--socket="):
        return Path(args[0].partition("=")[2])
    return None


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["connect"]:
        socket_path = _connect_socket(args[1:])
        if socket_path is not None:
            from agent.connect import bridge

            sys.exit(bridge(socket_path))
    from agent._commands import commands

    commands(prog_name="capstan-agent")
