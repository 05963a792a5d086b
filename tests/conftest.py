"""Shared test configuration: each test gets the marker of the tier its folder names."""

from __future__ import annotations

from pathlib import Path

import pytest

_TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(autouse=True)
def _own_client_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test (and every `capstan` it starts) records and reads contexts in a client
    config of its own, never the user's ~/.capstan/config; $CAPSTAN_STATE_DIR is unset."""
    monkeypatch.setenv("CAPSTAN_CONFIG", str(tmp_path_factory.mktemp("client") / "config"))
    monkeypatch.delenv("CAPSTAN_STATE_DIR", raising=False)
