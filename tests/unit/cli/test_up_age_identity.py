"""``capstan up --age-identity``: an identity others may read, or no key at all, stops start-up
before the store, the agent or the sync start (as ssh refuses a loose private key)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.secrets import generate_identity


def up(tmp_path: Path, *identities: Path) -> tuple[int, str]:
    args = ["up", str(tmp_path), "--state-dir", str(tmp_path / "state"), "--no-local-agent"]
    for identity in identities:
        args += ["--age-identity", str(identity)]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


def test_loose_or_broken_identity_stops_capstan_up(tmp_path: Path) -> None:
    good = tmp_path / "good.key"
    generate_identity(good)
    loose = tmp_path / "loose.key"
    generate_identity(loose)
    loose.chmod(0o644)
    code, output = up(tmp_path, good, loose)
    assert code == 1
    assert f"{loose}: permissions 0644 are too open for an age identity" in output
    broken = tmp_path / "broken.key"
    broken.write_text("AGE-SECRET-KEY-1NOTAKEY\n")
    broken.chmod(0o600)
    code, output = up(tmp_path, broken)
    assert code == 1
    assert f"{broken}:1: not an age identity" in output
    assert "NOTAKEY" not in output  # a private key line is never echoed
    assert not (tmp_path / "state" / "state.db").exists()  # nothing was started
