"""The ASGI application: routes, the front door (overload limit, metrics), error mapping.

``capstan up`` builds it with :func:`create_app` and runs it with
:func:`reconciler.api.server.serve`; tests and the benchmark do the same. Starlette routes
the few fixed paths and hands ``/api`` and ``/apis`` to :class:`RestHandler`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler.api import Api, ApiError, kind_prefix
from reconciler.api.server._auth import Authenticator, token_digest
from reconciler.api.server._cache import ListCache
from reconciler.api.server._discovery import version_info
from reconciler.api.server._logs import PodLogSource
from reconciler.api.server._openapi import (
    openapi_document,
    openapi_v3_group_version,
    openapi_v3_index,
)
from reconciler.api.server._rbac import Attributes, Authorizer
from reconciler.api.server._resources import RESOURCES
from reconciler.api.server._rest import (
    METRIC_SCOPE_KEY,
    Limits,
    RestHandler,
    json_response,
    read_body,
)
from reconciler.api.server._status import HttpError, from_api_error, status_body, status_bytes
from reconciler.metrics import CapstanMetrics
from reconciler.store import Store

__all__ = ["ServerHooks", "create_app"]

_log = logging.getLogger(__name__)
_FIXED_ROUTES = frozenset(
    {
        "/healthz",
        "/readyz",
        "/version",
        "/metrics",
        "/openapi/v3",
        "/openapi.json",
        "/capstan/v1/syncs",
        "/capstan/v1/plan",
        "/hooks/git",
    }
)
_JSON_TYPES = frozenset({"application/json", ""})
_REST_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# The forges' webhook authentication headers (verified in reconciler.source.webhook).
_GITHUB_SIGNATURE = "X-Hub-Signature-256"
_SIGNATURE_RE = re.compile(r"sha256=[0-9a-fA-F]{64}")
_GITLAB_HEADER = "X-Gitlab-Token"
_MAX_GITLAB_CHARS = 1024


@dataclass(frozen=True)
class ServerHooks:
    """What other parts of ``capstan up`` plug into the server. All are blocking callables
    (run in worker threads); each left None keeps its route with a clear default.

    - ``on_git_webhook(headers, body) -> bool``: verify and trigger a fetch; False → 401.
      Called only for a request that carries a well-formed signature header and a body of
      at most ``Limits.max_webhook_body_bytes`` (else 401 / 413 before the body is read).
    - ``syncs() -> [sync record dicts]``: ``/capstan/v1/syncs`` (default: empty list).
    - ``plan(ref | None) -> plan dict``: ``/capstan/v1/plan`` (default: 503).
    - ``ready() -> bool``: extra readiness on top of "the store answers".
    """

    on_git_webhook: Callable[[Mapping[str, str], bytes], bool] | None = None
    syncs: Callable[[], Sequence[Mapping[str, Any]]] | None = None
    plan: Callable[[str | None], Mapping[str, Any]] | None = None
    ready: Callable[[], bool] | None = None
    #: The web UI's routes (``reconciler.ui.web_ui``), built with the server's own
    #: authenticator and authorizer; None: no ``/ui/``.
    ui: Callable[[Api, Authenticator, Authorizer], Sequence[BaseRoute]] | None = None
    #: ``pods/log``: opens a pod container's log on its node
    #: (:func:`reconciler.nodes.logs.pod_log_source`); None: ``pods/log`` is a 503.
    pod_logs: PodLogSource | None = None


def _require_signature_header(headers: Mapping[str, str]) -> None:
    """401 unless the request carries a well-formed GitHub ``X-Hub-Signature-256``
    (``sha256=`` and 64 hex digits) or GitLab ``X-Gitlab-Token``. Checked before the body
    is read; whether it verifies is the webhook callback's to say, once the body is in."""
    signature = headers.get(_GITHUB_SIGNATURE)
    if signature is not None:
        if not _SIGNATURE_RE.fullmatch(signature.strip()):
            raise HttpError(401, f"{_GITHUB_SIGNATURE} must be 'sha256=' and 64 hex digits")
        return
    token = headers.get(_GITLAB_HEADER)
    if token is not None:
        if not (0 < len(token) <= _MAX_GITLAB_CHARS and token.isascii() and token.isprintable()):
            raise HttpError(401, f"{_GITLAB_HEADER} is empty, too long or not printable ASCII")
        return
    raise HttpError(
        401,
        f"the request is not signed: send {_GITHUB_SIGNATURE} (GitHub) or "
        f"{_GITLAB_HEADER} (GitLab)",
    )


def _error_response(error: HttpError) -> Response:
    return json_response(error.body(), code=error.code, headers=error.headers)


class _FrontDoor:
    """Outermost ASGI layer: refuses work past the in-flight limits with 429 + Retry-After,
    and records request count and latency per (verb, resource, code)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: Limits,
        metrics: CapstanMetrics,
        rest: Callable[[Request], Awaitable[Response]],
    ) -> None:
        self._app = app
        self._rest = rest
        self._limits = limits
        self._metrics = metrics
        self._in_flight = 0
        self._watches = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        raw_query = scope.get("query_string", b"")
        # Long-running: watches and followed pod logs, counted apart as Kubernetes does.
        params = parse_qs(raw_query.decode("latin-1")) if raw_query else {}
        watch = any(params.get(key, [""])[0] in ("true", "1") for key in ("watch", "follow"))
        if watch:
            if self._watches >= self._limits.max_watches:
                await self._overloaded(scope, send, "too many watches")
                return
            self._watches += 1
        else:
            if self._in_flight >= self._limits.max_in_flight:
                await self._overloaded(scope, send, "too many requests in flight")
                return
            self._in_flight += 1
        started = time.perf_counter()
        code = 500
        timed = False

        async def send_and_measure(message: Message) -> None:
            nonlocal code, timed
            if message["type"] == "http.response.start":
                code = int(message["status"])
            await send(message)
            if watch and not timed and message["type"] == "http.response.start":
                timed = True
                self._observe(scope, time.perf_counter() - started)

        try:
            if self._is_rest(scope):
                # WHY past Starlette: for /api and /apis its router and two middlewares
                # only wrap what `_guarded` already does (every error a Status); sampled
                # on the 32-client PUT bench (py-spy) they took ~10% of the event loop's
                # time per request. Anything else (other methods: 405, HEAD) still goes
                # through Starlette.
                response = await self._rest(Request(scope, receive))
                await response(scope, receive, send_and_measure)
            else:
                await self._app(scope, receive, send_and_measure)
        finally:
            if watch:
                self._watches -= 1
            else:
                self._in_flight -= 1
                self._observe(scope, time.perf_counter() - started)
            verb, resource = self._labels(scope)
            self._metrics.http_requests.inc(1, verb, resource, str(code))

    @staticmethod
    def _is_rest(scope: Scope) -> bool:
        path = str(scope.get("path", ""))
        method = scope.get("method")
        if path in ("/api", "/apis"):
            return method == "GET"
        return path.startswith(("/api/", "/apis/")) and method in _REST_METHODS

    @staticmethod
    def _labels(scope: Scope) -> tuple[str, str]:
        labels = scope.get(METRIC_SCOPE_KEY)
        if labels is not None:
            return str(labels[0]), str(labels[1])
        path = str(scope.get("path", ""))
        return str(scope.get("method", "")).lower(), path if path in _FIXED_ROUTES else "other"

    def _observe(self, scope: Scope, seconds: float) -> None:
        verb, resource = self._labels(scope)
        self._metrics.http_request_duration.observe(seconds, verb, resource)

    async def _overloaded(self, scope: Scope, send: Send, why: str) -> None:
        retry = str(self._limits.retry_after_s)
        body = status_bytes(status_body(429, f"{why}; retry after {retry}s"))
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", retry.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self._metrics.http_requests.inc(
            1, str(scope.get("method", "")).lower(), "overloaded", "429"
        )


def _guarded(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Every error becomes a Status; anything unexpected is logged and is a 500."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except HttpError as exc:
            return _error_response(exc)
        except ApiError as exc:
            return _error_response(from_api_error(exc, name=None, kind=None))
        except Exception:
            _log.exception("internal error serving %s %s", request.method, request.url.path)
            return _error_response(HttpError(500, "internal error; see the server log"))

    return endpoint


def create_app(
    api: Api,
    store: Store,
    *,
    admin_token: str | None = None,
    metrics: CapstanMetrics | None = None,
    hooks: ServerHooks | None = None,
    limits: Limits | None = None,
    rbac_ttl_s: float = 1.0,
    list_cache: bool = True,
) -> ASGIApp:
    """The HTTP API over ``api`` (writes) and ``store`` (the same store, read directly for
    GET/LIST/WATCH). ``admin_token`` is the clear admin token (only its digest is kept);
    None disables it. ``metrics`` is rendered at ``/metrics`` (a fresh set if None).
    ``list_cache`` serves LISTs from memory (see ``_cache``); it needs the ASGI lifespan
    (uvicorn ``lifespan="on"``), which starts and stops it."""
    metrics = metrics or CapstanMetrics.create()
    hooks = hooks or ServerHooks()
    limits = limits or Limits()
    authenticator = Authenticator.for_api(
        api, admin_token_sha256=token_digest(admin_token) if admin_token else None
    )
    authorizer = Authorizer(api, ttl_s=rbac_ttl_s)
    cache = (
        ListCache(
            store,
            prefixes=[
                kind_prefix(r.model, None) for r in RESOURCES.values() if r.model is not None
            ],
        )
        if list_cache
        else None
    )
    rest = RestHandler(
        api,
        store,
        authenticator=authenticator,
        authorizer=authorizer,
        limits=limits,
        cache=cache,
        pod_logs=hooks.pod_logs,
    )
    whole = openapi_document()
    document = json.dumps(whole, separators=(",", ":")).encode()
    digest = hashlib.sha256(document).hexdigest()[:32].upper()
    v3_index = openapi_v3_index(whole, digest=digest)

    async def allowed_path(request: Request, verb: str = "get") -> None:
        user = await rest.authenticate(request)
        await rest.authorize(Attributes(user=user, verb=verb, path=request.url.path))

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        try:
            await run_in_threadpool(api.current_revision)
            ready = hooks.ready is None or await run_in_threadpool(hooks.ready)
        except ApiError as exc:
            raise HttpError(503, f"not ready: {exc.message}") from exc
        if not ready:
            raise HttpError(503, "not ready")
        return PlainTextResponse("ok")

    async def version(request: Request) -> Response:
        return json_response(version_info())

    async def metrics_text(request: Request) -> Response:
        await allowed_path(request)
        metrics.store_revision.set(await run_in_threadpool(api.current_revision))
        return Response(
            metrics.registry.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def openapi(request: Request) -> Response:
        return json_response(document)

    async def openapi_v3(request: Request) -> Response:
        return json_response(v3_index)

    v3_parts: dict[str, bytes] = {}

    async def openapi_v3_part(request: Request) -> Response:
        path = request.path_params["path"]
        if path not in v3_parts:
            part = openapi_v3_group_version(whole, path)
            if part is None:
                raise HttpError(404, "the server could not find the requested resource")
            v3_parts[path] = json.dumps(part, separators=(",", ":")).encode()
        return json_response(v3_parts[path])

    async def syncs(request: Request) -> Response:
        await allowed_path(request)
        items = [] if hooks.syncs is None else list(await run_in_threadpool(hooks.syncs))
        return json_response(
            {"apiVersion": "capstan.io/v1", "kind": "SyncList", "metadata": {}, "items": items}
        )

    async def plan(request: Request) -> Response:
        await allowed_path(request)
        ref = request.query_params.get("ref") or None
        if hooks.plan is None:
            raise HttpError(503, "no plan provider is configured in this server")
        provider = hooks.plan
        return json_response(dict(await run_in_threadpool(provider, ref)))

    async def git_webhook(request: Request) -> Response:
        # The order matters: nothing of the body is read before the request shows it is
        # signed, and then only up to a small bound, so an anonymous caller costs a few bytes.
        if hooks.on_git_webhook is None:
            raise HttpError(404, "no Git webhook handler is configured in this server")
        _require_signature_header(request.headers)
        body = await read_body(
            request,
            limit=limits.max_webhook_body_bytes,
            types=_JSON_TYPES | {"application/x-www-form-urlencoded"},
        )
        callback = hooks.on_git_webhook
        headers = {k: v for k, v in request.headers.items()}
        if not await run_in_threadpool(callback, headers, body):
            raise HttpError(401, "webhook signature or token does not verify")
        return json_response(status_body(202, "fetch triggered", reason="Accepted"), code=202)

    methods = sorted(_REST_METHODS)
    routes = [
        Route("/healthz", _guarded(healthz), methods=["GET"]),
        Route("/readyz", _guarded(readyz), methods=["GET"]),
        Route("/version", _guarded(version), methods=["GET"]),
        Route("/metrics", _guarded(metrics_text), methods=["GET"]),
        Route("/openapi/v3", _guarded(openapi_v3), methods=["GET"]),
        Route("/openapi/v3/{path:path}", _guarded(openapi_v3_part), methods=["GET"]),
        Route("/openapi.json", _guarded(openapi), methods=["GET"]),
        Route("/capstan/v1/syncs", _guarded(syncs), methods=["GET"]),
        Route("/capstan/v1/plan", _guarded(plan), methods=["GET"]),
        Route("/hooks/git", _guarded(git_webhook), methods=["POST"]),
        Route("/api", _guarded(rest), methods=["GET"]),
        Route("/apis", _guarded(rest), methods=["GET"]),
        Route("/api/{path:path}", _guarded(rest), methods=methods),
        Route("/apis/{path:path}", _guarded(rest), methods=methods),
        *(hooks.ui(api, authenticator, authorizer) if hooks.ui is not None else ()),
    ]

    async def http_exception(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        message = (
            "the server could not find the requested resource"
            if code == 404
            else (
                f"{request.method} is not allowed on {request.url.path}"
                if code == 405
                else str(getattr(exc, "detail", "error"))
            )
        )
        return _error_response(HttpError(code, message))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if cache is not None:
            await run_in_threadpool(cache.start)
        try:
            yield
        finally:
            if cache is not None:
                await run_in_threadpool(cache.stop)
            rest.shutdown()

    app = Starlette(
        routes=routes, exception_handlers={HTTPException: http_exception}, lifespan=lifespan
    )
    return _FrontDoor(app, limits=limits, metrics=metrics, rest=_guarded(rest))
