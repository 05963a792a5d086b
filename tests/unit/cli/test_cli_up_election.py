"""``capstan up``'s leader-election flags: a combination that cannot work is refused up front."""

from __future__ import annotations

from click.testing import CliRunner

from reconciler.cli import cli


def test_a_renew_deadline_longer_than_the_lease_is_refused_before_anything_starts(tmp_path):
    state = tmp_path / "state"
    result = CliRunner().invoke(
        cli,
        [
            "up",
            str(tmp_path),
            "--state-dir",
            str(state),
            "--no-local-agent",
            "--leader-elect-lease-duration",
            "5",
            "--leader-elect-renew-deadline",
            "10",
        ],
    )
    assert result.exit_code == 1
    assert "--leader-elect-renew-deadline" in result.output
    assert "retry period < renew deadline < lease duration" in result.output
    assert not state.exists(), "nothing was started or created"
