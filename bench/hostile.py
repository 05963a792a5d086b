"""Benchmark: ``capstan validate`` on each hostile repository (tests/fixtures/hostile.py).

Each repository is generated into a temporary directory and validated by a
fresh ``capstan validate`` process; the figures are its wall-clock time and the
peak RSS of the process tree (the template renderer's child included), read
from wait4's rusage of that one process.

    python bench/hostile.py [--only NAME]     (from the repository root)

Prints a table (exit code, seconds, peak RSS, the first error) and, as the
last line, {"<name>": {"seconds": S, "peak_rss_mb": M, "exit": E}, ...}.
Never fails on timing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fixtures.hostile import HOSTILE_REPOSITORIES, validate_measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(HOSTILE_REPOSITORIES), default=None)
    args = parser.parse_args()
    names = [args.only] if args.only else list(HOSTILE_REPOSITORIES)

    results: dict[str, dict[str, float | int]] = {}
    rows: list[tuple[str, str, str, str, str]] = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="capstan-hostile-") as directory:
            root = Path(directory)
            HOSTILE_REPOSITORIES[name](root)
            run = validate_measured(root)
        results[name] = {
            "seconds": round(run.seconds, 2),
            "peak_rss_mb": round(run.peak_rss_mb, 1),
            "exit": run.exit_code,
        }
        first = run.stderr.splitlines()[0] if run.stderr else ""
        rows.append(
            (name, str(run.exit_code), f"{run.seconds:.2f}", f"{run.peak_rss_mb:.0f}", first[:100])
        )

    header = ("repository", "exit", "seconds", "peak RSS MB", "first error")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print(
            "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "   "
            + row[4]
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
