"""The node's ingress proxy: an HTTP/1.1 reverse proxy on the node's HTTP and HTTPS ports.

Run by the agent daemon on its event loop. It takes the desired Ingresses and their TLS
Secrets (:meth:`IngressServer.take`, from every desired set) and the Service rules the node's
proxy programs (:meth:`IngressServer.take_rules`, from ``NodeServices`` before each apply, so
endpoints of a pod being stopped leave the ingress before the pod gets SIGTERM), and builds a
:class:`~agent.ingress.routes.RouteTable`. Listeners exist only while there is something to
serve: HTTP while any route exists, HTTPS while any certificate does.

Per client connection, requests are served one after another (keep-alive). Per request: parse
the head, route by Host and path, dial the backend's endpoints in round-robin order until one
accepts (a refused or timed-out endpoint costs an attempt, not the request), send the head
with ``X-Forwarded-*`` fields and ``Connection: close``, stream the request body while reading
the response, stream the response back. An upstream that closes before answering a request
without a body is retried on the next endpoint too: a pod stopping during a rollout can
accept a connection it never serves. ``Upgrade`` (WebSocket) requests become a two-way relay
after a ``101``. Answers of its own: 400 (malformed request), 404 (no route), 431 (head over
64 KiB), 502 (no endpoint answered), 503 (the Service has no ready endpoint), 504 (timeout).

HTTPS: one TLS context per certificate; the SNI name picks it (:meth:`RouteTable.certificate`).
Keys are read from a private temporary file that is deleted at once (``ssl`` loads only from
files) and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from agent.ingress import _http
from agent.ingress.routes import Backend, Certificate, RouteTable, build_table
from agent.proxy import Endpoint, ServiceRuleSet
from schemas.core import Secret
from schemas.meta import Condition
from schemas.networking import Ingress

__all__ = ["IngressServer", "IngressSettings"]

_log = logging.getLogger(__name__)

Scheme = Literal["http", "https"]
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_REASONS: Final = {
    400: "Bad Request",
    404: "Not Found",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class IngressSettings:
    address: str
    """Where the listeners bind: the node's address (the agent's ``--bind-address``)."""
    http_port: int | None = 80
    https_port: int | None = 443
    """None: that listener is off."""
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 60.0
    """Longest wait for the next bytes from the upstream or the client (nginx's 60 s)."""
    idle_timeout_s: float = 75.0
    """How long a kept-alive client connection may wait for its next request."""


class _Upstream(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class IngressServer:
    """The ingress listeners of one node and the routes they serve."""

    def __init__(self, settings: IngressSettings) -> None:
        self.settings = settings
        self._ingresses: tuple[Ingress, ...] = ()
        self._secrets: tuple[Secret, ...] = ()
        self._rules = ServiceRuleSet()
        self.table = RouteTable()
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._servers: dict[Scheme, asyncio.Server] = {}
        self._listen_problems: dict[Scheme, str] = {}
        self._tls_problems: list[str] = []
        self._lock = asyncio.Lock()
        self._turns: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.Task[None]] = set()

    # --- inputs ---------------------------------------------------------------------------

    def take(self, ingresses: Sequence[Ingress], secrets: Sequence[Secret]) -> None:
        """The Ingresses of a desired set and its Secrets (runs on the event loop)."""
        tls_names = {
            (i.namespace, t.secret_name) for i in ingresses for t in i.spec.tls if t.secret_name
        }
        self._ingresses = tuple(ingresses)
        self._secrets = tuple(s for s in secrets if (s.namespace, s.name) in tls_names)
        self._rebuild()

    def take_rules(self, rules: ServiceRuleSet) -> None:
        """The Service rules the node programs now (drained endpoints already out)."""
        self._rules = rules
        if self._ingresses:
            self._rebuild()

    def _rebuild(self) -> None:
        table = build_table(self._ingresses, self._secrets, self._rules)
        certificates_changed = table.certificates != self.table.certificates
        self.table = table
        for problem in table.problems:
            _log.warning("ingress: %s", problem)
        if certificates_changed:
            self._contexts = self._tls_contexts(table.certificates)
        task = asyncio.get_running_loop().create_task(self._listen(), name="ingress-listen")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _tls_contexts(self, certificates: dict[str, Certificate]) -> dict[str, ssl.SSLContext]:
        """One TLS context per certificate, keyed by its Secret (``namespace/name``)."""
        contexts: dict[str, ssl.SSLContext] = {}
        self._tls_problems = []
        for certificate in {c.source: c for c in certificates.values()}.values():
            try:
                contexts[certificate.source] = _load_context(certificate)
            except (ssl.SSLError, OSError, ValueError) as exc:
                problem = f"TLS Secret {certificate.source} is not a usable key pair: {exc}"
                self._tls_problems.append(problem)
                _log.warning("ingress: %s", problem)
        return contexts

    # --- listeners ------------------------------------------------------------------------

    async def _listen(self) -> None:
        async with self._lock:
            wanted: dict[Scheme, int | None] = {
                "http": None if self.table.empty else self.settings.http_port,
                "https": self.settings.https_port if self._contexts else None,
            }
            for scheme, port in wanted.items():
                server = self._servers.get(scheme)
                if port is None:
                    if server is not None:
                        await self._stop(scheme)
                    self._listen_problems.pop(scheme, None)
                    continue
                if server is not None:
                    continue
                await self._start(scheme, port)

    async def _start(self, scheme: Scheme, port: int) -> None:
        context = self._server_context() if scheme == "https" else None

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._connections.add(task)
            try:
                await self._serve(reader, writer, scheme=scheme, port=port)
            finally:
                self._connections.discard(task)

        try:
            self._servers[scheme] = await asyncio.start_server(
                handle,
                host=self.settings.address,
                port=port,
                ssl=context,
                reuse_address=True,
                limit=_http.MAX_HEAD,
            )
        except OSError as exc:
            problem = f"cannot listen on {self.settings.address}:{port} ({scheme}): {exc}"
            self._listen_problems[scheme] = problem
            _log.warning("ingress: %s", problem)
            return
        self._listen_problems.pop(scheme, None)
        _log.info("ingress: serving %s on %s:%d", scheme, self.settings.address, port)

    async def _stop(self, scheme: Scheme) -> None:
        server = self._servers.pop(scheme)
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()

    def _server_context(self) -> ssl.SSLContext:
        # The listener's context holds no certificate: OpenSSL calls the SNI callback for
        # every ClientHello (server_name None without SNI) before it needs one, and the
        # callback swaps in the context of the certificate for that name. Certificates thus
        # change without restarting the listener.
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.sni_callback = self._sni
        return context

    def _sni(self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        certificate = self.table.certificate(server_name)
        chosen = self._contexts.get(certificate.source) if certificate is not None else None
        if chosen is not None:
            connection.context = chosen

    @property
    def listening(self) -> dict[str, int]:
        """``{scheme: port}`` of the listeners serving now."""
        return {
            scheme: int(server.sockets[0].getsockname()[1])
            for scheme, server in sorted(self._servers.items())
            if server.sockets
        }

    def condition(self) -> Condition:
        """The node's ``IngressReady`` condition: what is served, and what is not."""
        problems = [*self._listen_problems.values(), *self.table.problems, *self._tls_problems]
        listening = ", ".join(f"{scheme} :{port}" for scheme, port in self.listening.items())
        if problems:
            return Condition(
                type="IngressReady", status="False", reason="Problems", message="; ".join(problems)
            )
        if not listening:
            return Condition(
                type="IngressReady", status="True", reason="NoIngresses", message="nothing to serve"
            )
        return Condition(
            type="IngressReady", status="True", reason="Serving", message=f"listening: {listening}"
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for scheme in list(self._servers):
            await self._stop(scheme)
        for connection in list(self._connections):
            connection.cancel()

    # --- one client connection --------------------------------------------------------------

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        scheme: Scheme,
        port: int,
    ) -> None:
        peer = writer.get_extra_info("peername")
        client = peer[0] if isinstance(peer, tuple) else ""
        try:
            keep = True
            while keep:
                try:
                    raw = await asyncio.wait_for(
                        reader.readuntil(b"\r\n\r\n"), self.settings.idle_timeout_s
                    )
                except asyncio.LimitOverrunError:
                    await self._answer(writer, 431, "request head too large", keep=False)
                    return
                try:
                    request = _http.parse_head(raw)
                    framing = _http.request_framing(request)
                except _http.BadMessage as exc:
                    await self._answer(writer, 400, str(exc), keep=False)
                    return
                keep = await self._forward(
                    request, framing, reader, writer, scheme=scheme, port=port, client=client
                )
        except (
            asyncio.IncompleteReadError,
            TimeoutError,
            ConnectionError,
            ssl.SSLError,
            _http.BadMessage,
        ):
            return  # the client went away or spoke garbage mid-request: nobody to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, writer: asyncio.StreamWriter, status: int, message: str, *, keep: bool
    ) -> None:
        body = f"{status} {_REASONS[status]}: {message}\n".encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()

    async def _forward(
        self,
        request: _http.Head,
        framing: _http.Framing,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        scheme: Scheme,
        port: int,
        client: str,
    ) -> bool:
        """Serve one request; True when the client connection may carry the next one."""
        method, target, version = request.first
        connection = request.tokens("connection")
        keep_client = (
            version == "HTTP/1.1" and "close" not in connection
        ) or "keep-alive" in connection
        upgrade = "upgrade" in connection and request.get("upgrade") is not None
        # A body left unread on the client connection ends it: what follows is not a head.
        keep_if_unread = keep_client and framing.empty
        host = _request_host(request)
        path = _request_path(target)
        backend = self.table.route(host, path)
        if backend is None:
            await self._answer(
                writer, 404, f"no Ingress rule for {host}{path}", keep=keep_if_unread
            )
            return keep_if_unread
        if not backend.endpoints:
            await self._answer(
                writer, 503, f"{backend.label} has no ready endpoint", keep=keep_if_unread
            )
            return keep_if_unread
        forwarded = (
            ("X-Forwarded-For", _append(request.get("x-forwarded-for"), client)),
            ("X-Forwarded-Proto", scheme),
            ("X-Forwarded-Host", request.get("host") or host),
            ("X-Forwarded-Port", str(port)),
        )
        hop = (
            (("Connection", "upgrade"), ("Upgrade", request.get("upgrade") or ""))
            if upgrade
            else (("Connection", "close"),)
        )
        upstream_head = request.encode(
            drop=_http.HOP_BY_HOP
            | {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port"},
            add=forwarded + hop,
        )
        retry_silent_close = framing.empty and method in _IDEMPOTENT
        try:
            up_reader, up_writer, response = await self._exchange(
                backend,
                upstream_head,
                retry_silent_close=retry_silent_close,
                framing=framing,
                reader=reader,
            )
        except _Upstream as exc:
            await self._answer(writer, exc.status, str(exc), keep=keep_if_unread)
            return keep_if_unread
        body_task, first = response
        try:
            return await self._relay_response(
                first,
                method=method,
                up_reader=up_reader,
                up_writer=up_writer,
                writer=writer,
                reader=reader,
                keep_client=keep_client,
                upgrade=upgrade,
                body_task=body_task,
            )
        finally:
            if body_task is not None and not body_task.done():
                body_task.cancel()
            up_writer.close()

    async def _exchange(
        self,
        backend: Backend,
        head: bytes,
        *,
        retry_silent_close: bool,
        framing: _http.Framing,
        reader: asyncio.StreamReader,
    ) -> tuple[
        asyncio.StreamReader,
        asyncio.StreamWriter,
        tuple[asyncio.Task[None] | None, _http.Head],
    ]:
        """Dial the backend, send the request, read the first response head."""
        # Round robin per backend: each new request starts at the next endpoint.
        turn = self._turns.get(backend.label, 0)
        self._turns[backend.label] = turn + 1
        endpoints = _rotated(backend.endpoints, turn)
        problems: list[str] = []
        for endpoint in endpoints:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(endpoint.address, endpoint.port, limit=_http.MAX_HEAD),
                    self.settings.connect_timeout_s,
                )
            except (OSError, TimeoutError) as exc:
                problems.append(f"{endpoint}: {exc or 'timed out'}")
                continue
            body_task: asyncio.Task[None] | None = None
            try:
                up_writer.write(head)
                await up_writer.drain()
                if not framing.empty:
                    body_task = asyncio.get_running_loop().create_task(
                        _http.copy_body(
                            reader, up_writer, framing, timeout=self.settings.read_timeout_s
                        )
                    )
                raw = await asyncio.wait_for(
                    up_reader.readuntil(b"\r\n\r\n"), self.settings.read_timeout_s
                )
                return up_reader, up_writer, (body_task, _http.parse_head(raw))
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                up_writer.close()
                if body_task is not None:
                    body_task.cancel()
                partial = isinstance(exc, asyncio.IncompleteReadError) and exc.partial
                if retry_silent_close and not partial:
                    problems.append(f"{endpoint}: closed without answering")
                    continue
                raise _Upstream(502, f"{backend.label} at {endpoint}: {exc}") from None
            except TimeoutError:
                up_writer.close()
                raise _Upstream(504, f"{backend.label} at {endpoint} did not answer") from None
            except (_http.BadMessage, asyncio.LimitOverrunError) as exc:
                up_writer.close()
                raise _Upstream(502, f"{backend.label} at {endpoint}: {exc}") from None
        raise _Upstream(502, f"no endpoint of {backend.label} answered: {'; '.join(problems)}")

    async def _relay_response(
        self,
        response: _http.Head,
        *,
        method: str,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        writer: asyncio.StreamWriter,
        reader: asyncio.StreamReader,
        keep_client: bool,
        upgrade: bool,
        body_task: asyncio.Task[None] | None,
    ) -> bool:
        timeout = self.settings.read_timeout_s
        status = response.first[1]
        while status.startswith("1") and status != "101":
            # 100 Continue and friends: pass on, then the real response follows.
            writer.write(response.encode())
            await writer.drain()
            raw = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), timeout)
            response = _http.parse_head(raw)
            status = response.first[1]
        if status == "101" and upgrade:
            writer.write(response.encode())
            await writer.drain()
            await _pipe_both(reader, writer, up_reader, up_writer, timeout=None)
            return False
        framing = _http.response_framing(response, request_method=method)
        keep = keep_client and not framing.until_close
        writer.write(
            response.encode(
                drop=_http.HOP_BY_HOP,
                add=(("Connection", "keep-alive" if keep else "close"),),
            )
        )
        await writer.drain()
        await _http.copy_body(up_reader, writer, framing, timeout=timeout)
        if body_task is not None:
            if not body_task.done():
                # The upstream answered before reading the whole body (e.g. 413): the rest
                # of the body is still on the client connection, which therefore ends.
                return False
            if body_task.exception() is not None:
                return False
        return keep


def _request_host(request: _http.Head) -> str:
    target = request.first[1]
    if "://" in target:  # absolute-form: its authority wins over Host
        authority = target.split("://", 1)[1].split("/", 1)[0]
    else:
        authority = request.get("host") or ""
    if authority.startswith("["):
        return authority.split("]", 1)[0] + "]"
    return (
        authority.rsplit(":", 1)[0].lower().rstrip(".")
        if ":" in authority
        else authority.lower().rstrip(".")
    )


def _request_path(target: str) -> str:
    if "://" in target:
        rest = target.split("://", 1)[1]
        target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return target.split("?", 1)[0].split("#", 1)[0] or "/"


def _append(existing: str | None, client: str) -> str:
    return f"{existing}, {client}" if existing else client


def _rotated(endpoints: tuple[Endpoint, ...], turn: int) -> tuple[Endpoint, ...]:
    start = turn % len(endpoints)
    return endpoints[start:] + endpoints[:start]


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    *,
    timeout: float | None,
) -> None:
    async def one_way(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await asyncio.wait_for(src.read(_http.CHUNK), timeout):
                dst.write(data)
                await dst.drain()
        with contextlib.suppress(OSError):
            if dst.can_write_eof():
                dst.write_eof()

    await asyncio.gather(one_way(reader, up_writer), one_way(up_reader, writer))


def _load_context(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # WARNING: ssl loads keys only from files. The file is private (0600 in a 0700
    # directory) and gone before this returns; the key then lives only in the context.
    with tempfile.TemporaryDirectory(prefix="capstan-ingress-") as directory:
        chain = os.path.join(directory, "tls.crt")
        key = os.path.join(directory, "tls.key")
        for path, data in ((chain, certificate.chain), (key, certificate.key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        context.load_cert_chain(chain, key)
    return context
