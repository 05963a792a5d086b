"""``capstan validate``: a file name or a YAML key cannot add lines of its own to the report."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import cli

# A newline, then what a forged report would say, then an escape sequence for the terminal.
HOSTILE = "web.yaml\nforged.yaml:1:1: looks like another error\n\x1b[2Jok"
ESCAPED = "web.yaml\\nforged.yaml:1:1: looks like another error\\n\\x1b[2Jok"


def validate(repo: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["validate", str(repo)])
    return result.exit_code, result.output.splitlines()


def test_a_newline_in_a_file_name_stays_inside_its_error_line(tmp_path: Path) -> None:
    (tmp_path / f"{HOSTILE}.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata: [not, a, mapping]\n"
    )
    code, lines = validate(tmp_path)
    assert code == 1
    [error, summary] = lines
    assert error.startswith(f"{tmp_path}/{ESCAPED}.yaml:5:")
    assert "data" in error
    assert summary == f"{tmp_path}: 1 error, nothing is valid"
    assert not any(line.startswith("forged.yaml") for line in lines)
    assert "\x1b" not in "".join(lines)


def test_a_newline_in_a_yaml_key_stays_inside_its_error_line(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  "x\\nc.yaml:1:1: forged": 1\n'
    )
    code, lines = validate(tmp_path)
    assert code == 1
    assert len(lines) == 2, lines
    assert "x\\nc.yaml:1:1: forged" in lines[0]
