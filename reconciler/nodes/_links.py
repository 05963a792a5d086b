"""Byte pipes to a node agent: one SSH channel, or a local ``capstan-agent connect`` subprocess.

Opened by ``NodeConnection`` once per connection (never per push); both kinds carry the same
JSON-lines protocol and offer the same four calls, so the session logic above them does not
know which one it drives. Reading never blocks: ``filenos`` are what the connection's one
thread polls (with its own wakeup) and ``receive`` takes what arrived, so that thread both
reads and sends and no node needs a reader or a stderr thread of its own. The agent's stderr
is logged from inside ``receive``.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import paramiko

from reconciler.nodes.endpoint import NodeEndpoint
from reconciler.nodes.hostkeys import (
    HostKeyPin,
    HostKeyRejected,
    PinnedKeyPolicy,
    fingerprint,
    known_hosts_name,
)
from schemas.protocol import MAX_LINE_BYTES

_log = logging.getLogger(__name__)


class AuthenticationFailed(Exception):
    """sshd refused every key we offered."""


@dataclass(frozen=True, slots=True)
class LinkSettings:
    connect_timeout: float = 10.0
    #: SSH-level keepalive, so idle NAT/firewall state survives and dead TCP peers surface.
    keepalive_interval: float = 15.0
    #: A longer line is treated as a garbled stream: the link is dropped and reopened.
    max_line_bytes: int = MAX_LINE_BYTES + 1


#: The most ``receive`` takes at once.
_CHUNK = 65536


class Link(Protocol):
    def filenos(self) -> tuple[int, ...]:
        """Descriptors to poll: one turns readable when ``receive`` has something (agent
        output, its end, or stderr to log)."""
        ...

    def receive(self) -> bytes | None:
        """What the agent wrote since the last call, without blocking: ``b""`` at end of
        stream, None when nothing has arrived (stderr is logged meanwhile)."""
        ...

    def send(self, line: bytes) -> None: ...

    def close(self) -> None: ...


def open_link(endpoint: NodeEndpoint, settings: LinkSettings) -> Link:
    if endpoint.is_local:
        return _LocalLink.open(endpoint, settings)
    return _SSHLink.open(endpoint, settings)


class LineSplitter:
    """Cuts a byte stream into lines (each with its newline).

    A line longer than ``max_bytes`` means a garbled stream: ``feed`` raises ``OSError`` and
    the caller drops the link. What is left without a newline at the end of the stream is
    not a line, and is never returned.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._partial = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._partial += data
        if b"\n" not in data:
            if len(self._partial) >= self._max:
                raise OSError(f"line longer than {self._max} bytes from agent")
            return []
        *lines, rest = bytes(self._partial).split(b"\n")
        self._partial = bytearray(rest)
        if len(rest) >= self._max or any(len(line) >= self._max for line in lines):
            raise OSError(f"line longer than {self._max} bytes from agent")
        return [line + b"\n" for line in lines]

    @property
    def partial(self) -> bytes:
        return bytes(self._partial)


class _StderrLog:
    """Logs what the remote command prints on stderr, a line at a time (a line longer than
    ``_CHUNK`` in pieces: only stdout is protocol, so nothing here is refused)."""

    def __init__(self, node: str) -> None:
        self._node = node
        self._partial = b""

    def feed(self, data: bytes) -> None:
        *lines, rest = (self._partial + data).split(b"\n")
        if len(rest) > _CHUNK:
            lines.append(rest)
            rest = b""
        self._partial = rest
        for raw in lines:
            self._log(raw)

    def end(self) -> None:
        if self._partial:
            self._log(self._partial)
            self._partial = b""

    def _log(self, raw: bytes) -> None:
        _log.warning("%s: agent stderr: %s", self._node, raw.decode("utf-8", "replace").rstrip())


class _QuietTransport(paramiko.Transport):
    """paramiko's transport thread wakes every ``_active_check_timeout`` to look for a close,
    a due keepalive or a stalled handshake; 0.1 s by default, which on a fleet is ten wakeups
    a second per node for nothing. A second is as prompt for all three: ``close`` marks the
    packetizer closed and returns without waiting for the thread."""

    _active_check_timeout = 1.0


def _quiet_transport(
    sock: Any,
    *,
    gss_kex: bool = False,
    gss_deleg_creds: bool = True,
    disabled_algorithms: Mapping[str, Iterable[str]] | None = None,
) -> paramiko.Transport:
    """``SSHClient.connect``'s transport factory (GSS-API key exchange is never used)."""
    return _QuietTransport(sock, disabled_algorithms=disabled_algorithms)


class _SSHLink:
    def __init__(self, client: paramiko.SSHClient, channel: paramiko.Channel, node: str) -> None:
        self._client = client
        self._channel = channel
        # paramiko's stand-in descriptor: readable while stdout or stderr holds data or the
        # channel is closed. Reads then never wait (timeout 0), sends still do.
        self._fileno: int = channel.fileno()
        self._stderr = _StderrLog(node)
        self._send_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, endpoint: NodeEndpoint, settings: LinkSettings) -> _SSHLink:
        pin = HostKeyPin.parse(endpoint.host_key) if endpoint.host_key else None
        client = paramiko.SSHClient()
        host_keys = client.get_host_keys()
        if endpoint.known_hosts is not None:
            host_keys.load(str(endpoint.known_hosts))
        if pin is not None and pin.key is not None:
            name = known_hosts_name(endpoint.address, endpoint.port)
            host_keys.add(name, pin.key.get_name(), pin.key)
        client.set_missing_host_key_policy(
            PinnedKeyPolicy(expected=pin.fingerprint if pin is not None else None)
        )
        try:
            client.connect(
                endpoint.address,
                port=endpoint.port,
                username=endpoint.user,
                key_filename=str(endpoint.identity_file) if endpoint.identity_file else None,
                allow_agent=endpoint.use_agent,
                look_for_keys=endpoint.uses_default_keys,
                timeout=settings.connect_timeout,
                banner_timeout=settings.connect_timeout,
                auth_timeout=settings.connect_timeout,
                transport_factory=_quiet_transport,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyRejected(
                host=endpoint.describe(),
                expected=fingerprint(exc.expected_key),
                offered=fingerprint(exc.key),
            ) from None
        except HostKeyRejected as exc:
            client.close()
            raise HostKeyRejected(
                host=endpoint.describe(), expected=exc.expected, offered=exc.offered
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise AuthenticationFailed(f"{endpoint.describe()}: {exc}") from exc
        except Exception:
            client.close()
            raise
        try:
            transport = client.get_transport()
            if transport is None:  # connect() returned without a transport: treat as a drop
                raise paramiko.SSHException("no transport after connect")
            transport.set_keepalive(max(1, round(settings.keepalive_interval)))
            channel = transport.open_session(timeout=settings.connect_timeout)
            channel.exec_command(endpoint.agent_command)
            return cls(client, channel, endpoint.name)
        except Exception:
            client.close()
            raise

    def filenos(self) -> tuple[int, ...]:
        return (self._fileno,)

    def receive(self) -> bytes | None:
        # The order matters: the end is read before the buffer, so output that arrived just
        # before it is still returned (and the end only on the call after).
        ended = self._channel.eof_received or self._channel.closed
        while self._channel.recv_stderr_ready():
            self._stderr.feed(self._channel.recv_stderr(_CHUNK))
        if self._channel.recv_ready():
            # Never waits (data is there); it may send a window adjustment, on this node's
            # thread, so a stalled node holds up only itself.
            data: bytes = self._channel.recv(_CHUNK)
            return data
        if ended:
            self._stderr.end()
            return b""
        return None

    def send(self, line: bytes) -> None:
        with self._send_lock:
            self._channel.sendall(line)

    def close(self) -> None:
        # Called from the session thread and from NodeConnection.close at once; the loser of
        # the race must not touch a transport that is already going down.
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._channel.close()
        except (EOFError, OSError, paramiko.SSHException):
            _log.debug("channel already gone", exc_info=True)
        # Closing the client closes the transport; a reader blocked in readline wakes with EOF.
        self._client.close()


class _LocalLink:
    def __init__(self, process: subprocess.Popen[bytes], node: str) -> None:
        assert process.stdout is not None
        assert process.stderr is not None
        self._process = process
        self._stdout = process.stdout
        self._stderr = process.stderr
        for stream in (self._stdout, self._stderr):
            os.set_blocking(stream.fileno(), False)
        self._stderr_log = _StderrLog(node)
        self._stderr_open = True
        self._send_lock = threading.Lock()
        # Held while reading and while closing the read ends: a descriptor is never read
        # after it is closed (its number may already belong to another file).
        self._read_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, endpoint: NodeEndpoint, settings: LinkSettings) -> _LocalLink:
        process = subprocess.Popen(
            shlex.split(endpoint.agent_command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Unbuffered: reads take what the pipe holds and never wait.
            bufsize=0,
            # Its own session: a terminal Ctrl-C goes to the reconciler, which closes the link
            # itself; the bridge must not die first with a traceback in the agent's stderr.
            start_new_session=True,
        )
        return cls(process, endpoint.name)

    def filenos(self) -> tuple[int, ...]:
        with self._read_lock:
            if self._closed:
                return ()
            if self._stderr_open:
                return (self._stdout.fileno(), self._stderr.fileno())
            return (self._stdout.fileno(),)

    def receive(self) -> bytes | None:
        with self._read_lock:
            if self._closed:
                return b""
            # Ended stderr stays readable (at its end) forever: it leaves ``filenos``.
            while self._stderr_open:
                chunk = self._stderr.read(_CHUNK)
                if chunk is None:
                    break
                if not chunk:
                    self._stderr_open = False
                    self._stderr_log.end()
                    break
                self._stderr_log.feed(chunk)
            data: bytes | None = self._stdout.read(_CHUNK)
            return data

    def send(self, line: bytes) -> None:
        stdin = self._process.stdin
        if stdin is None:
            raise BrokenPipeError("local agent has no stdin")
        with self._send_lock:
            view = memoryview(line)
            while view:
                written = stdin.write(view)
                view = view[written or 0 :]

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        # The order matters: end stdin first (connect exits on EOF), then the process, and only
        # then the read ends, under the read lock.
        if self._process.stdin is not None:
            try:
                self._process.stdin.close()
            except OSError:
                _log.debug("closing local agent stdin", exc_info=True)
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        with self._read_lock:
            self._stdout.close()
            self._stderr.close()
