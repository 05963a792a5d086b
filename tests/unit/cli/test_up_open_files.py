"""``capstan up`` raises its soft limit on open files to the hard one (four per node)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
from reconciler.cli.up import _open_files_up_to_the_hard_limit
_open_files_up_to_the_hard_limit()
print(*resource.getrlimit(resource.RLIMIT_NOFILE))
"""


def test_the_soft_limit_becomes_the_hard_one() -> None:
    # In a process of its own: the test runner's limits stay as they were.
    out = subprocess.run(
        [sys.executable, "-c", PROBE], check=True, capture_output=True, text=True
    ).stdout
    soft, hard = out.split()
    assert soft == hard
