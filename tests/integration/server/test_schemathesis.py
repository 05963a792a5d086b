"""Property-based fuzzing of the live server from its own OpenAPI document (schemathesis):
over a thousand generated requests, none may get a 5xx, and every response must match the
document (status code declared, content type, body schema)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ST = Path(sys.executable).with_name("st")
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


# ~35 s of CPU (hypothesis generating bodies from the Pod/Deployment schemas); the wall-clock
# allowance is for a busy 2-core machine.
@pytest.mark.timeout(200)
def test_schemathesis_finds_no_5xx_and_no_schema_violation(live, tmp_path):
    assert live.state.tls is not None
    report = tmp_path / "st.ndjson"
    command = [
        str(ST),
        "run",
        f"{live.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {live.state.admin_token}",
        "--tls-verify",
        str(live.state.tls.ca_cert),
        "--phases",
        "fuzzing",
        "--max-examples",
        "11",
        "--workers",
        "1",
        "--seed",
        "20261127",
        "--checks",
        CHECKS,
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
        "--request-timeout",
        "20",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPOTHESIS")}
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=190, check=False
    )
    tail = result.stdout[-6000:]
    assert result.returncode == 0, tail
    codes: Counter[int] = Counter()
    for line in report.read_text().splitlines():
        event = json.loads(line)
        if "ScenarioFinished" not in event:
            continue
        text = json.dumps(event)
        for chunk in text.split('"status_code": ')[1:]:
            codes[int(chunk.split(",", 1)[0].split("}", 1)[0])] += 1
    assert sum(codes.values()) >= 1000, (codes, tail)
    assert not [code for code in codes if code >= 500], codes
    assert codes[200] + codes[201] > 50, codes  # the fuzzer also got real work done
