"""The HTTP client of the Capstan API, for the CLI (``capstan get/describe/status``) and tools.

Talks to the server of ``reconciler.api.server`` with a bearer token over TLS, locally or
remotely. Where to connect comes from flags or from a kubeconfig-like YAML file
(``$CAPSTAN_CONFIG``, else ``~/.capstan/config``; 0600), in which every ``capstan up``
records itself as a context and becomes the current one::

    apiVersion: capstan.io/v1
    kind: Config
    current-context: local
    clusters: [{name: local, cluster: {server: "https://127.0.0.1:6443",
                                       certificate-authority: /var/lib/capstan/pki/ca.crt}}]
    users: [{name: admin, user: {token-file: /var/lib/capstan/admin-token}}]
    contexts: [{name: local, context: {cluster: local, user: admin,
                                       state-dir: /var/lib/capstan}}]

``state-dir`` (Capstan's own key) names the state directory of a ``capstan up`` on this
machine: the CLI then finds it there as with ``--state-dir`` (its API when it serves one,
else its store). A context without one reaches its ``server`` only. ``capstan config``
lists and switches contexts (`contexts`, `use_context`); ``reconciler.cli._target`` picks
one for every command.

Typed calls return ``schemas`` objects; error responses (Kubernetes ``Status`` bodies) raise
the same :class:`reconciler.api.ApiError` subclasses the in-process API raises.
"""

from __future__ import annotations

import builtins
import fcntl
import json
import os
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import yaml

from reconciler._private import open_private, write_private
from reconciler.api import (
    AlreadyExists,
    ApiError,
    Cause,
    Conflict,
    Expired,
    Forbidden,
    InsufficientStorage,
    Invalid,
    NotFound,
    ObjectList,
    TooLarge,
    Unavailable,
    WatchEvent,
)
from reconciler.diff import OVERRIDE_HEADER
from reconciler.runinfo import RUN_INFO_FILE
from schemas import KubeObject, LabelSelector
from schemas.registry import resource_plural

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "SERVER_CONTEXT",
    "BadRequest",
    "Client",
    "ClientConfig",
    "ConfigError",
    "Context",
    "TooManyRequests",
    "Unauthorized",
    "client_config_path",
    "contexts",
    "error_from_status",
    "load_config",
    "resource_path",
    "use_context",
    "write_config",
]

DEFAULT_CONFIG_PATH = Path("~/.capstan/config")
#: Names the client config file instead of ``~/.capstan/config`` (as ``KUBECONFIG`` does).
CONFIG_ENV = "CAPSTAN_CONFIG"
#: The context an API server writes into its state directory's config.
SERVER_CONTEXT = "capstan"

T = TypeVar("T", bound=KubeObject)


class ConfigError(ValueError):
    """The client config file is missing, unreadable or incomplete."""


class Unauthorized(ApiError):
    reason = "Unauthorized"
    code = 401


class BadRequest(ApiError):
    reason = "BadRequest"
    code = 400


class TooManyRequests(ApiError):
    """The server is overloaded; ``retry_after`` seconds is its suggestion."""

    reason = "TooManyRequests"
    code = 429

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_BY_REASON: Mapping[str, type[ApiError]] = {
    "NotFound": NotFound,
    "AlreadyExists": AlreadyExists,
    "Conflict": Conflict,
    "Forbidden": Forbidden,
    "Expired": Expired,
    "Gone": Expired,
    "RequestEntityTooLarge": TooLarge,
    "ServiceUnavailable": Unavailable,
    "InsufficientStorage": InsufficientStorage,
    "Unauthorized": Unauthorized,
    "BadRequest": BadRequest,
}
_BY_CODE: Mapping[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Expired,
    413: TooLarge,
    503: Unavailable,
    507: InsufficientStorage,
}


def error_from_status(code: int, body: Any, *, retry_after: str | None = None) -> ApiError:
    """The :class:`ApiError` a ``Status`` body (or any error response) stands for."""
    status = body if isinstance(body, dict) else {}
    message = str(status.get("message") or f"HTTP {code}")
    reason = str(status.get("reason") or "")
    if code == 422 or reason == "Invalid":
        details = status.get("details") if isinstance(status.get("details"), dict) else {}
        raw_causes = details.get("causes") if isinstance(details, dict) else None
        causes = tuple(
            Cause(str(c.get("field", "")), str(c.get("message", "")))
            for c in (raw_causes or [])
            if isinstance(c, dict)
        )
        error: ApiError = Invalid(message, causes)
        error.message = message
        return error
    if code == 429:
        try:
            seconds = float(retry_after) if retry_after else 1.0
        except ValueError:
            seconds = 1.0
        return TooManyRequests(message, retry_after=seconds)
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    generic = ApiError(message)
    generic.code = code
    generic.reason = reason or "InternalError"
    return generic


@dataclass(frozen=True)
class ClientConfig:
    """Where the server is and how to prove who we are. ``token`` wins over ``token_file``."""

    server: str
    token: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None

    def bearer_token(self) -> str | None:
        if self.token:
            return self.token
        if self.token_file is not None:
            try:
                return self.token_file.expanduser().read_text(encoding="ascii").strip() or None
            except OSError as exc:
                raise ConfigError(f"cannot read token file {self.token_file}: {exc}") from exc
        return None


def client_config_path() -> Path:
    """``$CAPSTAN_CONFIG``, else ``~/.capstan/config``."""
    configured = os.environ.get(CONFIG_ENV)
    return Path(configured or DEFAULT_CONFIG_PATH).expanduser()


@dataclass(frozen=True)
class Context:
    """One named context of the client config: a ``capstan up`` on this machine
    (``state_dir``), a server to reach (``server``, ``ca_file``, ``token_file``), or both."""

    name: str
    state_dir: Path | None = None
    server: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None


def _named(entries: Any, name: str, section: str, path: Path) -> dict[str, Any]:
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and entry.get("name") == name:
                inner = entry.get(section)
                if isinstance(inner, dict):
                    return inner
    raise ConfigError(f"{path}: no {section} named {name!r}")


def _read_document(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read client config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: must be a mapping")
    return document


def _relative(value: Any, path: Path) -> Path | None:
    """A path from the file: relative ones are relative to the file's directory."""
    if not isinstance(value, str) or not value:
        return None
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else path.parent / candidate


def load_config(path: Path | None = None, *, context: str | None = None) -> ClientConfig:
    """Read a kubeconfig-like file (``yaml.safe_load``); relative file paths in it are
    relative to the file."""
    path = (path or client_config_path()).expanduser()
    document = _read_document(path)
    name = context or document.get("current-context")
    if not isinstance(name, str):
        raise ConfigError(f"{path}: no current-context")
    ctx = _named(document.get("contexts"), name, "context", path)
    cluster = _named(document.get("clusters"), str(ctx.get("cluster")), "cluster", path)
    user = _named(document.get("users"), str(ctx.get("user")), "user", path)
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise ConfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    token = user.get("token")
    return ClientConfig(
        server=server,
        token=token if isinstance(token, str) and token else None,
        token_file=_relative(user.get("token-file"), path),
        ca_file=_relative(cluster.get("certificate-authority"), path),
    )


def contexts(path: Path | None = None) -> tuple[builtins.list[Context], str | None]:
    """Every context of the client config and the name of the current one; a missing file
    has none."""
    path = (path or client_config_path()).expanduser()
    if not path.exists():
        return [], None
    document = _read_document(path)
    found: builtins.list[Context] = []
    for entry in document.get("contexts") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        ctx = entry.get("context")
        if not isinstance(ctx, dict):
            ctx = {}
        cluster = _optional(document.get("clusters"), ctx.get("cluster"), "cluster")
        user = _optional(document.get("users"), ctx.get("user"), "user")
        server = cluster.get("server")
        state_dir = _relative(ctx.get("state-dir"), path)
        if state_dir is None and entry["name"] == SERVER_CONTEXT and _is_state_dir(path.parent):
            # Written by the API server into its own state directory's config (the default
            # ~/.capstan/config is one): that context is this directory's capstan up.
            state_dir = path.parent
        found.append(
            Context(
                name=entry["name"],
                state_dir=state_dir,
                server=server if isinstance(server, str) and server else None,
                token_file=_relative(user.get("token-file"), path),
                ca_file=_relative(cluster.get("certificate-authority"), path),
            )
        )
    current = document.get("current-context")
    return found, current if isinstance(current, str) and current else None


def _is_state_dir(directory: Path) -> bool:
    return (directory / RUN_INFO_FILE).exists() or (directory / "state.db").exists()


def _optional(entries: Any, name: Any, section: str) -> dict[str, Any]:
    if not isinstance(name, str):
        return {}
    try:
        return _named(entries, name, section, Path())
    except ConfigError:
        return {}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the config file between processes (two ``capstan
    up`` starting together must not drop each other's context)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = open_private(path.with_name(f".{path.name}.lock"))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _upsert(entries: Any, name: str, section: str, value: dict[str, str]) -> list[Any]:
    """`entries` (a kubeconfig list) with the entry `name` replaced by `value`."""
    if entries is not None and not isinstance(entries, list):
        raise ConfigError(f"the {section}s of the client config must be a list")
    kept = [e for e in entries or [] if not (isinstance(e, dict) and e.get("name") == name)]
    return [*kept, {"name": name, section: value}]


def write_config(
    path: Path,
    config: ClientConfig | None,
    *,
    name: str = SERVER_CONTEXT,
    state_dir: Path | None = None,
    make_current: bool = True,
) -> None:
    """Record context ``name`` (``config``'s server and credentials, ``state_dir``) in the
    kubeconfig-like file at ``path``, replacing a context of that name and keeping every
    other one; 0600 (it may hold a token). ``make_current``: switch to it."""
    path = path.expanduser()
    user: dict[str, str] = {}
    cluster: dict[str, str] = {}
    if config is not None:
        if config.token:
            user["token"] = config.token
        if config.token_file is not None:
            user["token-file"] = str(config.token_file)
        cluster["server"] = config.server
        if config.ca_file is not None:
            cluster["certificate-authority"] = str(config.ca_file)
    context: dict[str, str] = {"cluster": name, "user": name}
    if state_dir is not None:
        context["state-dir"] = str(state_dir)
    with _locked(path):
        document = _read_document(path) if path.exists() else {}
        document = {
            "apiVersion": "capstan.io/v1",
            "kind": "Config",
            "current-context": name if make_current else document.get("current-context", name),
            "clusters": _upsert(document.get("clusters"), name, "cluster", cluster),
            "users": _upsert(document.get("users"), name, "user", user),
            "contexts": _upsert(document.get("contexts"), name, "context", context),
        }
        _replace(path, document)


def use_context(name: str, path: Path | None = None) -> None:
    """Make ``name`` the current context; ConfigError when there is no such context."""
    path = (path or client_config_path()).expanduser()
    with _locked(path):
        if not path.exists():
            raise ConfigError(f"no context named {name!r}: {path} does not exist")
        document = _read_document(path)
        names = [e.get("name") for e in document.get("contexts") or [] if isinstance(e, dict)]
        if name not in names:
            known = ", ".join(str(n) for n in names) or "none"
            raise ConfigError(f"no context named {name!r} in {path} (contexts: {known})")
        document["current-context"] = name
        _replace(path, document)


def _replace(path: Path, document: dict[str, Any]) -> None:
    # Replaced atomically (readers never see a half-written file), 0600: it may hold a token.
    write_private(path, yaml.safe_dump(document, sort_keys=False).encode("utf-8"))


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
