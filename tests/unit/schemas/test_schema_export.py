"""The committed JSON Schema files are current, and the exporter detects stale ones."""

import json
import subprocess
import sys

from schemas import SUPPORTED_KINDS
from schemas.export import DEFAULT_DIR, check, main, schema_file_name, write


def test_committed_schema_files_are_current():
    assert check(DEFAULT_DIR) == [], "run: python -m schemas.export"


def test_file_names():
    assert schema_file_name("apps/v1", "Deployment") == "apps-v1-deployment.json"
    assert schema_file_name("v1", "Pod") == "core-v1-pod.json"
    names = {p.name for p in DEFAULT_DIR.glob("*.json")}
    assert names == {schema_file_name(v, k) for v, k in SUPPORTED_KINDS}


def test_schemas_use_kubernetes_field_names():
    schema = json.loads((DEFAULT_DIR / "apps-v1-deployment.json").read_text())
    assert schema["required"][:3] == ["apiVersion", "kind", "metadata"]
    assert schema["properties"]["kind"]["const"] == "Deployment"
    container = schema["$defs"]["Container"]
    assert container["additionalProperties"] is False
    assert {"imagePullPolicy", "livenessProbe", "volumeMounts", "envFrom"} <= set(
        container["properties"]
    )
    service_port = json.loads((DEFAULT_DIR / "core-v1-service.json").read_text())["$defs"][
        "ServicePort"
    ]
    assert service_port["required"] == ["port"]


def test_check_reports_missing_stale_and_leftover_files(tmp_path, capsys):
    assert len(check(tmp_path)) == len(SUPPORTED_KINDS)
    assert len(write(tmp_path)) == len(SUPPORTED_KINDS)
    assert check(tmp_path) == []
    assert write(tmp_path) == []
    (tmp_path / "core-v1-pod.json").write_text("{}\n")
    (tmp_path / "v1-ingress.json").write_text("{}\n")
    assert check(tmp_path) == [
        "core-v1-pod.json: stale",
        "v1-ingress.json: no longer a supported kind",
    ]
    assert main(["--check", "--dir", str(tmp_path)]) == 1
    assert "core-v1-pod.json: stale" in capsys.readouterr().err
    assert main(["--dir", str(tmp_path)]) == 0
    assert not (tmp_path / "v1-ingress.json").exists()
    assert main(["--check", "--dir", str(tmp_path)]) == 0


def test_module_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "schemas.export", "--check", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "missing" in result.stderr
