"""The REST handlers: one request on a Kubernetes-shaped path → authn, authz, the API call.

Mounted by :func:`reconciler.api.server.create_app` on ``/api/...`` and ``/apis/...``. Order
for every request: parse the path (404), authenticate (401), authorize (403), validate query
and body (400/413/415/422), then read from the store's bytes or write through the blocking
:class:`reconciler.api.Api` in a worker thread. Writes to objects that come from Git are
refused unless the caller asks for an emergency override and holds the ``override`` verb on
the object (see ``docs/api.md``); writes of RBAC objects are checked against privilege
escalation (see ``_rbac``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar, cast

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from reconciler.api import (
    AlreadyExists,
    Api,
    ApiError,
    Cause,
    Conflict,
    Forbidden,
    NotFound,
    invalid_from,
    kind_prefix,
    now_utc,
    object_key,
)
from reconciler.api.server import _raw
from reconciler.api.server._apply import (
    APPLY_PATCH,
    default_manager,
    parse_apply,
    server_side_apply,
    track_update,
)
from reconciler.api.server._auth import Authenticator
from reconciler.api.server._cache import ListCache, Subscription
from reconciler.api.server._discovery import (
    AGGREGATED_MEDIA_TYPE,
    aggregated_discovery,
    api_groups,
    api_resources,
    api_versions,
)
from reconciler.api.server._eventwatch import (
    event_dict,
    event_lines_from,
    event_prefix,
    initial_event_lines,
)
from reconciler.api.server._fieldselect import FieldSelector, parse_field_selector
from reconciler.api.server._impersonation import impersonated
from reconciler.api.server._logs import PodLogs, PodLogSource
from reconciler.api.server._negotiation import TABLE_MEDIA_TYPE, Form, negotiate
from reconciler.api.server._pages import parse_limit, read_page
from reconciler.api.server._patch import PATCH_MEDIA_TYPES, Patch, parse_patch
from reconciler.api.server._protobuf import PROTOBUF_MEDIA_TYPE, decode_object
from reconciler.api.server._query import (
    json_object,
    parse_bool,
    parse_label_selector,
    parse_revision,
    parse_timeout,
)
from reconciler.api.server._rbac import (
    RBAC_KINDS,
    Attributes,
    Authorizer,
    UserInfo,
    denial_message,
    only_gc_fields_differ,
)
from reconciler.api.server._resources import Resource, Target, parse_path
from reconciler.api.server._review import (
    REVIEW_PATH,
    RULES_REVIEW_PATH,
    access_review,
    rules_review,
)
from reconciler.api.server._scale import scale_document, with_scale
from reconciler.api.server._status import HttpError, from_api_error, status_body, status_bytes
from reconciler.api.server._table import table
from reconciler.api.server._workers import WorkerPool
from reconciler.diff import DRIFT_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, OVERRIDE_HEADER
from reconciler.store import Compacted, Revision, StorageFull, Store, StoreError, Watch
from reconciler.store import Event as StoreEvent
from schemas import KubeObject, Pod

__all__ = [
    "DRIFT_ANNOTATION",
    "OVERRIDE_HEADER",
    "OVERRIDE_VERB",
    "Limits",
    "RestHandler",
    "json_response",
    "read_body",
]

_log = logging.getLogger(__name__)

#: The verb a user needs on a Git-managed object to write it with the override (Kubernetes
#: guards its own privileged acts with special verbs the same way: escalate, bind).
OVERRIDE_VERB = "override"
METRIC_SCOPE_KEY = "capstan.metric"
_JSON_TYPES = frozenset({"application/json", ""})
_PATCH_RETRIES = 5
_NO_QUERY: Mapping[str, str] = MappingProxyType({})
_REVIEWS: Mapping[str, Callable[..., dict[str, Any]]] = MappingProxyType(
    {REVIEW_PATH: access_review, RULES_REVIEW_PATH: rules_review}
)

R = TypeVar("R")


@dataclass(frozen=True)
class Limits:
    """Server-wide bounds. Watches are long-running and counted apart from other requests
    (Kubernetes' ``--max-requests-inflight`` does the same)."""

    max_body_bytes: int = 3 * 1024 * 1024
    #: ``/hooks/git`` reads its body before it can check a GitHub signature: keep it small.
    max_webhook_body_bytes: int = 1024 * 1024
    max_in_flight: int = 256
    max_watches: int = 1024
    max_watch_seconds: int = 1800
    retry_after_s: int = 1
    #: Threads that run the blocking API and store calls (see ``_workers``).
    worker_threads: int = 16


def json_response(
    body: Any,
    *,
    code: int = 200,
    headers: Mapping[str, str] | None = None,
    media_type: str = "application/json",
) -> Response:
    content = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status_code=code, media_type=media_type, headers=dict(headers or {}))


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, *, limit: int, types: frozenset[str]) -> bytes:
    """The request body, at most ``limit`` bytes, of one of the JSON media ``types``."""
    media = _media_type(request)
    if media not in types:
        raise HttpError(
            415, f"unsupported media type {media!r}; send one of {sorted(t for t in types if t)}"
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HttpError(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise HttpError(413, f"the request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


#: The Status reason of the 409 for a write to an object that comes from Git.
GIT_MANAGED_REASON = "Forbidden"


class RestHandler:
    """Serves every resource path. One per app; stateless apart from its collaborators."""

    def __init__(
        self,
        api: Api,
        store: Store,
        *,
        authenticator: Authenticator,
        authorizer: Authorizer,
        limits: Limits,
        cache: ListCache | None = None,
        pod_logs: PodLogSource | None = None,
    ) -> None:
        self._workers = WorkerPool(limits.worker_threads, name="api-worker")
        self._logs = PodLogs(pod_logs, max_streams=limits.max_watches)
        self.cache = cache
        self.api = api
        self.store = store
        self.authn = authenticator
        self.authz = authorizer
        self.limits = limits

    # -- front half: who, what, may they --------------------------------------------------

    async def authenticate(self, request: Request) -> UserInfo:
        """Who the request acts as: its token's user, or the user it impersonates."""
        token = Authenticator.bearer(request.headers.get("authorization"))
        user = self.authn.admin(token)
        if user is None:
            user = await self.run(lambda: self.authn.service_account(token))
        return await impersonated(user, request.headers.items(), allowed=self._allows)

    async def _allows(self, attrs: Attributes) -> bool:
        return self.authz.cached_allows(attrs) or await self.run(lambda: self.authz.allowed(attrs))

    async def authorize(self, attrs: Attributes, *, kind: str | None = None) -> None:
        if self.authz.cached_allows(attrs):
            return
        if not await self.run(lambda: self.authz.allowed(attrs)):
            raise HttpError(403, denial_message(attrs), name=attrs.name, kind=kind)

    @staticmethod
    def _attributes(user: UserInfo, verb: str, target: Target) -> Attributes:
        # Kubernetes authorizes a Namespace object within itself, so a RoleBinding in "shop"
        # may grant reading namespace "shop".
        namespace = target.namespace
        if target.resource.plural == "namespaces" and target.name is not None:
            namespace = target.name
        return Attributes(
            user=user,
            verb=verb,
            api_group=target.resource.group,
            resource=target.rbac_resource,
            namespace=namespace,
            name=target.name,
        )

    @staticmethod
    def _verb(method: str, target: Target, watch: bool) -> str:
        if method == "GET":
            if target.name is not None:
                return "get"
            return "watch" if watch else "list"
        if target.subresource == "eviction":
            if method != "POST":
                raise HttpError(405, f"{method} is not allowed on pods/eviction; use POST")
            return "create"
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        verb = verbs.get(method)
        named = target.name is not None
        if verb is None or (verb == "create") == named:
            raise HttpError(405, f"{method} is not allowed on this path")
        if (
            target.subresource
            and verb != "update"
            and (verb, target.subresource) != ("patch", "scale")
        ):
            raise HttpError(
                405,
                f"{method} is not allowed on the {target.subresource} subresource; use GET or PUT",
            )
        if target.resource.model is None:
            raise HttpError(405, f"{target.resource.plural} are read-only over HTTP")
        if verb == "create" and target.resource.namespaced and target.namespace is None:
            raise HttpError(
                405,
                f"create {target.resource.plural} under "
                f"/namespaces/{{namespace}}/{target.resource.plural}",
            )
        return verb

    async def __call__(self, request: Request) -> Response:
        request.scope[METRIC_SCOPE_KEY] = (request.method.lower(), "unknown")
        # Authenticate first, as Kubernetes does: without a valid token, every path is a 401
        # and nobody learns which resources or objects exist.
        user = await self.authenticate(request)
        # The path as ``request.url.path`` has it, without building the whole URL per request.
        path = (
            str(request.scope["path"]).replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
        )
        target = parse_path(path)
        if target is None and request.method == "GET":
            response = self._discovery(path, request.headers.get("accept"))
            if response is not None:
                request.scope[METRIC_SCOPE_KEY] = ("get", "discovery")
                return response
        if target is None and request.method == "POST" and path in _REVIEWS:
            plural = path.rsplit("/", 1)[1]
            request.scope[METRIC_SCOPE_KEY] = ("create", plural)
            return await self._review(request, user, _REVIEWS[path])
        if target is None:
            raise HttpError(404, "the server could not find the requested resource")
        query = self._query(request)
        watch = parse_bool("watch", query.get("watch"))
        verb = self._verb(request.method, target, watch)
        request.scope[METRIC_SCOPE_KEY] = (verb, target.rbac_resource)
        resource = target.resource
        attrs = self._attributes(user, verb, target)
        await self.authorize(attrs, kind=resource.plural)
        if target.subresource == "log":
            if verb != "get":
                raise HttpError(405, f"{request.method} is not allowed on pods/log; use GET")
            pod = await self._call(lambda: self._current(Pod, target), target=target)
            return await self._logs.respond(cast(Pod, pod), self._query(request))
        reading = verb in ("get", "list", "watch")
        form = negotiate(
            request.headers.get("accept"),
            allowed=frozenset({Form.TABLE}) if reading else frozenset(),
        )
        if target.subresource == "scale" and resource.model is not None:
            return await self._scale(resource.model, target, verb, request, user)
        if target.subresource == "eviction":
            return await self._evict(target)
        fields = parse_field_selector(query.get("fieldSelector"), kind=resource.kind)
        if resource.model is None:
            if verb == "watch":
                events = await self._watch_events(target, fields, query)
                return self._shaped(events, form, resource, query)
            return self._shaped(await self._events(target, fields), form, resource, query)
        model = resource.model
        if verb == "get":
            return self._shaped(await self._get(model, target), form, resource, query)
        if verb == "list":
            return self._shaped(
                await self._list(model, target, query.get("labelSelector"), fields, query),
                form,
                resource,
                query,
            )
        if verb == "watch":
            watch_response = await self._watch(model, target, query)
            if fields is not None and isinstance(watch_response, StreamingResponse):
                watch_response.body_iterator = _selected_events(
                    watch_response.body_iterator, fields
                )
            return self._shaped(watch_response, form, resource, query)
        applying = verb == "patch" and _media_type(request) == APPLY_PATCH
        # For an apply, ?force=true is Kubernetes' "take over conflicting fields", not the
        # Git override (which then needs the header).
        override = self._override(request, force_overrides=not applying)
        if verb == "delete":
            body = await read_body(request, limit=self.limits.max_body_bytes, types=_JSON_TYPES)
            return await self._delete(model, target, body, user, override)
        types = (
            PATCH_MEDIA_TYPES | {APPLY_PATCH}
            if verb == "patch"
            else _JSON_TYPES | {PROTOBUF_MEDIA_TYPE}
        )
        body = await read_body(request, limit=self.limits.max_body_bytes, types=types)
        if applying:
            patch = self._apply_patch(model, target, body, query)
            return await self._patch(model, target, patch, user, override, manager="")
        manager = default_manager(query.get("fieldManager"), request.headers.get("user-agent"))
        if verb == "patch":
            patch = parse_patch(_media_type(request), body)
            return await self._patch(model, target, patch, user, override, manager=manager)
        protobuf = _media_type(request) == PROTOBUF_MEDIA_TYPE
        document = await self.run(lambda: decode_object(body)) if protobuf else json_object(body)
        if verb == "create":
            return await self._create(model, target, document, user, manager)
        if target.subresource == "status":
            return await self._update_status(model, target, document)
        return await self._update(model, target, document, user, override, manager)

    @staticmethod
    def _discovery(path: str, accept: str | None) -> Response | None:
        parts = path.strip("/").split("/")
        if parts in (["api"], ["apis"]):
            form = negotiate(accept, allowed=frozenset({Form.AGGREGATED_DISCOVERY}))
            if form is Form.AGGREGATED_DISCOVERY:
                return json_response(
                    aggregated_discovery(core=parts == ["api"]), media_type=AGGREGATED_MEDIA_TYPE
                )
            return json_response(api_versions() if parts == ["api"] else api_groups())
        document = None
        if len(parts) == 2 and parts[0] == "api":
            document = api_resources("", parts[1])
        if len(parts) == 3 and parts[0] == "apis":
            document = api_resources(parts[1], parts[2])
        return None if document is None else json_response(document)

    def _shaped(
        self, response: Response, form: Form, resource: Resource, query: Mapping[str, str]
    ) -> Response:
        """``response`` (an object, a list or a watch stream) as the negotiated ``form``."""
        if form is not Form.TABLE:
            return response
        now = now_utc(self.api.clock)
        include = query.get("includeObject")
        kind = resource.kind
        if isinstance(response, StreamingResponse):
            response.body_iterator = _table_events(
                response.body_iterator,
                kind=kind,
                include=include,
                clock=lambda: now_utc(self.api.clock),
            )
            response.headers["content-type"] = TABLE_MEDIA_TYPE
            return response
        document = json.loads(bytes(response.body))
        is_list = isinstance(document.get("items"), list)
        rows = document["items"] if is_list else [document]
        metadata = (
            document.get("metadata", {})
            if is_list
            else {"resourceVersion": document.get("metadata", {}).get("resourceVersion", "")}
        )
        return json_response(
            table(rows, kind=kind, now=now, include=include, metadata=metadata),
            media_type=TABLE_MEDIA_TYPE,
        )

    async def _review(
        self,
        request: Request,
        user: UserInfo,
        answer_for: Callable[..., dict[str, Any]],
    ) -> Response:
        body = await read_body(
            request, limit=self.limits.max_body_bytes, types=_JSON_TYPES | {PROTOBUF_MEDIA_TYPE}
        )
        protobuf = _media_type(request) == PROTOBUF_MEDIA_TYPE
        document = decode_object(body) if protobuf else json_object(body)
        answer = await self.run(lambda: answer_for(document, user=user, authorizer=self.authz))
        return json_response(answer, code=201)

    @staticmethod
    def _override(request: Request, *, force_overrides: bool = True) -> bool:
        header = request.headers.get(OVERRIDE_HEADER)
        if header is not None and header.strip().lower() != "drift":
            raise HttpError(400, f"{OVERRIDE_HEADER}: {header!r}: the only override is 'drift'")
        if header is not None:
            return True
        return force_overrides and parse_bool("force", RestHandler._query(request).get("force"))

    def _apply_patch(
        self, model: type[KubeObject], target: Target, body: bytes, query: Mapping[str, str]
    ) -> Patch:
        """A server-side apply as a patch (see ``_apply``): ``fieldManager`` is required,
        ``force`` takes over conflicting fields, a missing object is created."""
        manager = query.get("fieldManager")
        if not manager:
            raise HttpError(
                422,
                "PATCH with Content-Type application/apply-patch+yaml (server-side apply) needs "
                "the fieldManager query parameter (kubectl sends it; --field-manager sets it)",
                reason="Invalid",
            )
        manager = default_manager(manager, None)
        force = parse_bool("force", query.get("force"))
        config = self._fill(parse_apply(body), target.resource, target)
        metadata = config["metadata"]
        if metadata.get("managedFields"):
            raise HttpError(
                422,
                "the apply patch is invalid: metadata.managedFields must be left out "
                "(the server keeps it)",
                reason="Invalid",
                causes=(Cause("metadata.managedFields", "must be left out"),),
            )

        def normalize(document: dict[str, Any]) -> dict[str, Any]:
            return self._prevalidate(model, document, keep_status=False).to_dict()

        def apply(current: dict[str, Any] | None) -> dict[str, Any]:
            merged = server_side_apply(
                current,
                config,
                manager=manager,
                force=force,
                now=now_utc(self.api.clock),
                normalize=normalize,
            )
            # In stored form: a list the configuration replaces whole comes without the
            # defaults the stored one has, and the API would count that as a spec change
            # (a new generation) although validation fills them in again.
            return normalize(merged)

        return Patch(
            apply=apply,
            pinned=bool(metadata.get("resourceVersion")),
            create=lambda: apply(None),
            owns_fields=True,
        )

    @staticmethod
    def _query(request: Request) -> Mapping[str, str]:
        # Most writes carry no query string; Starlette would still parse the empty one.
        return request.query_params if request.scope.get("query_string") else _NO_QUERY

    # -- the API call, in a worker thread ----------------------------------------------------

    async def run(self, fn: Callable[[], R]) -> R:
        """``fn()`` on one of the handler's worker threads (see ``_workers``)."""
        return await self._workers.run(fn)

    def shutdown(self) -> None:
        """Stop the worker threads (the app's lifespan calls it on the way out)."""
        self._workers.shutdown()

    async def _call(self, fn: Callable[[], R], *, target: Target) -> R:
        try:
            return await self.run(fn)
        except ApiError as exc:
            raise from_api_error(exc, name=target.name, kind=target.resource.plural) from exc
        except StorageFull as exc:
            raise HttpError(507, f"store: {exc}") from exc
        except StoreError as exc:
            raise HttpError(503, f"store: {exc}") from exc

    async def _get(self, model: type[KubeObject], target: Target) -> Response:
        name = target.name or ""
        body = await self._call(
            lambda: _raw.get_bytes(self.store, model, namespace=target.namespace or "", name=name),
            target=target,
        )
        if body is None:
            where = f' in namespace "{target.namespace}"' if target.namespace else ""
            raise HttpError(
                404,
                f'{target.resource.plural} "{name}" not found{where}',
                name=name,
                kind=target.resource.plural,
            )
        return json_response(body)

    async def _list(
        self,
        model: type[KubeObject],
        target: Target,
        selector_text: str | None,
        fields: FieldSelector | None,
        query: Mapping[str, str],
    ) -> Response:
        selector = parse_label_selector(selector_text)
        resource = target.resource
        limit, token = parse_limit(query.get("limit")), query.get("continue") or None
        if limit is not None or token is not None:
            page = await self._call(
                lambda: read_page(
                    self.store,
                    model,
                    namespace=target.namespace,
                    selector=selector,
                    fields=fields,
                    limit=limit,
                    token=token,
                ),
                target=target,
            )
            return json_response(
                _raw.list_document(
                    page.items,
                    page.revision,
                    api_version=resource.api_version,
                    list_kind=resource.list_kind,
                    continue_token=page.next_token,
                    remaining=page.remaining,
                )
            )
        cache = self.cache

        def read() -> tuple[bytes, int]:
            if cache is not None:
                hit = cache.items(
                    kind_prefix(model, None), kind_prefix(model, target.namespace), selector
                )
                if hit is not None:
                    return hit
            return _raw.list_items(self.store, model, namespace=target.namespace, selector=selector)

        items, revision = await self._call(read, target=target)
        if fields is not None:
            # A field selector needs the decoded objects; without one the bytes go as stored.
            items = b",".join(
                json.dumps(item, separators=(",", ":")).encode()
                for item in json.loads(b"[" + items + b"]")
                if fields.matches(item)
            )
        return json_response(
            _raw.list_document(
                items, revision, api_version=resource.api_version, list_kind=resource.list_kind
            )
        )

    async def _events(self, target: Target, fields: FieldSelector | None) -> Response:
        records = await self._call(
            lambda: self.api.list_events(namespace=target.namespace), target=target
        )
        items = [event_dict(r) for r in records]
        if fields is not None:
            items = [item for item in items if fields.matches(item)]
        if target.name is not None:
            for item in items:
                if item["metadata"]["name"] == target.name:
                    return json_response(item)
            raise HttpError(
                404, f'events "{target.name}" not found', name=target.name, kind="events"
            )
        revision = await self._call(self.api.current_revision, target=target)
        return json_response(
            {
                "apiVersion": "v1",
                "kind": "EventList",
                "metadata": {"resourceVersion": str(revision)},
                "items": items,
            }
        )

    async def _watch_events(
        self, target: Target, fields: FieldSelector | None, query: Mapping[str, str]
    ) -> Response:
        """A watch of events: the current ones first (without a resourceVersion), then each
        new, repeated (MODIFIED) or expired (DELETED) record."""
        requested = parse_revision(query.get("resourceVersion"))
        timeout = parse_timeout(query.get("timeoutSeconds"), maximum=self.limits.max_watch_seconds)
        initial: list[bytes] = []
        start = requested
        if not requested:
            initial, start = await self._call(
                lambda: initial_event_lines(self.store, target.namespace, fields), target=target
            )
        watch = self.store.watch(
            event_prefix(target.namespace), prefix=True, from_revision=Revision(start or 0)
        )
        return _store_watch(watch, initial, timeout, lambda e: event_lines_from(e, fields))

    async def _watch(
        self, model: type[KubeObject], target: Target, query: Mapping[str, str]
    ) -> Response:
        selector = parse_label_selector(query.get("labelSelector"))
        requested = parse_revision(query.get("resourceVersion"))
        timeout = parse_timeout(query.get("timeoutSeconds"), maximum=self.limits.max_watch_seconds)
        initial: list[bytes] = []
        start: int
        send_initial = parse_bool("sendInitialEvents", query.get("sendInitialEvents"))
        if requested and not send_initial:
            start = requested
        else:
            # No resourceVersion (or "0"): the current objects first, as Kubernetes does.
            initial, start = await self._call(
                lambda: _raw.initial_events(
                    self.store, model, namespace=target.namespace, selector=selector
                ),
                target=target,
            )
        if send_initial:
            # client-go's WatchList (kubectl rollout status, informers): after the current
            # objects, a BOOKMARK marked initial-events-end; without it the client waits.
            initial.append(initial_events_end(target.resource, start))
        prefix = kind_prefix(model, target.namespace)
        subscription = None
        if self.cache is not None:
            subscription = self.cache.subscribe(
                asyncio.get_running_loop(), prefix=prefix, selector=selector, after=start
            )
        if subscription is not None:
            return StreamingResponse(
                self._fed_lines(subscription, initial, timeout), media_type="application/json"
            )
        watch = self.store.watch(prefix, prefix=True, from_revision=Revision(start))
        return _store_watch(watch, initial, timeout, lambda e: _raw.event_line(e, selector))

    @staticmethod
    async def _fed_lines(
        subscription: Subscription, initial: list[bytes], timeout: float
    ) -> AsyncIterator[bytes]:
        try:
            async for line in _timed_lines(initial, timeout, subscription.queue.get):
                yield line
        finally:
            subscription.close()

    # -- writes ------------------------------------------------------------------------------

    @staticmethod
    def _fill(document: dict[str, Any], resource: Resource, target: Target) -> dict[str, Any]:
        """Check the body names the same object as the path, filling in what it leaves out."""
        for field, expected in (("apiVersion", resource.api_version), ("kind", resource.kind)):
            value = document.setdefault(field, expected)
            if value != expected:
                raise HttpError(
                    400, f"{field} {value!r} does not match the path (expected {expected!r})"
                )
        metadata = document.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise HttpError(
                422,
                f"{resource.kind} is invalid: metadata must be an object",
                reason="Invalid",
                kind=resource.plural,
                causes=(Cause("metadata", "must be an object"),),
            )
        rv = metadata.get("resourceVersion")
        if rv is not None and not (
            isinstance(rv, str) and rv.isdigit() and rv.isascii() and len(rv) <= 18
        ):
            raise HttpError(
                422,
                f"{resource.kind} is invalid: metadata.resourceVersion",
                reason="Invalid",
                kind=resource.plural,
                causes=(
                    Cause(
                        "metadata.resourceVersion",
                        "must be a resourceVersion read from the server (a string of digits)",
                    ),
                ),
            )
        if resource.namespaced:
            namespace = metadata.setdefault("namespace", target.namespace)
            if namespace != target.namespace:
                raise HttpError(
                    400,
                    "the namespace of the object does not match the "
                    f"namespace of the request ({target.namespace!r})",
                )
        if target.name is not None:
            name = metadata.setdefault("name", target.name)
            if name != target.name:
                raise HttpError(
                    400,
                    f"the name of the object ({name!r}) does not match the "
                    f"name in the path ({target.name!r})",
                )
        return document

    @staticmethod
    def _prevalidate(
        model: type[KubeObject], document: dict[str, Any], *, keep_status: bool
    ) -> KubeObject:
        """Validate before the API sees the body, so hostile shapes (a list where metadata
        belongs, a number for finalizers) become a 422 and never reach the API's plumbing.
        The object as validated (a ``generateName`` object has a stand-in name)."""
        candidate = {k: v for k, v in document.items() if keep_status or k != "status"}
        metadata = dict(candidate.get("metadata") or {})
        if not metadata.get("name") and isinstance(metadata.get("generateName"), str):
            metadata["name"] = metadata["generateName"] + "x"
        candidate["metadata"] = metadata
        try:
            return model.model_validate(candidate, by_name=False)
        except ValidationError as exc:
            raise invalid_from(exc, what=f"{model.__name__} {metadata.get('name')!r}") from exc

    def _no_escalation(
        self, obj: KubeObject, user: UserInfo, target: Target, *, current: KubeObject | None = None
    ) -> None:
        """Refuse writing an RBAC object that would grant more than ``user`` holds (see
        :meth:`Authorizer.escalation_denial`). As in Kubernetes, an update that changes only
        ownerReferences or finalizers (what garbage collection needs) is not checked."""
        if not isinstance(obj, RBAC_KINDS):
            return
        if current is not None and only_gc_fields_differ(obj, current):
            return
        message = self.authz.escalation_denial(user, obj, request_name=target.name)
        if message is not None:
            raise Forbidden(message)

    async def _create(
        self,
        model: type[KubeObject],
        target: Target,
        document: dict[str, Any],
        user: UserInfo,
        manager: str,
    ) -> Response:
        document = self._fill(document, target.resource, target)
        track_update(None, document, manager=manager, now=now_utc(self.api.clock))

        def create() -> KubeObject:
            obj = self._prevalidate(model, document, keep_status=True)
            self._no_escalation(obj, user, target)
            return self.api.create(document)

        created = await self._call(create, target=target)
        return json_response(created.to_dict(), code=201)

    def _guard_managed(
        self,
        model: type[KubeObject],
        target: Target,
        labels: Mapping[str, str],
        user: UserInfo,
        override: bool,
        verb: str,
    ) -> str | None:
        """Refuse a write to a Git-managed object unless overridden; with the override,
        the drift note to put on the object."""
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
            return None
        if not override:
            where = f' in namespace "{target.namespace}"' if target.namespace else ""
            raise HttpError(
                409,
                f'{model.__name__} "{target.name}"{where} comes from Git '
                f"({MANAGED_BY_LABEL}={MANAGED_BY_VALUE}): Git is the source of truth, so "
                f"{verb} it by changing the manifest in Git and pushing. In an emergency, "
                f"retry with header '{OVERRIDE_HEADER}: drift' (or ?force=true), which needs "
                f'the "{OVERRIDE_VERB}" verb on {target.resource.plural}; the object then '
                "shows as drift until Git catches up.",
                # WHY not "Conflict": client-go retries every 409 whose reason is Conflict
                # (a stale resourceVersion), so `kubectl scale` would retry until its
                # timeout. A known reason other than Conflict keeps the 409 and is final.
                reason=GIT_MANAGED_REASON,
                name=target.name,
                kind=target.resource.plural,
            )
        attrs = self._attributes(user, OVERRIDE_VERB, target)
        if not self.authz.allowed(attrs):
            raise Forbidden(
                f"{denial_message(attrs)}: {verb} of an object that comes from Git with "
                f"'{OVERRIDE_HEADER}: drift' (or ?force=true) needs the \"{OVERRIDE_VERB}\" "
                f"verb on {target.resource.plural}, which an admin grants in a Role or "
                "ClusterRole"
            )
        stamp = now_utc(self.api.clock).isoformat()
        return f"{verb} by {user.name} at {stamp}"

    def _record_override(self, obj: KubeObject, user: UserInfo, verb: str) -> None:
        """Say who overrode Git: an Event on the object and a log line (the drift annotation
        on the object itself is set by the write)."""
        _log.warning(
            "override: %s %s %s/%s by %s", verb, obj.kind, obj.namespace, obj.name, user.name
        )
        self.api.record_event(
            obj,
            reason="OverrideDrift",
            type="Warning",
            source="capstan-apiserver",
            message=f'{verb} by user "{user.name}" with {OVERRIDE_HEADER}: drift; the object '
            "differs from Git until the next sync puts Git's version back",
        )

    def _current(self, model: type[KubeObject], target: Target) -> KubeObject:
        return self.api.get(model, target.name or "", namespace=target.namespace)

    def _current_labels(self, model: type[KubeObject], target: Target) -> Mapping[str, str]:
        # The stored labels without decoding the whole object: this sits on every PUT.
        kv = self.store.get(object_key(model, target.namespace or "", target.name or ""))
        return {} if kv is None else _raw.labels_of(kv.value)

    @staticmethod
    def _mark_drift(document: dict[str, Any], note: str | None) -> None:
        if note is None:
            return
        metadata = document["metadata"]
        annotations = metadata.get("annotations")
        annotations = dict(annotations) if isinstance(annotations, dict) else {}
        annotations[DRIFT_ANNOTATION] = note
        metadata["annotations"] = annotations

    async def _update(
        self,
        model: type[KubeObject],
        target: Target,
        document: dict[str, Any],
        user: UserInfo,
        override: bool,
        manager: str,
    ) -> Response:
        document = self._fill(document, target.resource, target)
        sent_fields = copy.deepcopy(document["metadata"].get("managedFields"))
        overridden = False

        def check(current: Mapping[str, Any]) -> None:
            nonlocal overridden
            # It may run twice (a cached copy, then the store's): start from what was sent.
            document["metadata"]["managedFields"] = copy.deepcopy(sent_fields)
            track_update(current, document, manager=manager, now=now_utc(self.api.clock))
            metadata = current.get("metadata")
            labels = metadata.get("labels") if isinstance(metadata, dict) else None
            note = self._guard_managed(
                model, target, labels if isinstance(labels, dict) else {}, user, override, "update"
            )
            self._mark_drift(document, note)
            overridden = note is not None
            if issubclass(model, RBAC_KINDS):
                self._no_escalation(
                    self._prevalidate(model, document, keep_status=False),
                    user,
                    target,
                    current=model.model_validate(current, by_name=False),
                )

        def create() -> KubeObject | None:
            """A PUT of a missing object of a kind that allows it creates it (None: it
            exists, update it)."""
            key = object_key(model, target.namespace or "", target.name or "")
            if self.store.get(key) is not None:
                return None
            fresh = copy.deepcopy(document)
            fresh["metadata"]["managedFields"] = copy.deepcopy(sent_fields)
            track_update(None, fresh, manager=manager, now=now_utc(self.api.clock))
            return self._create_missing(model, target, fresh, user)

        def update() -> tuple[bytes | dict[str, Any], bool]:
            """The answer's body, and whether the PUT created the object."""
            if target.resource.create_on_update:
                created = create()
                if created is not None:
                    return created.to_dict(), True
            # No pre-validation here (unlike create): _fill made sure metadata is a mapping,
            # and the API validates the merged result itself. This path is the hot one: one
            # read (the watch cache's copy when it is at the client's resourceVersion, else
            # the store's) serves both the Git-managed check and the resourceVersion guard,
            # and the answer is the stored bytes (what a GET returns), not a re-encoded model.
            recent = None
            rv = document["metadata"].get("resourceVersion")
            if self.cache is not None and rv is not None:
                recent = self.cache.recent(
                    kind_prefix(model, None),
                    object_key(model, target.namespace or "", target.name or ""),
                    revision=int(rv),
                )
            stored = self.api.update_document(document, check_current=check, recent=recent)
            if overridden:
                self._record_override(model.model_validate_json(stored.value), user, "update")
            return _raw.with_revision(stored.value, stored.revision), False

        body, created = await self._call(update, target=target)
        return json_response(body, code=201 if created else 200)

    async def _update_status(
        self, model: type[KubeObject], target: Target, document: dict[str, Any]
    ) -> Response:
        document = self._fill(document, target.resource, target)

        def update_status() -> KubeObject:
            try:
                obj = model.model_validate(document, by_name=False)
            except ValidationError as exc:
                raise invalid_from(exc, what=f"{model.__name__} {target.name!r}") from exc
            return self.api.update_status(obj)

        updated = await self._call(update_status, target=target)
        return json_response(updated.to_dict())

    async def _scale(
        self, model: type[KubeObject], target: Target, verb: str, request: Request, user: UserInfo
    ) -> Response:
        """GET, PUT or PATCH of the ``scale`` subresource: a write is a PATCH of the
        object's ``spec.replicas`` (Git guard included), answered with the new Scale."""
        if verb == "get":
            current = await self._call(lambda: self._current(model, target), target=target)
            return json_response(scale_document(current.to_dict()))
        override = self._override(request)
        types = PATCH_MEDIA_TYPES if verb == "patch" else _JSON_TYPES
        body = await read_body(request, limit=self.limits.max_body_bytes, types=types)
        if verb == "patch":
            patch = parse_patch(_media_type(request), body)
            change = Patch(
                apply=lambda current: with_scale(current, patch.apply(scale_document(current))),
                pinned=patch.pinned,
            )
        else:
            scale = json_object(body)
            metadata = scale.get("metadata")
            change = Patch(
                apply=lambda current: with_scale(current, scale),
                pinned=bool(isinstance(metadata, dict) and metadata.get("resourceVersion")),
            )
        manager = default_manager(
            self._query(request).get("fieldManager"), request.headers.get("user-agent")
        )
        return await self._patch(
            model, target, change, user, override, manager=manager, shape=scale_document
        )

    async def _patch(
        self,
        model: type[KubeObject],
        target: Target,
        patch: Patch,
        user: UserInfo,
        override: bool,
        *,
        manager: str,
        shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Response:
        """A PATCH (of the object, or of its ``scale``): read, patch, write if unchanged
        since the read (else again). ``manager`` gets the fields the patch changed, unless
        the patch records ownership itself (an apply, which may also create the object:
        then the answer is 201 Created, as Kubernetes gives)."""
        pinned = patch.pinned
        verb = "apply" if patch.owns_fields else "patch"

        def apply() -> tuple[KubeObject, bool]:
            """The object as written, and whether this write created it."""
            for _attempt in range(_PATCH_RETRIES):
                try:
                    current = self._current(model, target)
                except NotFound:
                    if patch.create is None:
                        raise
                    created = self._create_missing(model, target, patch.create(), user)
                    if created is None:
                        continue
                    return created, True
                note = self._guard_managed(model, target, current.labels, user, override, verb)
                before = current.to_dict()
                merged = patch.apply(copy.deepcopy(before))
                if not patch.owns_fields:
                    track_update(
                        before,
                        merged,
                        manager=manager,
                        now=now_utc(self.api.clock),
                        subresource=target.subresource,
                    )
                document = self._fill(merged, target.resource, target)
                if not pinned:
                    document["metadata"]["resourceVersion"] = current.metadata.resource_version
                self._mark_drift(document, note)
                obj = self._prevalidate(model, document, keep_status=False)
                self._no_escalation(obj, user, target, current=current)
                try:
                    updated = self.api.update(document)
                except Conflict:
                    if pinned:
                        raise
                    continue
                if note is not None:
                    self._record_override(updated, user, verb)
                return updated, False
            raise Conflict(f"{model.__name__} {target.name!r} kept changing; retry")

        updated, created = await self._call(apply, target=target)
        document = updated.to_dict()
        return json_response(shape(document) if shape else document, code=201 if created else 200)

    async def _evict(self, target: Target) -> Response:
        """``POST pods/NAME/eviction`` (a policy/v1 Eviction body; its options are not read):
        delete the pod unless a PodDisruptionBudget forbids it (429, as Kubernetes)."""
        name = target.name or ""
        await self._call(lambda: self.api.evict(name, namespace=target.namespace), target=target)
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        return json_response(status, code=201)

    def _create_missing(
        self, model: type[KubeObject], target: Target, document: dict[str, Any], user: UserInfo
    ) -> KubeObject | None:
        """Create the missing object a server-side apply or a PUT names (it needs ``create``
        as well as the request's own verb, as in Kubernetes); None if someone else created
        it meanwhile."""
        attrs = self._attributes(user, "create", target)
        if not self.authz.allowed(attrs):
            raise Forbidden(denial_message(attrs))
        document = self._fill(document, target.resource, target)
        document["metadata"].pop("resourceVersion", None)
        obj = self._prevalidate(model, document, keep_status=False)
        self._no_escalation(obj, user, target)
        try:
            return self.api.create(document)
        except AlreadyExists:
            return None

    async def _delete(
        self, model: type[KubeObject], target: Target, body: bytes, user: UserInfo, override: bool
    ) -> Response:
        precondition: int | None = None
        if body.strip():
            options = json_object(body)
            preconditions = options.get("preconditions") or {}
            if not isinstance(preconditions, dict):
                raise HttpError(400, "preconditions must be an object")
            raw = preconditions.get("resourceVersion")
            if raw is not None and not isinstance(raw, str):
                raise HttpError(400, "preconditions.resourceVersion must be a string")
            precondition = parse_revision(raw)

        def delete() -> KubeObject:
            labels = self._current_labels(model, target)
            note = self._guard_managed(model, target, labels, user, override, "delete")
            deleted = self.api.delete(
                model, target.name or "", namespace=target.namespace, resource_version=precondition
            )
            if note is not None:
                self._record_override(deleted, user, "delete")
            return deleted

        deleted = await self._call(delete, target=target)
        return json_response(deleted.to_dict())


def _store_watch(
    watch: Watch,
    initial: list[bytes],
    timeout: float,
    line_of: Callable[[StoreEvent], bytes | None],
) -> StreamingResponse:
    """A watch response straight from a store watch: ``initial``, then ``line_of`` each
    store event (None: filtered out), until the timeout; a compacted start is a 410 ERROR."""
    events = aiter(watch)

    async def next_line() -> bytes | None:
        # Events the selector filters out are skipped, inside the same deadline.
        async for event in events:
            line = line_of(event)
            if line is not None:
                return line
        return None

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for line in _timed_lines(initial, timeout, next_line):
                yield line
        except Compacted as exc:
            gone = status_body(410, f"too old resource version: {exc}", reason="Expired")
            yield b'{"type":"ERROR","object":' + status_bytes(gone) + b"}\n"
        finally:
            watch.close()

    return StreamingResponse(lines(), media_type="application/json")


async def _timed_lines(
    initial: list[bytes], timeout: float, next_line: Callable[[], Awaitable[bytes | None]]
) -> AsyncIterator[bytes]:
    """A watch response's lines: ``initial``, then what ``next_line()`` gives until it gives
    None or the watch's ``timeout`` has passed (Kubernetes' ``timeoutSeconds``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for line in initial:
        yield line
    while (remaining := deadline - loop.time()) > 0:
        try:
            fed = await asyncio.wait_for(next_line(), remaining)
        except TimeoutError:
            return
        if fed is None:
            return
        yield fed


def initial_events_end(resource: Resource, revision: int) -> bytes:
    """The BOOKMARK that ends a watch's initial events (``sendInitialEvents=true``)."""
    bookmark = {
        "type": "BOOKMARK",
        "object": {
            "kind": resource.kind,
            "apiVersion": resource.api_version,
            "metadata": {
                "resourceVersion": str(revision),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        },
    }
    return json.dumps(bookmark, separators=(",", ":")).encode() + b"\n"


async def _table_events(
    lines: AsyncIterable[Any], *, kind: str, include: str | None, clock: Callable[[], datetime]
) -> AsyncIterator[bytes]:
    """A watch stream with each event's object as a one-row ``Table`` (ERROR events, whose
    object is a Status, pass unchanged)."""
    async for line in lines:
        raw = line if isinstance(line, bytes) else str(line).encode()
        event = json.loads(raw)
        if event.get("type") not in ("ERROR", "BOOKMARK"):
            event["object"] = table([event["object"]], kind=kind, now=clock(), include=include)
        yield json.dumps(event, separators=(",", ":")).encode() + b"\n"


async def _selected_events(
    lines: AsyncIterable[Any], fields: FieldSelector
) -> AsyncIterator[bytes]:
    """A watch stream without the events whose object the field selector leaves out
    (ERROR events always pass)."""
    async for line in lines:
        raw = line if isinstance(line, bytes) else str(line).encode()
        event = json.loads(raw)
        if event.get("type") in ("ERROR", "BOOKMARK") or fields.matches(event.get("object") or {}):
            yield raw
