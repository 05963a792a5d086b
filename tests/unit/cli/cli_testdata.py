"""Shared data of the CLI tests: the loader tests' paths and their valid Deployment (broken one
line at a time by the defect tests; its line numbers matter)."""

from __future__ import annotations

from tests.unit.source.source_testdata import DEPLOYMENT, EXAMPLE_REPO, ORDINARY

__all__ = ["DEPLOYMENT", "EXAMPLE_REPO", "ORDINARY"]
