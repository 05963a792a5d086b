"""The one-machine default: start this machine's agent daemon when none is running.

Used by ``capstan up`` (``reconciler.app``) before the dispatcher connects to the Node whose
``spec.address`` is ``local``: if nothing answers on the agent socket, it runs
``capstan-agent serve`` as a child process (its own session, so a Ctrl-C in the terminal
reaches ``capstan up``, which then stops the child in order) and waits for the socket. An
agent that was already running (a systemd unit, a previous ``capstan up`` that left it) is
used as it is and never stopped. The agent started here is supervised: if it dies, it is
started again. Containers outlive the daemon either way: a restarted agent adopts them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler._private import open_private, private_dir

__all__ = [
    "LocalAgentDaemon",
    "LocalAgentError",
    "LocalAgentOptions",
    "agent_executable",
    "socket_answers",
]

_log = logging.getLogger(__name__)


class LocalAgentError(RuntimeError):
    """The local agent could not be started (its log's last lines are in the message)."""


def agent_executable() -> str:
    """``capstan-agent`` next to this Python (a venv), else on PATH."""
    beside = Path(sys.executable).parent / "capstan-agent"
    if beside.exists():
        return str(beside)
    found = shutil.which("capstan-agent")
    if found is None:
        raise LocalAgentError("capstan-agent is not installed (not next to python, not on PATH)")
    return found


def socket_answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            probe.connect(str(path))
        return True
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class LocalAgentOptions:
    state_dir: Path
    socket_path: Path
    node_name: str
    bind_address: str = "127.0.0.1"
    log_path: Path | None = None
    extra_args: tuple[str, ...] = ()


class LocalAgentDaemon:
    """Starts the local agent when none answers, and keeps the one it started running.

    The agent is what keeps the node's containers converged; if the one started here dies
    (a crash, an OOM kill, ``kill -9``), a supervisor thread starts it again after a short,
    growing pause — the dispatcher's connection then reconnects and pushes the node's
    complete desired set, so even an agent that lost its state converges within seconds.
    """

    def __init__(
        self,
        options: LocalAgentOptions,
        *,
        executable: str | None = None,
        restart_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0),
    ) -> None:
        self.options = options
        self._executable = executable
        self._restart_delays = restart_delays
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.restarts = 0

    @property
    def started_here(self) -> bool:
        return self._supervisor is not None

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._process.pid if self._process is not None else None

    @property
    def connect_command(self) -> str:
        """What the dispatcher runs to reach this agent (the local transport)."""
        executable = self._executable or agent_executable()
        return shlex.join([executable, "connect", "--socket", str(self.options.socket_path)])

    def ensure(self, *, timeout_s: float = 30.0) -> bool:
        """Make sure an agent answers on the socket; True when this call started it (and
        from then on supervises it until ``stop``)."""
        if socket_answers(self.options.socket_path):
            return False
        self._spawn(timeout_s=timeout_s)
        self._stopping.clear()
        self._supervisor = threading.Thread(
            target=self._supervise, name="local-agent-supervisor", daemon=True
        )
        self._supervisor.start()
        return True

    def _spawn(self, *, timeout_s: float) -> None:
        opts = self.options
        private_dir(opts.state_dir)
        opts.socket_path.parent.mkdir(parents=True, exist_ok=True)
        # A socket file left by a killed agent answers nothing; the daemon replaces it.
        log_path = self._log_path
        args = [
            self._executable or agent_executable(),
            "serve",
            "--state-dir",
            str(opts.state_dir),
            "--socket",
            str(opts.socket_path),
            "--node-name",
            opts.node_name,
            "--bind-address",
            opts.bind_address,
            *opts.extra_args,
        ]
        with os.fdopen(open_private(log_path, os.O_WRONLY | os.O_APPEND), "ab") as log:
            process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        with self._lock:
            self._process = process
        deadline = time.monotonic() + timeout_s
        while not socket_answers(opts.socket_path):
            if process.poll() is not None:
                raise LocalAgentError(
                    f"capstan-agent serve exited with {process.returncode}:\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                _terminate(process)
                raise LocalAgentError(
                    f"capstan-agent did not answer on {opts.socket_path} within {timeout_s}s:\n"
                    f"{_tail(log_path)}"
                )
            time.sleep(0.05)
        _log.info("started capstan-agent (pid %d) on %s", process.pid, opts.socket_path)

    @property
    def _log_path(self) -> Path:
        return self.options.log_path or self.options.state_dir / "agent.log"

    def _supervise(self) -> None:
        failures = 0
        while not self._stopping.wait(0.2):
            with self._lock:
                process = self._process
            if process is None or process.poll() is None:
                continue
            _log.warning(
                "capstan-agent (pid %d) exited with %s; restarting it",
                process.pid,
                process.returncode,
            )
            delay = self._restart_delays[min(failures, len(self._restart_delays) - 1)]
            if self._stopping.wait(delay):
                return
            try:
                self._spawn(timeout_s=30.0)
            except (LocalAgentError, OSError) as exc:
                failures += 1
                _log.error("restarting capstan-agent failed: %s", exc)
                continue
            failures = 0
            self.restarts += 1

    def stop(self, *, timeout_s: float = 20.0) -> None:
        """Stop supervising and stop the agent started here (its containers keep running)."""
        self._stopping.set()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.join(timeout=timeout_s)
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            _terminate(process, timeout_s=timeout_s)


def _terminate(process: subprocess.Popen[bytes], *, timeout_s: float = 20.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
