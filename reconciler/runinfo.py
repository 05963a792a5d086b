"""Where a running ``capstan up`` keeps things, for the other ``capstan`` commands.

Written by ``reconciler.app`` into its state directory at start (``up.json``) and removed at
stop; read by the CLI (``reconciler.cli._target``) to find the store, the HTTP API's client
config and the local agent's socket. Standard library only: every CLI call imports it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from reconciler._private import write_private

__all__ = [
    "CLIENT_CONFIG_FILE",
    "RUN_INFO_FILE",
    "STATE_DIR_ENV",
    "RunInfo",
    "default_state_dir",
    "read_run_info",
    "write_run_info",
]

RUN_INFO_FILE = "up.json"
#: The CLI's connection settings (server, CA, admin token file) for this instance.
CLIENT_CONFIG_FILE = "config"
STATE_DIR_ENV = "CAPSTAN_STATE_DIR"


def default_state_dir() -> Path:
    """``$CAPSTAN_STATE_DIR``, else ``~/.capstan``."""
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".capstan"


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a running ``capstan up`` tells the other commands (``<state_dir>/up.json``)."""

    pid: int
    store: str
    repo: str
    branch: str
    agent_socket: str
    listen: str | None = None
    #: ``POST /hooks/git`` of the HTTP API (None: no ``--listen``), whether a secret arms it
    #: and where the secret comes from (a file, or the environment variable).
    webhook_url: str | None = None
    webhook_armed: bool = False
    webhook_secret_from: str | None = None


def read_run_info(state_dir: Path) -> RunInfo | None:
    try:
        data = json.loads((state_dir / RUN_INFO_FILE).read_text())
        return RunInfo(**data)
    except (OSError, ValueError, TypeError):
        return None


def write_run_info(state_dir: Path, info: RunInfo) -> Path:
    path = state_dir / RUN_INFO_FILE
    # Replaced whole: readers never see a half-written file. 0600: it names the store.
    write_private(path, (json.dumps(asdict(info), indent=2) + "\n").encode("utf-8"))
    return path
