"""The HTTP client proper: typed calls and watches against the API server over httpx.

``Client`` returns ``schemas`` objects and raises :mod:`reconciler.api` errors
(``_exceptions.error_from_status``); ``resource_path`` builds the REST path of a kind.
"""

from __future__ import annotations

import builtins
import json
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from reconciler.api import (
    ObjectList,
    Unavailable,
    WatchEvent,
)
from reconciler.client._config import ClientConfig, load_config
from reconciler.client._exceptions import ConfigError, error_from_status
from reconciler.diff import OVERRIDE_HEADER
from schemas import KubeObject, LabelSelector, Pod
from schemas.registry import resource_plural

__all__ = ["Client", "ClientWatch", "resource_path"]

T = TypeVar("T", bound=KubeObject)


def resource_path(
    kind: type[KubeObject],
    *,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The REST path of a kind's collection or object."""
    api_version = str(kind.model_fields["api_version"].default)
    kind_name = str(kind.model_fields["kind"].default)
    group, _, version = api_version.rpartition("/")
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    plural = resource_plural(kind_name)
    path = (
        f"{base}/namespaces/{namespace}/{plural}"
        if kind.NAMESPACED and namespace
        else f"{base}/{plural}"
    )
    if name is not None:
        path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
    return path


def _selector_text(selector: str | Mapping[str, str] | LabelSelector | None) -> str | None:
    if selector is None or isinstance(selector, str):
        return selector
    if isinstance(selector, LabelSelector):
        terms = [f"{k}={v}" for k, v in selector.match_labels.items()]
        for req in selector.match_expressions:
            if req.operator in ("In", "NotIn"):
                terms.append(f"{req.key} {req.operator.lower()} ({','.join(req.values)})")
            else:
                terms.append(req.key if req.operator == "Exists" else f"!{req.key}")
        return ",".join(terms)
    return ",".join(f"{k}={v}" for k, v in selector.items())


class ClientWatch(Iterator[WatchEvent[T]]):
    """Events from a ``?watch=true`` stream; raises :class:`Expired` on a 410 ERROR event.
    Close it (or use ``with``)."""

    def __init__(self, kind: type[T], stream: Any, response: httpx.Response) -> None:
        self._kind = kind
        self._stream = stream
        self._response = response
        self._lines = response.iter_lines()

    def __next__(self) -> WatchEvent[T]:
        for line in self._lines:
            if not line.strip():
                continue
            event = json.loads(line)
            kind = event.get("type")
            if kind == "ERROR":
                obj = event.get("object") or {}
                raise error_from_status(int(obj.get("code", 500)), obj)
            item = self._kind.model_validate(event["object"])
            revision = int(item.metadata.resource_version or 0)
            return WatchEvent(kind, item, revision)
        raise StopIteration

    def close(self) -> None:
        self._stream.__exit__(None, None, None)

    def __enter__(self) -> ClientWatch[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Client:
    """Typed access to a Capstan API server. Blocking; one connection pool per client."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        headers = {"Accept": "application/json"}
        token = config.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify: ssl.SSLContext | bool = True
        if config.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(config.ca_file))
        self._http = httpx.Client(
            base_url=config.server,
            headers=headers,
            timeout=timeout,
            verify=verify,
            transport=transport,
        )

    @classmethod
    def from_config(
        cls,
        path: Path | None = None,
        *,
        server: str | None = None,
        token: str | None = None,
        ca_file: Path | None = None,
        context: str | None = None,
    ) -> Client:
        """Flags (``--server``, ``--token``, ``--certificate-authority``) override the file;
        with ``server`` given, a missing file is fine."""
        try:
            base = load_config(path, context=context)
        except ConfigError:
            if server is None:
                raise
            base = ClientConfig(server=server)
        return cls(
            ClientConfig(
                server=server or base.server,
                token=token or base.token,
                token_file=None if token else base.token_file,
                ca_file=ca_file or base.ca_file,
            )
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One request; the decoded JSON body, or the matching :class:`ApiError`."""
        send_headers = dict(headers or {})
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            send_headers["Content-Type"] = content_type
        try:
            response = self._http.request(
                method, path, content=content, params=params, headers=send_headers
            )
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach {self.config.server}: {exc}") from exc
        if response.status_code >= 400:
            try:
                payload = response.json()
            except ValueError:
                payload = {"message": response.text[:500]}
            raise error_from_status(
                response.status_code, payload, retry_after=response.headers.get("retry-after")
            )
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    @staticmethod
    def _override_headers(override: bool) -> dict[str, str]:
        return {OVERRIDE_HEADER: "drift"} if override else {}

    # -- typed calls -------------------------------------------------------------------------

    def get(self, kind: type[T], name: str, *, namespace: str | None = None) -> T:
        path = resource_path(kind, namespace=namespace or "default", name=name)
        return kind.model_validate(self.request("GET", path))

    def list(
        self,
        kind: type[T],
        *,
        namespace: str | None = None,
        label_selector: str | Mapping[str, str] | LabelSelector | None = None,
    ) -> ObjectList[T]:
        params = {}
        selector = _selector_text(label_selector)
        if selector:
            params["labelSelector"] = selector
        data = self.request("GET", resource_path(kind, namespace=namespace), params=params)
        items = tuple(kind.model_validate(item) for item in data.get("items", []))
        return ObjectList(items, str(data.get("metadata", {}).get("resourceVersion", "")))

    def create(self, obj: T) -> T:
        namespace = (obj.metadata.namespace or "default") if obj.NAMESPACED else None
        data = self.request(
            "POST", resource_path(type(obj), namespace=namespace), body=obj.to_dict()
        )
        return type(obj).model_validate(data)

    def update(self, obj: T, *, override: bool = False) -> T:
        namespace = (obj.metadata.namespace or "default") if obj.NAMESPACED else None
        path = resource_path(type(obj), namespace=namespace, name=obj.name)
        data = self.request(
            "PUT", path, body=obj.to_dict(), headers=self._override_headers(override)
        )
        return type(obj).model_validate(data)

    def evict(self, name: str, *, namespace: str | None = None) -> None:
        """``POST pods/NAME/eviction``: delete the pod unless a PodDisruptionBudget forbids
        it (then :class:`TooManyRequests`)."""
        path = resource_path(Pod, namespace=namespace or "default", name=name)
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace or "default"},
        }
        self.request("POST", f"{path}/eviction", body=body)

    def update_status(self, obj: T) -> T:
        namespace = (obj.metadata.namespace or "default") if obj.NAMESPACED else None
        path = resource_path(type(obj), namespace=namespace, name=obj.name, subresource="status")
        return type(obj).model_validate(self.request("PUT", path, body=obj.to_dict()))

    def patch(
        self,
        kind: type[T],
        name: str,
        patch: Mapping[str, Any],
        *,
        namespace: str | None = None,
        override: bool = False,
    ) -> T:
        path = resource_path(kind, namespace=namespace or "default", name=name)
        data = self.request(
            "PATCH",
            path,
            body=dict(patch),
            content_type="application/merge-patch+json",
            headers=self._override_headers(override),
        )
        return kind.model_validate(data)

    def delete(
        self,
        kind: type[T],
        name: str,
        *,
        namespace: str | None = None,
        resource_version: str | int | None = None,
        override: bool = False,
    ) -> T:
        path = resource_path(kind, namespace=namespace or "default", name=name)
        body = None
        if resource_version is not None:
            body = {"preconditions": {"resourceVersion": str(resource_version)}}
        data = self.request("DELETE", path, body=body, headers=self._override_headers(override))
        return kind.model_validate(data)

    def watch(
        self,
        kind: type[T],
        *,
        namespace: str | None = None,
        resource_version: str | int | None = None,
        label_selector: str | Mapping[str, str] | LabelSelector | None = None,
        timeout_s: int | None = None,
    ) -> ClientWatch[T]:
        """Changes after ``resource_version`` (without one: every current object as ADDED,
        then changes). Iterate; close when done."""
        params = {"watch": "true"}
        if resource_version is not None:
            params["resourceVersion"] = str(resource_version)
        selector = _selector_text(label_selector)
        if selector:
            params["labelSelector"] = selector
        if timeout_s is not None:
            params["timeoutSeconds"] = str(timeout_s)
        stream = self._http.stream(
            "GET",
            resource_path(kind, namespace=namespace),
            params=params,
            timeout=httpx.Timeout(10.0, read=None),
        )
        try:
            response = stream.__enter__()
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach {self.config.server}: {exc}") from exc
        if response.status_code >= 400:
            response.read()
            stream.__exit__(None, None, None)
            raise error_from_status(response.status_code, response.json())
        return ClientWatch(kind, stream, response)

    def syncs(self) -> builtins.list[dict[str, Any]]:
        items = self.request("GET", "/capstan/v1/syncs").get("items", [])
        return [dict(item) for item in items]

    def plan(self, ref: str | None = None) -> dict[str, Any]:
        params = {"ref": ref} if ref else None
        return dict(self.request("GET", "/capstan/v1/plan", params=params))
