"""Fixtures for the store's integration tests: a real etcd and a ``store`` over each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.store import Store, open_store
from tests.integration.store.etcd_server import ETCD, EtcdServer, etcd_available


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    if not etcd_available():
        pytest.skip(f"etcd binary not found at {ETCD} (install Debian's etcd-server)")
    with EtcdServer() as server:
        yield server


@pytest.fixture(params=["embedded", "etcd"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    if backend == "embedded":
        opened = open_store(f"sqlite://{tmp_path}/state.db")
    else:
        server: EtcdServer = request.getfixturevalue("etcd_server")
        opened = open_store(f"etcd://{server.endpoint}")
        # One etcd serves the whole session: start every test from an empty keyspace.
        opened.delete("", prefix=True)
    try:
        yield opened
    finally:
        opened.close()
