"""Fixtures for the API layer tests: a real temp SQLite store under a real Api."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.api import Api, ManualClock
from reconciler.store import Store, open_store


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[Store]:
    opened = open_store(f"sqlite://{tmp_path}/state.db", clock=clock.time)
    yield opened
    opened.close()


@pytest.fixture
def api(store: Store, clock: ManualClock) -> Api:
    return Api(store, clock=clock)
