"""Shared data of the CLI tests: the loader tests' paths and their valid Deployment (broken one
line at a time by the defect tests; its line numbers matter)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.source.source_testdata import CORPUS, DEPLOYMENT, EXAMPLE_REPO, ORDINARY

__all__ = ["CORPUS", "DEPLOYMENT", "EXAMPLE_REPO", "ORDINARY", "corpus_folders"]


def corpus_folders() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(path for path in CORPUS.iterdir() if path.is_dir())
