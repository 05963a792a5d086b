"""Which Capstan the people-facing commands talk to, and one read/write surface over it.

Which one, as kubectl chooses (``make_target``): ``--state-dir``/``--store``/``--server``,
else ``--context NAME``, else ``$CAPSTAN_STATE_DIR``, else the current context of the client
config (``reconciler.client``: every ``capstan up`` records itself there), else
``~/.capstan``; ``Target.origin`` says which, for the output. ``capstan
status/get/describe/logs/events/sync`` then reach a running ``capstan up`` through its HTTP
API (``reconciler.client``) when it serves one — ``--server``, a context's server, or the
client config ``capstan up --listen`` wrote into its state directory — and otherwise open
its store directly (``--store``, or the store named in the state directory's ``up.json``):
the embedded store is safe to open from a second process. Either way the commands see one
``ClusterView`` with the same calls, so none of them knows which it got.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click

from reconciler.api import DATA_KEYS_FILE, Api, EventRecord, ObjectList, seal_secrets
from reconciler.client import ConfigError, client_config_path, contexts
from reconciler.runinfo import (
    CLIENT_CONFIG_FILE,
    RUN_INFO_FILE,
    STATE_DIR_ENV,
    RunInfo,
    read_run_info,
)
from schemas import KubeObject, LabelSelector
from schemas.datakeys import DataKeys

__all__ = [
    "ClusterView",
    "Target",
    "context_given",
    "context_option",
    "make_target",
    "open_cluster",
    "resolve_target",
    "target_options",
]

_CONTEXT_META = "capstan.context"
_DEFAULT_SHOWN = "~/.capstan"

T = TypeVar("T", bound=KubeObject)
F = TypeVar("F", bound=Callable[..., Any])


class _ObjectApi(Protocol):
    """What ``Api`` and ``reconciler.client.Client`` both offer."""

    def get(self, kind: type[T], name: str, *, namespace: str | None = None) -> T: ...

    def list(
        self, kind: type[T], *, namespace: str | None = None, label_selector: Any = None
    ) -> ObjectList[T]: ...

    def create(self, obj: T) -> T: ...

    def update(self, obj: T) -> T: ...

    def evict(self, name: str, *, namespace: str | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command looks. ``origin`` says why there (``--state-dir``, ``context NAME``,
    ...); ``client_config``/``context``: the client config context that names ``server``."""

    state_dir: Path
    store: str | None
    server: str | None
    token: str | None
    origin: str = "--state-dir"
    client_config: Path | None = None
    context: str | None = None

    @property
    def run_info(self) -> RunInfo | None:
        return read_run_info(self.state_dir)

    @property
    def found(self) -> bool:
        """Is there a Capstan to look at (a server, a store, a ``capstan up``'s files)?"""
        return (
            self.server is not None
            or self.store is not None
            or (self.state_dir / RUN_INFO_FILE).exists()
            or (self.state_dir / "state.db").exists()
        )

    @property
    def where(self) -> str:
        """The state directory or server, as people read it."""
        if self.server is not None and self.client_config is not None:
            return self.server
        if self.origin == "default":
            return _DEFAULT_SHOWN
        return str(self.state_dir)


class ClusterView:
    """Objects, events and the node-agent socket of one Capstan, however it is reached."""

    def __init__(
        self,
        api: _ObjectApi,
        *,
        events: Callable[[str | None], list[EventRecord]],
        run_info: RunInfo | None,
        via: str,
        store_url: str | None = None,
    ) -> None:
        self.api = api
        self._events = events
        self.run_info = run_info
        self.via = via
        #: The store behind the view (the run info's when reached over HTTP), if known.
        self.store_url = store_url or (run_info.store if run_info is not None else None)

    def get(self, kind: type[T], name: str, *, namespace: str | None = None) -> T:
        return self.api.get(kind, name, namespace=namespace)

    def list(
        self,
        kind: type[T],
        *,
        namespace: str | None = None,
        selector: LabelSelector | dict[str, str] | None = None,
    ) -> builtins.list[T]:
        return [*self.api.list(kind, namespace=namespace, label_selector=selector).items]

    def update(self, obj: T, *, override: bool = False) -> T:
        """Write ``obj``; ``override`` writes a Git-managed object over HTTP anyway (drift,
        as ``kubectl`` with the override header). The store opened directly has no guard."""
        if override and hasattr(self.api, "request"):
            return self.api.update(obj, override=True)  # type: ignore[call-arg]
        return self.api.update(obj)

    def evict(self, name: str, *, namespace: str | None = None) -> None:
        """Evict a pod: deleted unless a PodDisruptionBudget forbids it (then an
        ``ApiError`` with code 429)."""
        self.api.evict(name, namespace=namespace)

    def events(self, namespace: str | None = None) -> builtins.list[EventRecord]:
        return sorted(self._events(namespace), key=lambda e: e.last_timestamp)

    @property
    def sync_api(self) -> Api:
        """For ``reconciler.sync`` helpers, which only call get/list/create/update."""
        return self.api  # type: ignore[return-value]


def target_options(function: F) -> F:
    """``--state-dir``, ``--store``, ``--server``, ``--token`` for every command that reads
    the cluster."""
    options = [
        click.option(
            "--state-dir",
            type=click.Path(path_type=Path),
            default=None,
            help="State directory of the capstan up to talk to (default: --context, else "
            "$CAPSTAN_STATE_DIR, else the current context, else ~/.capstan).",
        ),
        click.option(
            "--store",
            "store_url",
            default=None,
            metavar="URL",
            help="Open this store directly (sqlite:///... or etcd://...).",
        ),
        click.option(
            "--server",
            default=None,
            metavar="URL",
            help="Talk to the HTTP API at URL (token: --token or the client config).",
        ),
        click.option(
            "--token",
            default=None,
            envvar="CAPSTAN_TOKEN",
            help="Bearer token for --server (env CAPSTAN_TOKEN).",
        ),
        context_option,
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _remember_context(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[_CONTEXT_META] = value


#: ``--context NAME``; kept in the click context (not a parameter of the command), so every
#: command with ``target_options`` takes it without a new argument.
context_option = click.option(
    "--context",
    metavar="NAME",
    default=None,
    expose_value=False,
    callback=_remember_context,
    help="Use this context of the client config (`capstan config get-contexts`) instead of "
    "the current one.",
)


def context_given() -> str | None:
    """The running command's ``--context``, if it was given."""
    click_ctx = click.get_current_context(silent=True)
    value = click_ctx.meta.get(_CONTEXT_META) if click_ctx is not None else None
    return value if isinstance(value, str) else None


def make_target(
    state_dir: Path | None, store_url: str | None, server: str | None, token: str | None
) -> Target:
    """The target of the running command: its flags, its ``--context``, the environment and
    the client config, in kubectl's order (see the module docstring)."""
    try:
        return resolve_target(state_dir, store_url, server, token, context=context_given())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def resolve_target(
    state_dir: Path | None,
    store_url: str | None,
    server: str | None,
    token: str | None,
    *,
    context: str | None = None,
) -> Target:
    """flag > ``context`` > ``$CAPSTAN_STATE_DIR`` > the current context > ``~/.capstan``.
    ConfigError: the client config is unreadable, or names a context that is not there."""
    default = Path.home() / ".capstan"
    if state_dir is not None:
        return Target(state_dir.expanduser(), store_url, server, token)
    if store_url is not None or server is not None:
        flag = "--store" if store_url is not None else "--server"
        return Target(_env_state_dir() or default, store_url, server, token, origin=flag)
    env = _env_state_dir()
    if context is None and env is not None:
        return Target(env, None, None, token, origin=f"${STATE_DIR_ENV}")
    path = client_config_path()
    found, current = contexts(path)
    name = context or current
    if name is None:
        return Target(default, None, None, token, origin="default")
    chosen = next((c for c in found if c.name == name), None)
    if chosen is None:
        known = ", ".join(c.name for c in found) or "none"
        raise ConfigError(f"no context named {name!r} in {path} (contexts: {known})")
    origin = f"context {name}"
    if chosen.state_dir is not None:
        return Target(chosen.state_dir, None, None, token, origin=origin)
    if chosen.server is None:
        raise ConfigError(f"context {name!r} in {path} names no state-dir and no server")
    return Target(
        default, None, chosen.server, token, origin=origin, client_config=path, context=name
    )


def _env_state_dir() -> Path | None:
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured).expanduser() if configured else None


@contextmanager
def open_cluster(target: Target) -> Iterator[ClusterView]:
    info = target.run_info
    config_file = target.state_dir / CLIENT_CONFIG_FILE
    use_http = target.server is not None or (
        target.store is None
        and info is not None
        and info.listen is not None
        and config_file.exists()
    )
    if use_http:
        with _http_view(target, config_file, info) as view:
            yield view
        return
    url = target.store or (info.store if info is not None else None)
    if url is None:
        db = target.state_dir / "state.db"
        if not db.exists():
            raise click.ClickException(
                f"no capstan found in {target.state_dir} (no up.json, no state.db): start "
                "`capstan up`, or pass --state-dir, --store or --server"
            )
        url = f"sqlite:///{db.resolve()}"
    from reconciler.store import open_store

    store = open_store(url)
    keys = target.state_dir / DATA_KEYS_FILE
    if keys.exists():
        # Secrets are sealed at rest with this instance's data key (capstan up made it).
        store = seal_secrets(store, DataKeys.load(keys))
    try:
        api = Api(store)
        yield ClusterView(
            api,
            events=lambda ns: api.list_events(namespace=ns),
            run_info=info,
            via=f"store {url.split('://', 1)[0]}",
            store_url=url,
        )
    finally:
        store.close()


@contextmanager
def _http_view(target: Target, config_file: Path, info: RunInfo | None) -> Iterator[ClusterView]:
    from reconciler.client import SERVER_CONTEXT, Client

    if target.client_config is not None:
        client = Client.from_config(
            target.client_config, context=target.context, server=target.server, token=target.token
        )
    else:
        # The state directory's own config, written by its server under SERVER_CONTEXT (with
        # the default state directory that file is also the user's client config, whose
        # current context may be another cluster).
        client = Client.from_config(
            config_file if config_file.exists() else None,
            server=target.server,
            token=target.token,
            context=SERVER_CONTEXT if config_file.exists() else None,
        )

    def events(namespace: str | None) -> list[EventRecord]:
        path = f"/api/v1/namespaces/{namespace}/events" if namespace else "/api/v1/events"
        data = client.request("GET", path)
        return [_event_record(item) for item in data.get("items", [])]

    try:
        yield ClusterView(client, events=events, run_info=info, via=client.config.server)
    finally:
        client.close()


def _event_record(item: dict[str, Any]) -> EventRecord:
    """The server's ``v1 Event`` shape back into the API's record."""
    data = dict(item)
    data.pop("apiVersion", None)
    data.pop("kind", None)
    meta = data.pop("metadata", {})
    source = data.pop("source", None)
    data["name"] = meta.get("name", "")
    data["namespace"] = meta.get("namespace", "")
    if "resourceVersion" in meta:
        data["resourceVersion"] = meta["resourceVersion"]
    if isinstance(source, dict):
        data["source"] = source.get("component")
    return EventRecord.model_validate(data)
