"""The userspace data plane: asyncio TCP forwarders, one listener per (scope, address, port).

Called by :class:`agent.proxy.proxy.Proxy`. It carries, in every mode, the in-pod forwarders
(listeners inside each pod's network namespace on the Services' virtual addresses, at the
pod's reserved ports that :mod:`agent.proxy._podnat` redirects the Service ports to), and in
``userspace`` mode also the NodePorts and virtual addresses of the node's own namespace.

Each listener owns a :class:`_Pool` of ready endpoints. A new connection takes the pool's
endpoints in round-robin order and dials them in turn until one answers (a refused or
timed-out endpoint costs one attempt, not the client's connection); with no endpoint left
the client is reset. An apply *replaces* a pool's endpoints in place, so only the endpoints
of the latest apply receive new connections, while connections already relayed finish on
theirs. Listeners whose address and port survive an apply are never closed, so a client
never sees a refused connection because of an apply.

The loop (uvloop) runs on its own thread ("capstan-proxy"), so relaying never waits behind the
agent's own event loop (a slow Docker call, a big sync); every change is marshalled onto it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import uvloop

from agent.netns import bind_listeners
from agent.proxy.model import Endpoint

HOST_SCOPE: Final = ""
"""The scope of listeners in the agent's own network namespace (pods use their uid)."""

_T = TypeVar("_T")

ListenerKey = tuple[str, str, int]
"""(scope, address, port)."""


class _Pool:
    """The ready endpoints behind one listener, in round-robin order."""

    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        self.endpoints = endpoints
        self._next = 0

    def candidates(self) -> list[Endpoint]:
        endpoints = self.endpoints  # one read: an apply may replace it meanwhile
        if not endpoints:
            return []
        start = self._next % len(endpoints)
        self._next = start + 1
        return [*endpoints[start:], *endpoints[:start]]


def _reset(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Half(asyncio.Protocol):
    """One side of a relayed connection; writes what it reads to its peer's transport."""

    def __init__(self, live: set[_Half], *, peer: _Half | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer = peer
        self.eof = False
        self.lost = False
        self._live = live

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's TCP transports implement the
        # asyncio.Transport interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._live.add(self)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        self._pass_eof()
        return True  # keep our sending side open: the peer may still answer

    def _pass_eof(self) -> None:
        peer = self.peer
        if peer is None or peer.transport is None or peer.transport.is_closing():
            return
        if peer.eof:
            peer.transport.close()
            if self.transport is not None:
                self.transport.close()
        elif peer.transport.can_write_eof():
            peer.transport.write_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._live.discard(self)
        peer = self.peer
        if peer is not None and peer.transport is not None:
            # close(), not abort(): what we already queued to the peer is still delivered.
            peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Inbound(_Half):
    """A client's connection to a listener: dials an endpoint, then relays."""

    def __init__(self, pool: _Pool, live: set[_Half], *, connect_timeout_s: float) -> None:
        super().__init__(live)
        self._pool = pool
        self._timeout = connect_timeout_s
        self._dial: asyncio.Task[None] | None = None
        self._early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        candidates = self._pool.candidates()
        if not candidates:
            _reset(self.transport)
            return
        self.transport.pause_reading()
        self._dial = asyncio.get_running_loop().create_task(self._connect(candidates))

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            # uvloop starts reading after connection_made() whatever it asked for: hold what
            # the client sent before an endpoint answered, and stop reading until one does.
            self._early.append(data)
            if self.transport is not None:
                self.transport.pause_reading()
            return
        super().data_received(data)

    async def _connect(self, candidates: list[Endpoint]) -> None:
        loop = asyncio.get_running_loop()
        for endpoint in candidates:
            if self.lost:
                return
            try:
                async with asyncio.timeout(self._timeout):
                    # The peer is set at construction: the endpoint may speak first, before
                    # this coroutine resumes.
                    sent, outbound = await loop.create_connection(
                        lambda: _Half(self._live, peer=self), endpoint.address, endpoint.port
                    )
            except (OSError, TimeoutError):
                continue
            if self.lost:
                if outbound.transport is not None:
                    outbound.transport.close()
                return
            self.peer = outbound
            if self._early:
                sent.writelines(self._early)
            self._early.clear()
            if self.eof:
                self._pass_eof()
            if self.transport is not None:
                self.transport.resume_reading()
            return
        if self.transport is not None:
            _reset(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._dial is not None and self.peer is None:
            self._dial.cancel()


@dataclass
class _Listener:
    server: asyncio.Server
    pool: _Pool


@dataclass(frozen=True)
class SyncOutcome:
    changed: bool
    problems: tuple[str, ...]
    in_use: frozenset[ListenerKey] = frozenset()
    """Listeners not bound because something else holds the port (``EADDRINUSE``)."""


class UserspaceEngine:
    """Owns the forwarding loop thread and every listener on it."""

    def __init__(self, *, connect_timeout_s: float = 2.0) -> None:
        self._timeout = connect_timeout_s
        # uvloop, not the stdlib loop: it relays short connections about 1.4x as fast.
        self._loop = uvloop.new_event_loop()
        self._listeners: dict[ListenerKey, _Listener] = {}  # only touched on the loop
        self._live: set[_Half] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="capstan-proxy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _snapshot(self) -> dict[ListenerKey, tuple[Endpoint, ...]]:
        return {key: listener.pool.endpoints for key, listener in self._listeners.items()}

    def listeners(self) -> dict[ListenerKey, tuple[Endpoint, ...]]:
        """What is being served now: (scope, address, port) → endpoints."""
        if self._loop.is_closed():
            return {}
        return self._call(self._snapshot())

    def sync(
        self,
        desired: Mapping[ListenerKey, tuple[Endpoint, ...]],
        *,
        scopes: Mapping[str, int | None],
    ) -> SyncOutcome:
        """Serve exactly ``desired`` for the scopes named in ``scopes`` (scope → netns fd).

        Listeners of other scopes are left alone. Addresses that cannot be bound are reported
        and retried by the next sync. After :meth:`close` nothing is served and this is a no-op.
        """
        with self._lock:
            if self._loop.is_closed():
                return SyncOutcome(changed=False, problems=())
            current = self.listeners()
            in_scope = {key for key in current if key[0] in scopes}
            gone = in_scope - desired.keys()
            updated = {
                key: eps for key, eps in desired.items() if key in current and current[key] != eps
            }
            new = [key for key in desired if key not in current]
            problems: list[str] = []
            in_use: set[ListenerKey] = set()
            sockets: dict[ListenerKey, socket.socket] = {}
            for scope, netns_fd in scopes.items():
                keys = [key for key in new if key[0] == scope]
                if not keys:
                    continue
                bound = bind_listeners([(k[1], k[2]) for k in keys], netns_fd=netns_fd)
                for key, result in zip(keys, bound, strict=True):
                    if isinstance(result, OSError):
                        if result.errno == errno.EADDRINUSE:
                            in_use.add(key)
                        where = f"pod {scope}" if scope else "node"
                        problems.append(f"cannot listen on {key[1]}:{key[2]} in {where}: {result}")
                    else:
                        sockets[key] = result
            problems += self._call(self._change(gone, updated, sockets, desired))
            changed = bool(gone or updated or sockets)
            return SyncOutcome(changed=changed, problems=tuple(problems), in_use=frozenset(in_use))

    async def _change(
        self,
        gone: set[ListenerKey],
        updated: Mapping[ListenerKey, tuple[Endpoint, ...]],
        sockets: Mapping[ListenerKey, socket.socket],
        desired: Mapping[ListenerKey, tuple[Endpoint, ...]],
    ) -> list[str]:
        # Pools first: from here on no new connection picks a removed endpoint.
        for key, endpoints in updated.items():
            self._listeners[key].pool.endpoints = endpoints
        for key in gone:
            self._listeners.pop(key).server.close()
        loop = asyncio.get_running_loop()
        problems = []
        for key, sock in sockets.items():
            pool = _Pool(desired[key])

            def factory(pool: _Pool = pool) -> _Inbound:
                return _Inbound(pool, self._live, connect_timeout_s=self._timeout)

            try:
                server = await loop.create_server(factory, sock=sock)
            except OSError as exc:
                sock.close()
                problems.append(f"cannot serve {key[1]}:{key[2]}: {exc}")
                continue
            self._listeners[key] = _Listener(server=server, pool=pool)
        return problems

    async def _shutdown(self) -> None:
        for listener in self._listeners.values():
            listener.server.close()
        self._listeners.clear()
        for half in list(self._live):
            if half.transport is not None:
                half.transport.abort()
        await asyncio.sleep(0)  # let the aborted transports run connection_lost

    def close(self) -> None:
        """Stop every listener and connection, then the loop thread. Idempotent."""
        if self._loop.is_closed():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
