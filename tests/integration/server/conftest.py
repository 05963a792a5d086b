"""A live API server for the integration tests: real store, real Api, ``serve()`` with its
generated CA and admin token on a free loopback port, recorded in a client config as
``capstan up`` records it, and a client from that config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.api import Api
from reconciler.api.server import ApiServer, ServeOptions, ServerHooks, serve
from reconciler.client import Client, ClientConfig, write_config
from reconciler.store import Store, open_store
from schemas import Namespace, ObjectMeta


def write_client_config(server: ApiServer, path: Path) -> None:
    """Record ``server`` (its URL, admin token file and CA) in the client config at ``path``."""
    tls = server.state.tls
    write_config(
        path,
        ClientConfig(
            server=server.url,
            token_file=server.state.admin_token_file,
            ca_file=tls.ca_cert if tls is not None else None,
        ),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite://{tmp_path}/state.db")
    yield opened
    opened.close()


@pytest.fixture
def api(store: Store) -> Api:
    created = Api(store)
    created.create(Namespace(metadata=ObjectMeta(name="shop")))
    return created


@pytest.fixture
def live(api: Api, store: Store, tmp_path: Path) -> Iterator[ApiServer]:
    hooks = ServerHooks(syncs=lambda: [], plan=lambda ref: {"ref": ref, "changes": []})
    server = serve(
        api,
        store,
        hooks=hooks,
        options=ServeOptions(
            state_dir=tmp_path / "state",
            port=0,
            log_level="error",
        ),
    )
    write_client_config(server, tmp_path / "config")
    yield server
    server.stop()


@pytest.fixture
def client(live: ApiServer, tmp_path: Path) -> Iterator[Client]:
    with Client.from_config(tmp_path / "config") as opened:
        yield opened
