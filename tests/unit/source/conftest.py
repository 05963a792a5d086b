"""Fixtures of the loader tests: a repository directory built from a dict of files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from source_testdata import write_files


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[[dict[str, str]], Path]:
    """A function writing files into a fresh ``repo/`` under tmp_path (outside stays free)."""

    def make(files: dict[str, str]) -> Path:
        root = tmp_path / "repo"
        root.mkdir(exist_ok=True)
        return write_files(root, files)

    return make
