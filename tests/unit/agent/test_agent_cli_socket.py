"""``capstan-agent connect``'s fast path finds the socket the rest of Capstan names, without
loading pydantic (it starts on every SSH connection)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import _connect_socket
from schemas.protocol import AGENT_SOCKET_ENV, DEFAULT_AGENT_SOCKET


def test_fast_path_uses_the_protocol_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AGENT_SOCKET_ENV, raising=False)
    assert _connect_socket([]) == Path(DEFAULT_AGENT_SOCKET)
    monkeypatch.setenv(AGENT_SOCKET_ENV, "/tmp/elsewhere.sock")
    assert _connect_socket([]) == Path("/tmp/elsewhere.sock")
    assert _connect_socket(["--socket", "/x.sock"]) == Path("/x.sock")


def test_fast_path_does_not_load_pydantic() -> None:
    code = "import sys, agent.cli; agent.cli._connect_socket([]); print('pydantic' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != AGENT_SOCKET_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "False"
