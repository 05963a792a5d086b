"""Fixtures of the Git source tests: a work-tree repository and a cache directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import git
import pytest
from gitops_testdata import init_repo

from reconciler.api import Api
from reconciler.store import open_store


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[git.Repo]:
    repo = init_repo(tmp_path / "upstream")
    yield repo
    repo.close()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    store = open_store(f"sqlite://{tmp_path}/state.db")
    try:
        yield Api(store)
    finally:
        store.close()
