"""Fixtures of the sync tests: a real API over a temp SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sync_testdata import RepoWriter

from reconciler.api import Api, ManualClock
from reconciler.store import open_store


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    store = open_store(f"sqlite://{tmp_path}/state.db")
    try:
        yield Api(store, clock=ManualClock())
    finally:
        store.close()


@pytest.fixture
def repos(tmp_path: Path) -> RepoWriter:
    return RepoWriter(tmp_path / "commits")
