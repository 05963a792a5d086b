"""The web UI's routes under ``/ui/``: login, pages, live updates and actions.

Mounted by :func:`reconciler.api.server.create_app` (``ServerHooks(ui=web_ui(...))``, which
``capstan up`` passes) next to the REST API, so it shares its
TLS, its :class:`Authenticator` (the same tokens) and its :class:`Authorizer` (RBAC): every
page and action needs the permission of the matching API read or write (``PERMISSIONS``).
Pages are rendered on the server (Jinja2); ``static/ui.js`` follows ``/ui/events`` (server-sent
events: one per store revision) and re-fetches the page's ``<main>``. Every response carries
a Content-Security-Policy without ``unsafe-inline``: scripts and styles come only from
``/ui/static/``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from reconciler.api import Api, ApiError
from reconciler.api.server._auth import Authenticator
from reconciler.api.server._rbac import Attributes, Authorizer, UserInfo, denial_message
from reconciler.api.server._status import HttpError
from reconciler.sync import list_sync_records, set_suspended
from reconciler.sync.records import STATE_NAME, SYSTEM_NAMESPACE
from reconciler.ui._actions import ActionError, UiSources
from reconciler.ui._sessions import COOKIE, Session, Sessions
from reconciler.ui._views import app_view, history_view, nodes_view, overview

__all__ = ["CSP", "PERMISSIONS", "ui_routes", "web_ui"]

_log = logging.getLogger(__name__)
_HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_MAX_FORM_BYTES = 16 * 1024
_EVENT_POLL_S = 0.2
_EVENT_KEEPALIVE_S = 15.0
_EVENT_MAX_S = 1800.0
_MAX_LOG_LINES = 5000


def _needs(
    verb: str,
    resource: str,
    *,
    group: str = "",
    namespace: str | None = None,
    name: str | None = None,
    path: str | None = None,
) -> Callable[[UserInfo], Attributes]:
    def attrs(user: UserInfo) -> Attributes:
        return Attributes(
            user=user,
            verb=verb,
            api_group=group,
            resource=resource,
            namespace=namespace,
            name=name,
            path=path,
        )

    return attrs


#: The API permission each page and action needs (the app page adds its namespace and name).
PERMISSIONS: dict[str, Callable[[UserInfo], Attributes]] = {
    "overview": _needs("list", "deployments", group="apps"),
    "nodes": _needs("list", "nodes"),
    "history": _needs("list", "configmaps", namespace=SYSTEM_NAMESPACE),
    "plan": _needs("get", "", path="/capstan/v1/plan"),
    # The sync switches live in this ConfigMap: the same write `capstan sync --suspend` makes.
    "sync": _needs("update", "configmaps", namespace=SYSTEM_NAMESPACE, name=STATE_NAME),
    # Kubernetes' own name for a Deployment rollback; cluster-wide, since it reverts Git.
    "rollback": _needs("create", "deployments/rollback", group="apps"),
}
#: The pages in the navigation bar, shown when the user may see them.
_NAV = ("nodes", "history", "plan")
_ACTIONS = {
    "suspend": ("Suspend the Git sync", "sync"),
    "resume": ("Resume the Git sync", "sync"),
    "sync": ("Sync now", "sync"),
}


class _Ui:
    """State shared by the routes: the API, authn/authz, sessions, templates."""

    def __init__(
        self, api: Api, *, authenticator: Authenticator, authorizer: Authorizer, sources: UiSources
    ) -> None:
        self.api = api
        self.authn = authenticator
        self.authz = authorizer
        self.sources = sources
        self.sessions = Sessions()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    # -- who and may they ----------------------------------------------------------------

    async def user_of(self, token: str) -> UserInfo | None:
        admin = self.authn.admin(token)
        if admin is not None:
            return admin
        try:
            return await run_in_threadpool(self.authn.service_account, token)
        except HttpError:
            return None

    async def allowed(self, attrs: Attributes) -> bool:
        if self.authz.cached_allows(attrs):
            return True
        return bool(await run_in_threadpool(self.authz.allowed, attrs))

    async def can(self, user: UserInfo, *names: str) -> dict[str, bool]:
        return {name: await self.allowed(PERMISSIONS[name](user)) for name in names}

    # -- responses -----------------------------------------------------------------------

    def render(
        self, request: Request, template: str, *, code: int = 200, **context: Any
    ) -> Response:
        partial = request.headers.get("x-capstan-partial") == "1"
        context.setdefault("page", "")
        html = self.templates.get_template(template).render(partial=partial, **context)
        return HTMLResponse(html, status_code=code, headers=_HEADERS)


_Handler = Callable[[Request, "_Ui", Session, UserInfo], Awaitable[Response]]


def _page(ui: _Ui, handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
    """The session check around every page: no session → the login page."""

    async def endpoint(request: Request) -> Response:
        session = ui.sessions.get(request.cookies.get(COOKIE))
        user = await ui.user_of(session.token) if session is not None else None
        if session is None or user is None:
            ui.sessions.close(request.cookies.get(COOKIE))
            if request.method == "GET" and "text/event-stream" not in request.headers.get(
                "accept", ""
            ):
                return RedirectResponse("/ui/login", status_code=303, headers=_HEADERS)
            return _plain(401, "not logged in")
        if request.method == "POST":
            form = await _form(request)
            if form is None:
                return _too_large()
            if not session.csrf_ok(form.get("csrf")):
                return _plain(403, "the form is stale or from another site; reload the page")
            request.state.form = form
        started = time.perf_counter()
        try:
            response = await handler(request, ui, session, user)
            # How long the page took here (the bench and the browser's devtools read it).
            elapsed_ms = (time.perf_counter() - started) * 1000
            response.headers["Server-Timing"] = f"page;dur={elapsed_ms:.1f}"
            return response
        except _Denied as exc:
            return ui.render(
                request,
                "error.html",
                code=403,
                title="Forbidden",
                message=exc.message,
                user=user,
                session=session,
                can={},
            )
        except (ApiError, ActionError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            return ui.render(
                request,
                "error.html",
                code=409,
                title="Could not do that",
                message=message,
                user=user,
                session=session,
                can={},
            )

    return endpoint


class _Denied(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def _require(ui: _Ui, attrs: Attributes) -> None:
    if not await ui.allowed(attrs):
        raise _Denied(denial_message(attrs))


def _plain(code: int, text: str) -> Response:
    return Response(text, status_code=code, media_type="text/plain", headers=_HEADERS)


def _too_large() -> Response:
    return _plain(413, f"the form is larger than {_MAX_FORM_BYTES} bytes")


async def _form(request: Request) -> dict[str, str] | None:
    """The URL-encoded form of a POST; None when it is larger than any form of these pages."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return None
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def _common(session: Session, user: UserInfo, can: dict[str, bool], **more: Any) -> dict[str, Any]:
    return {"user": user, "session": session, "can": can, **more}


# -- pages -------------------------------------------------------------------------------


async def _overview(request: Request, ui: _Ui, session: Session, user: UserInfo) -> Response:
    await _require(ui, PERMISSIONS["overview"](user))
    can = await ui.can(user, "nodes", "sync", "rollback", "history", "plan")
    data = await run_in_threadpool(overview, ui.api, ui.sources.source, show_nodes=can["nodes"])
    return ui.render(
        request,
        "overview.html",
        **_common(session, user, can, page="overview", title="Overview", **data),
    )


async def _app(request: Request, ui: _Ui, session: Session, user: UserInfo) -> Response:
    namespace = request.path_params["namespace"]
    name = request.path_params["name"]
    await _require(
        ui,
        Attributes(
            user=user,
            verb="get",
            api_group="apps",
            resource="deployments",
            namespace=namespace,
            name=name,
        ),
    )
    data = await run_in_threadpool(app_view, ui.api, ui.sources.source, namespace, name)
    can = await ui.can(user, *_NAV)
    if data is None:
        return ui.render(
            request,
            "error.html",
            code=404,
            title="Not found",
            message=f"no Deployment {namespace}/{name}",
            **_common(session, user, can),
        )
    return ui.render(
        request,
        "app.html",
        **_common(session, user, can, page="app", title=f"{namespace}/{name}", **data),
    )


async def _history(request: Request, ui: _Ui, session: Session, user: UserInfo) -> Response:
    await _require(ui, PERMISSIONS["history"](user))
    can = await ui.can(user, *_NAV)
    wanted = request.query_params.get("id")
    records = await run_in_threadpool(history_view, ui.api)
    if wanted is not None:
        records = [r for r in records if str(r["record"].id) == wanted]
    return ui.render(
        request,
        "history.html",
        **_common(
            session,
            user,
            can,
            page="history",
            title="Sync history",
            records=records,
            one=wanted is not None,
        ),
    )


async def _nodes(request: Request, ui: _Ui, session: Session, user: UserInfo) -> Response:
    await _require(ui, PERMISSIONS["nodes"](user))
    can = await ui.can(user, *_NAV)
    nodes = await run_in_threadpool(nodes_view, ui.api)
    return ui.render(
        request,
        "nodes.html",
        **_common(session, user, can, page="nodes", title="Nodes", nodes=nodes),
    )


async def _plan(request: Request, ui: _Ui, session: Session, user: UserInfo) -> Response:
    await _require(ui, PERMISSIONS["plan"](user))
    can = await ui.can(user, *_NAV)
    ref = request.query_params.get("ref") or None
    text = None
    recent = await run_in_threadpool(lambda: list_sync_records(ui.api, limit=20))
    choices = [ui.sources.source.branch, *dict.fromkeys(r.commit for r in recent)]
    if ref is not None:
        if ui.sources.plan is None:
            raise ActionError("this server has no Git source to plan from")
        base = request.query_params.get("base") or None
        text = await run_in_threadpool(ui.sources.plan, ref, base)
    return ui.render(
        request,
        "plan.html",
        **_common(
            session,
            user,
            can,
            page="plan",
            title="Plan",
            ref=ref or "",
            plan=text,
            choices=choices,
            base=request.query_params.get("base") or "",
        ),
    )


async def _logs(request: Request, ui: _Ui, session: Session, user: UserInfo) -> Response:
    """The last ``tail`` lines of a pod's log; ``follow=1`` streams new text as SSE."""
    namespace = request.path_params["namespace"]
    name = request.path_params["name"]
    await _require(
        ui, Attributes(user=user, verb="get", resource="pods/log", namespace=namespace, name=name)
    )
    if ui.sources.logs is None:
        raise ActionError("this server cannot reach the nodes' agents")
    tail_text = request.query_params.get("tail", "100")
    tail = int(tail_text) if tail_text.isdigit() else 100
    tail = max(1, min(tail, _MAX_LOG_LINES))
    logs = ui.sources.logs
    if request.query_params.get("follow") == "1":
        return _follow_logs(request, logs(namespace, name, 0, True))

    def read() -> str:
        return "".join(logs(namespace, name, tail, False))

    text = await run_in_threadpool(read)
    can = await ui.can(user, *_NAV)
    return ui.render(
        request,
        "logs.html",
        **_common(
            session,
            user,
            can,
            title=f"Logs of {namespace}/{name}",
            namespace=namespace,
            name=name,
            tail=tail,
            text=text,
        ),
    )


def _follow_logs(request: Request, chunks: Iterator[str]) -> Response:
    async def stream() -> AsyncIterator[bytes]:
        try:
            async for chunk in iterate_in_threadpool(chunks):
                if await request.is_disconnected():
                    return
                data = "".join(f"data: {line}\n" for line in chunk.splitlines())
                yield f"event: log\n{data}\n".encode()
        except ActionError as exc:
            yield f"event: failed\ndata: {exc}\n\n".encode()
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={**_HEADERS, "X-Accel-Buffering": "no"}
    )


# -- actions -----------------------------------------------------------------------------


async def _action(request: Request, ui: _Ui, session: Session, user: UserInfo) -> Response:
    name = request.path_params["name"]
    if name not in _ACTIONS:
        return _plain(404, f"no action {name!r}")
    label, permission = _ACTIONS[name]
    await _require(ui, PERMISSIONS[permission](user))
    form: dict[str, str] = request.state.form
    if form.get("confirm") != "yes":
        return ui.render(
            request,
            "confirm.html",
            **_common(
                session,
                user,
                await ui.can(user, *_NAV),
                title=label,
                action=name,
                label=label,
                fields={},
            ),
        )
    if name == "sync":
        if ui.sources.trigger is None:
            raise ActionError("this server runs no sync loop to trigger")
        await run_in_threadpool(ui.sources.trigger)
    else:
        await run_in_threadpool(set_suspended, ui.api, name == "suspend")
    return RedirectResponse("/ui/", status_code=303, headers=_HEADERS)


async def _rollback(request: Request, ui: _Ui, session: Session, user: UserInfo) -> Response:
    await _require(ui, PERMISSIONS["rollback"](user))
    sources = ui.sources
    if sources.rollback_preview is None or sources.rollback is None:
        raise ActionError("this server has no Git source to roll back")
    form: dict[str, str] = request.state.form
    if form.get("confirm") != "yes":
        preview = await run_in_threadpool(sources.rollback_preview)
        return ui.render(
            request,
            "rollback.html",
            **_common(session, user, await ui.can(user, *_NAV), title="Roll back", preview=preview),
        )
    sha = await run_in_threadpool(sources.rollback, form.get("head", ""), form.get("target", ""))
    return ui.render(
        request,
        "done.html",
        **_common(
            session,
            user,
            await ui.can(user, *_NAV),
            title="Rolled back",
            message=f"Committed revert {sha[:12]} to {sources.source.branch}; the cluster follows "
            "on its next sync.",
        ),
    )


async def _events(request: Request, ui: _Ui, session: Session, user: UserInfo) -> Response:
    """One ``change`` event per store revision change, checked every 0.2 s. The page asks
    with ``?watch=1`` so that the server's front door counts the stream among the
    long-running watches, not the requests in flight."""

    async def stream() -> AsyncIterator[bytes]:
        last = await run_in_threadpool(ui.api.current_revision)
        started = quiet_since = time.monotonic()
        yield f"retry: 1000\nevent: hello\ndata: {last}\n\n".encode()
        while time.monotonic() - started < _EVENT_MAX_S:
            await asyncio.sleep(_EVENT_POLL_S)
            if await request.is_disconnected() or ui.sessions.get(session.id) is None:
                return  # gone, logged out or expired: the page's next fetch goes to login
            revision = await run_in_threadpool(ui.api.current_revision)
            if revision != last:
                last = revision
                quiet_since = time.monotonic()
                yield f"event: change\ndata: {revision}\n\n".encode()
            elif time.monotonic() - quiet_since > _EVENT_KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield b": keep-alive\n\n"

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={**_HEADERS, "X-Accel-Buffering": "no"}
    )


# -- login -------------------------------------------------------------------------------


async def _login_page(
    ui: _Ui, request: Request, *, error: str | None = None, code: int = 200
) -> Response:
    return ui.render(
        request,
        "login.html",
        code=code,
        title="Log in",
        error=error,
        user=None,
        session=None,
        can={},
    )


def _login(ui: _Ui) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if request.method == "GET":
            return await _login_page(ui, request)
        form = await _form(request)
        if form is None:
            return _too_large()
        token = form.get("token", "").strip()
        user = await ui.user_of(token) if token and len(token) <= 1024 else None
        if user is None:
            return await _login_page(ui, request, error="That token is not valid.", code=401)
        session = ui.sessions.open(token)
        response = RedirectResponse("/ui/", status_code=303, headers=_HEADERS)
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=int(ui.sessions.ttl_s),
            path="/ui",
            secure=True,
            httponly=True,
            samesite="strict",
        )
        return response

    return endpoint


def _logout(ui: _Ui) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        session = ui.sessions.get(request.cookies.get(COOKIE))
        form = await _form(request)
        if session is not None and form is not None and session.csrf_ok(form.get("csrf")):
            ui.sessions.close(session.id)
        response = RedirectResponse("/ui/login", status_code=303, headers=_HEADERS)
        response.delete_cookie(COOKIE, path="/ui", secure=True, httponly=True, samesite="strict")
        return response

    return endpoint


def ui_routes(
    api: Api, *, authenticator: Authenticator, authorizer: Authorizer, sources: UiSources | None
) -> list[BaseRoute]:
    """The routes of ``/ui`` for the API server's Starlette app."""
    ui = _Ui(
        api, authenticator=authenticator, authorizer=authorizer, sources=sources or UiSources()
    )

    def page(handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
        return _page(ui, handler)

    inner = Starlette(
        routes=[
            Route("/", page(_overview), methods=["GET"]),
            Route("/login", _login(ui), methods=["GET", "POST"]),
            Route("/logout", _logout(ui), methods=["POST"]),
            Route("/events", page(_events), methods=["GET"]),
            Route("/apps/{namespace}/{name}", page(_app), methods=["GET"]),
            Route("/history", page(_history), methods=["GET"]),
            Route("/nodes", page(_nodes), methods=["GET"]),
            Route("/plan", page(_plan), methods=["GET"]),
            Route("/pods/{namespace}/{name}/logs", page(_logs), methods=["GET"]),
            Route("/actions/rollback", page(_rollback), methods=["POST"]),
            Route("/actions/{name}", page(_action), methods=["POST"]),
            Mount("/static", StaticFiles(directory=_HERE / "static")),
        ]
    )

    async def to_slash(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=308)

    return [Route("/ui", to_slash), Mount("/ui", app=inner)]


def web_ui(
    sources: UiSources | None = None,
) -> Callable[[Api, Authenticator, Authorizer], list[BaseRoute]]:
    """The ``ServerHooks(ui=...)`` of the API server: :func:`ui_routes` over ``sources``."""

    def routes(api: Api, authenticator: Authenticator, authorizer: Authorizer) -> list[BaseRoute]:
        return ui_routes(api, authenticator=authenticator, authorizer=authorizer, sources=sources)

    return routes
