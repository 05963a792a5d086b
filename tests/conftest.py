"""Shared test configuration: each test gets the marker of the tier its folder names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

_TIERS = ("unit", "integration", "e2e", "faults")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(autouse=True, scope="session")
def _session_client_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No ``capstan`` a test starts, even from a module-scoped fixture, reads or records
    contexts in the user's ~/.capstan/config; $CAPSTAN_STATE_DIR is unset."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAPSTAN_CONFIG", str(tmp_path_factory.mktemp("client") / "config"))
        patch.delenv("CAPSTAN_STATE_DIR", raising=False)
        yield


@pytest.fixture(autouse=True)
def _own_client_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test starts with a client config of its own, with no context in it."""
    monkeypatch.setenv("CAPSTAN_CONFIG", str(tmp_path_factory.mktemp("client") / "config"))
