"""Running the HTTP server: state-dir bootstrap (admin token, TLS) and uvicorn in a thread.

``capstan up`` calls :func:`serve` once and ``stop()`` on shutdown, and records the running
server (``url``; ``state``: the admin token file and the CA) in the client config itself;
tests and the benchmark do the same on port 0. Plain HTTP is only allowed on a loopback
address and only when ``insecure_http`` is set: a token sent in clear over a network is a
token given away.
"""

from __future__ import annotations

import gc
import ipaddress
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from reconciler._private import private_dir
from reconciler.api import Api
from reconciler.api.server._app import ServerHooks, create_app
from reconciler.api.server._rest import Limits
from reconciler.api.server._tls import TlsFiles, ensure_admin_token, ensure_tls
from reconciler.metrics import CapstanMetrics
from reconciler.store import Store

__all__ = ["ApiServer", "ServeOptions", "ServerState", "prepare_state", "serve"]

ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name
PKI_DIR = "pki"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeOptions:
    """How to serve. ``tls_cert``/``tls_key``: the user's own certificate (both or neither;
    ``tls_ca`` is then what clients should trust, if not a public CA)."""

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 6443
    insecure_http: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_hosts: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    log_level: str = "warning"
    #: Move everything alive once the server listens (imports, the list cache's objects,
    #: whatever the process built before) out of the garbage collector's sight.
    freeze_gc: bool = True

    def check(self) -> None:
        if self.insecure_http and not _is_loopback(self.host):
            raise ValueError(
                f"plain HTTP is only allowed on a loopback address, not {self.host!r}: "
                "bearer tokens would cross the network in clear"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")


@dataclass(frozen=True)
class ServerState:
    """What first start made (or found) in the state directory."""

    admin_token: str
    admin_token_file: Path
    tls: TlsFiles | None


def prepare_state(options: ServeOptions) -> ServerState:
    """Make the admin token and (unless plain HTTP or the user's own certificate) the CA and
    server certificate, once; later starts reuse them."""
    options.check()
    private_dir(options.state_dir)
    token_file = options.state_dir / ADMIN_TOKEN_FILE
    token = ensure_admin_token(token_file)
    tls: TlsFiles | None = None
    if options.tls_cert is not None and options.tls_key is not None:
        ca = options.tls_ca or options.tls_cert
        tls = TlsFiles(
            ca_cert=ca, ca_key=None, server_cert=options.tls_cert, server_key=options.tls_key
        )
    elif not options.insecure_http:
        hosts = (*options.tls_hosts, options.host)
        tls = ensure_tls(options.state_dir / PKI_DIR, hosts=hosts)
    return ServerState(admin_token=token, admin_token_file=token_file, tls=tls)


class ApiServer:
    """uvicorn serving the app on a daemon thread. ``start()`` returns once it listens."""

    def __init__(self, app: object, *, options: ServeOptions, state: ServerState) -> None:
        self.options = options
        self.state = state
        tls = state.tls
        self._config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=options.host,
            port=options.port,
            ssl_certfile=str(tls.server_cert) if tls else None,
            ssl_keyfile=str(tls.server_key) if tls else None,
            log_level=options.log_level,
            access_log=False,
            lifespan="on",
            # No proxy sits in front, so X-Forwarded-* must not be believed (and the
            # middleware that reads them is one more layer on every request).
            proxy_headers=False,
            # A bounded backlog of keep-alive connections; the app's own limits answer 429.
            timeout_keep_alive=30,
            # Open watches would otherwise hold shutdown forever.
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        servers = getattr(self._server, "servers", [])
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.options.port

    @property
    def url(self) -> str:
        scheme = "https" if self.state.tls else "http"
        host = self.options.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    def start(self, *, timeout: float = 15.0) -> None:
        self._thread = threading.Thread(target=self._server.run, name="api-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(
                    f"API server failed to start on {self.options.host}:{self.options.port}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("API server did not start in time")
            time.sleep(0.01)
        if self.options.freeze_gc:
            # WHY: a full (gen2) collection walks every tracked object; after startup that
            # is ~70k of them that live as long as the process, and on the 32-client PUT
            # bench each such pass stalled the event loop and every request in flight for
            # ~23 ms, enough on its own to set the p99. Frozen, they are never walked again.
            gc.collect()
            gc.freeze()

    def stop(self, *, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    api: Api,
    store: Store,
    *,
    options: ServeOptions,
    hooks: ServerHooks | None = None,
    metrics: CapstanMetrics | None = None,
) -> ApiServer:
    """Bootstrap the state dir, build the app and start serving; returns the running server
    (``.url``, ``.state.admin_token``, ``.stop()``)."""
    state = prepare_state(options)
    app = create_app(
        api,
        store,
        admin_token=state.admin_token,
        metrics=metrics,
        hooks=hooks,
        limits=options.limits,
    )
    server = ApiServer(app, options=options, state=state)
    server.start()
    return server
