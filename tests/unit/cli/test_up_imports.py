"""What ``capstan up`` imports: no HTTP client library it never calls.

``capstan up`` writes this machine's client config (``reconciler.client``) but makes no HTTP
call with the embedded store, so httpx (and, where installed, the rich and pygments its
command line brings) stays out of the control plane's memory. Checked in a fresh
interpreter: this test process has imported everything already.
"""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
import reconciler.app
import reconciler.cli
import reconciler.cli.up
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"httpx", "httpcore", "rich"})
print(",".join(loaded))
from reconciler.client import Client
assert Client.__module__ == "reconciler.client._client"
assert "httpx" in sys.modules
"""


def test_capstan_up_imports_no_http_client_until_one_is_used() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "", f"capstan up imported {probe.stdout.strip()}"
