"""``capstan up --webhook-secret-file``: a secret that cannot be used stops start-up at once."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import cli


def up(tmp_path: Path, secret_file: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        [
            "up",
            str(tmp_path),
            "--state-dir",
            str(tmp_path / "state"),
            "--listen",
            "127.0.0.1:0",
            "--webhook-secret-file",
            str(secret_file),
            "--no-local-agent",
        ],
    )
    return result.exit_code, result.output


def test_a_missing_or_empty_secret_file_stops_capstan_up_before_anything_runs(
    tmp_path: Path,
) -> None:
    code, output = up(tmp_path, tmp_path / "missing")
    assert code == 1
    assert f"cannot read the webhook secret file {tmp_path / 'missing'}" in output
    empty = tmp_path / "empty"
    empty.write_text("\n")
    code, output = up(tmp_path, empty)
    assert code == 1
    assert f"the webhook secret file {empty} is empty" in output
    assert not (tmp_path / "state").exists()  # nothing was started or written
