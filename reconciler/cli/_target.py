"""Which Capstan the people-facing commands talk to, and one read/write surface over it.

``capstan status/get/describe/logs/events/sync`` reach a running ``capstan up`` through its
HTTP API (``reconciler.client``) when it serves one — ``--server``, or the client config
``capstan up --listen`` wrote into its state directory — and otherwise open its store
directly (``--store``, or the store named in the state directory's ``up.json``): the embedded
store is safe to open from a second process. Either way the commands see one
``ClusterView`` with the same calls, so none of them knows which it got.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click

from reconciler.api import Api, EventRecord, ObjectList
from reconciler.runinfo import CLIENT_CONFIG_FILE, RunInfo, default_state_dir, read_run_info
from schemas import KubeObject, LabelSelector

__all__ = ["ClusterView", "Target", "open_cluster", "target_options"]

T = TypeVar("T", bound=KubeObject)
F = TypeVar("F", bound=Callable[..., Any])


class _ObjectApi(Protocol):
    """What ``Api`` and ``reconciler.client.Client`` both offer."""

    def get(self, kind: type[T], name: str, *, namespace: str | None = None) -> T: ...

    def list(self, kind: type[T], *, namespace: str | None = None,
             label_selector: Any = None) -> ObjectList[T]: ...

    def create(self, obj: T) -> T: ...

    def update(self, obj: T) -> T: ...


@dataclass(frozen=True, slots=True)
class Target:
    state_dir: Path
    store: str | None
    server: str | None
    token: str | None

    @property
    def run_info(self) -> RunInfo | None:
        return read_run_info(self.state_dir)


class ClusterView:
    """Objects, events and the node-agent socket of one Capstan, however it is reached."""

    def __init__(self, api: _ObjectApi, *, events: Callable[[str | None], list[EventRecord]],
                 run_info: RunInfo | None, via: str, store_url: str | None = None) -> None:
        self.api = api
        self._events = events
        self.run_info = run_info
        self.via = via
        #: The store behind the view (the run info's when reached over HTTP), if known.
        self.store_url = store_url or (run_info.store if run_info is not None else None)

    def get(self, kind: type[T], name: str, *, namespace: str | None = None) -> T:
        return self.api.get(kind, name, namespace=namespace)

    def list(self, kind: type[T], *, namespace: str | None = None,
             selector: LabelSelector | dict[str, str] | None = None) -> builtins.list[T]:
        return [*self.api.list(kind, namespace=namespace, label_selector=selector).items]

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
        click.option("--state-dir", type=click.Path(path_type=Path), default=None,
                     help="State directory of the capstan up to talk to "
                          "(default: $CAPSTAN_STATE_DIR or ~/.capstan)."),
        click.option("--store", "store_url", default=None, metavar="URL",
                     help="Open this store directly (sqlite:///... or etcd://...)."),
        click.option("--server", default=None, metavar="URL",
                     help="Talk to the HTTP API at URL (token: --token or the client config)."),
        click.option("--token", default=None, envvar="CAPSTAN_TOKEN",
                     help="Bearer token for --server (env CAPSTAN_TOKEN)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def make_target(state_dir: Path | None, store_url: str | None, server: str | None,
                token: str | None) -> Target:
    return Target((state_dir or default_state_dir()).expanduser(), store_url, server, token)


@contextmanager
def open_cluster(target: Target) -> Iterator[ClusterView]:
    info = target.run_info
    config_file = target.state_dir / CLIENT_CONFIG_FILE
    use_http = target.server is not None or (
        target.store is None and info is not None and info.listen is not None
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
                "`capstan up`, or pass --state-dir, --store or --server")
        url = f"sqlite:///{db.resolve()}"
    from reconciler.store import open_store

    store = open_store(url)
    try:
        api = Api(store)
        yield ClusterView(api, events=lambda ns: api.list_events(namespace=ns), run_info=info,
                          via=f"store {url.split('://', 1)[0]}", store_url=url)
    finally:
        store.close()


@contextmanager
def _http_view(target: Target, config_file: Path, info: RunInfo | None
               ) -> Iterator[ClusterView]:
    from reconciler.client import Client

    client = Client.from_config(config_file if config_file.exists() else None,
                                server=target.server, token=target.token)

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
