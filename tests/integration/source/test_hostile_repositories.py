"""Validating a hostile repository: refused (exit 1) within 300 MB, as a real ``capstan validate``.

Each repository of tests/fixtures/hostile.py (alias bombs, each Jinja bomb,
deep nesting, a huge file, many files) is validated by a fresh CLI process;
its peak RSS covers the template renderer's child too (wait4's rusage). The
time is reported, never asserted (bench/hostile.py prints the table).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.hostile import HOSTILE_REPOSITORIES, validate_measured

PEAK_RSS_MB = 300


@pytest.mark.parametrize("name", sorted(HOSTILE_REPOSITORIES))
def test_a_hostile_repository_is_refused_within_the_memory_budget(
    name: str, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    HOSTILE_REPOSITORIES[name](tmp_path)
    run = validate_measured(tmp_path)
    record_property("seconds", round(run.seconds, 2))
    print(f"{name}: exit {run.exit_code}, {run.seconds:.2f} s, {run.peak_rss_mb:.0f} MB")
    assert run.exit_code == 1, run.stderr[-2000:]
    assert run.peak_rss_mb <= PEAK_RSS_MB
    first = run.stderr.splitlines()[0]
    # file:line: what limit
    assert first.startswith(str(tmp_path) + "/"), first
    assert "limit" in first or "exceeded maximum nesting depth" in first, first
