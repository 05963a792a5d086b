"""Byte pipes to a node agent: one SSH channel, or a local ``capstan-agent connect`` subprocess.

Opened by ``NodeConnection`` once per connection (never per push); both kinds carry the same
JSON-lines protocol and offer the same three calls, so the session logic above them does not
know which one it drives.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol

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


class Link(Protocol):
    def send(self, line: bytes) -> None: ...

    def readline(self) -> bytes:
        """One line including its newline; ``b""`` at end of stream."""
        ...

    def close(self) -> None: ...


def open_link(endpoint: NodeEndpoint, settings: LinkSettings) -> Link:
    if endpoint.is_local:
        return _LocalLink.open(endpoint, settings)
    return _SSHLink.open(endpoint, settings)


def _drain(stream: IO[bytes], *, node: str, what: str) -> None:
    """Log what the remote command prints on stderr; also keeps the SSH window from filling."""
    with stream:
        for raw in iter(stream.readline, b""):
            _log.warning("%s: %s: %s", node, what, raw.decode("utf-8", "replace").rstrip())


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
    def __init__(
        self, client: paramiko.SSHClient, channel: paramiko.Channel, settings: LinkSettings
    ) -> None:
        self._client = client
        self._channel = channel
        self._stdout = channel.makefile("rb")
        self._max = settings.max_line_bytes
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
        except Exception:
            client.close()
            raise
        threading.Thread(
            target=_drain,
            args=(channel.makefile_stderr("rb"),),
            kwargs={"node": endpoint.name, "what": "agent stderr"},
            name=f"capstan-ssh-stderr-{endpoint.name}",
            daemon=True,
        ).start()
        return cls(client, channel, settings)

    def send(self, line: bytes) -> None:
        with self._send_lock:
            self._channel.sendall(line)

    def readline(self) -> bytes:
        line: bytes = self._stdout.readline(self._max)
        if line and not line.endswith(b"\n"):
            if len(line) >= self._max:
                raise OSError(f"line longer than {self._max} bytes from agent")
            return b""  # a truncated last line at EOF is not a message
        return line

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
    def __init__(self, process: subprocess.Popen[bytes], settings: LinkSettings) -> None:
        self._process = process
        self._max = settings.max_line_bytes
        self._send_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, endpoint: NodeEndpoint, settings: LinkSettings) -> _LocalLink:
        process = subprocess.Popen(
            shlex.split(endpoint.agent_command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Its own session: a terminal Ctrl-C goes to the reconciler, which closes the link
            # itself; the bridge must not die first with a traceback in the agent's stderr.
            start_new_session=True,
        )
        assert process.stderr is not None
        threading.Thread(
            target=_drain,
            args=(process.stderr,),
            kwargs={"node": endpoint.name, "what": "agent stderr"},
            name=f"capstan-local-stderr-{endpoint.name}",
            daemon=True,
        ).start()
        return cls(process, settings)

    def send(self, line: bytes) -> None:
        stdin = self._process.stdin
        if stdin is None:
            raise BrokenPipeError("local agent has no stdin")
        with self._send_lock:
            stdin.write(line)
            stdin.flush()

    def readline(self) -> bytes:
        stdout = self._process.stdout
        if stdout is None:
            return b""
        line = stdout.readline(self._max)
        if line and not line.endswith(b"\n"):
            if len(line) >= self._max:
                raise OSError(f"line longer than {self._max} bytes from agent")
            return b""
        return line

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        # The order matters: end stdin first (connect exits on EOF), then the process, and only
        # then stdout, whose close waits for a reader blocked in readline to see EOF.
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
        if self._process.stdout is not None:
            self._process.stdout.close()
