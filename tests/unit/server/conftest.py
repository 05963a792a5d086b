"""Fixtures for the HTTP server tests: a real temp SQLite store, a real Api, the real app
served by uvicorn on a free loopback port (plain HTTP: TLS has its own tests), httpx clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.api import Api
from reconciler.api.server import (
    ApiServer,
    Limits,
    ServeOptions,
    ServerHooks,
    ServerState,
    create_app,
)
from reconciler.metrics import CapstanMetrics
from reconciler.store import Store, open_store
from schemas import Namespace, ObjectMeta
from tests.fixtures.tokens import mint_service_account_token

ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef"


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
def metrics() -> CapstanMetrics:
    return CapstanMetrics.create()


@pytest.fixture
def make_client(
    api: Api, store: Store, metrics: CapstanMetrics, tmp_path: Path
) -> Iterator[Callable[..., httpx.Client]]:
    opened: list[tuple[ApiServer, httpx.Client]] = []

    def make(
        token: str | None = ADMIN_TOKEN,
        *,
        hooks: ServerHooks | None = None,
        limits: Limits | None = None,
    ) -> httpx.Client:
        app = create_app(
            api,
            store,
            admin_token=ADMIN_TOKEN,
            metrics=metrics,
            hooks=hooks,
            limits=limits,
            rbac_ttl_s=60.0,
        )
        server = ApiServer(
            app,
            options=ServeOptions(state_dir=tmp_path, port=0, insecure_http=True, log_level="error"),
            state=ServerState(admin_token=ADMIN_TOKEN, admin_token_file=tmp_path / "t", tls=None),
        )
        server.start()
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        client = httpx.Client(base_url=server.url, headers=headers, timeout=30)
        opened.append((server, client))
        return client

    yield make
    for server, client in opened:
        client.close()
        server.stop()


@pytest.fixture
def admin(make_client: Callable[..., httpx.Client]) -> httpx.Client:
    return make_client()


@pytest.fixture
def sa_token(api: Api) -> Callable[[str, str], str]:
    """A working token of a new service account ``namespace/name``."""

    def mint(namespace: str, name: str) -> str:
        return mint_service_account_token(api, namespace, name)

    return mint


def configmap(name: str, namespace: str = "shop", **labels: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"k": "v"},
    }


def assert_status(response, code: int, reason: str) -> dict:
    assert response.status_code == code, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["reason"] == reason
    assert isinstance(body["message"], str)
    assert body["message"]
    return body
