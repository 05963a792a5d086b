"""``capstan rollback`` against Git alone (no cluster reachable): --to, --steps counting
commits, the confirmation, and --push to origin."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from plan_testdata import GitRepo, shop_v1, shop_v2

from reconciler.cli import cli


@pytest.fixture
def clone(tmp_path: Path) -> tuple[GitRepo, Path]:
    """A working clone with an ``origin`` (bare) it pushes to, holding v1 and v2."""
    work = GitRepo(tmp_path / "work")
    shop_v1(work)
    shop_v2(work)
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    work.git("remote", "add", "origin", str(origin))
    work.git("push", "-q", "origin", "main")
    return work, origin


def rollback(repo: GitRepo, *args: str, answer: str | None = None) -> str:
    result = CliRunner().invoke(
        cli,
        ["rollback", str(repo.path), "--state-dir", str(repo.path.parent / "none"), *args],
        input=answer,
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_declined_rollback_changes_nothing(clone: tuple[GitRepo, Path]) -> None:
    work, _origin = clone
    refs = work.refs()
    output = rollback(work, "--steps", "1", answer="n\n")
    assert "Rolling main back to " in output
    assert "v1: the shop" in output
    assert "- ConfigMap shop/new-settings" in output  # the plan of the revert is shown first
    assert "Commit revert" in output
    assert "nothing changed" in output
    assert work.refs() == refs
    assert work.status() == ""


def test_rollback_to_a_sha_commits_and_pushes(clone: tuple[GitRepo, Path]) -> None:
    work, origin = clone
    v1 = work.git("rev-parse", "HEAD~1")
    output = rollback(work, "--to", v1, "--push", "--yes", "--reason", "bad image")
    assert "and origin" in output
    tree_now = work.git("rev-parse", "HEAD^{tree}")
    assert tree_now == work.git("rev-parse", f"{v1}^{{tree}}")  # v1's state, restored
    assert work.git("rev-list", "--count", "HEAD") == "3"  # a new commit, history kept
    pushed = subprocess.run(
        ["git", "--git-dir", str(origin), "rev-parse", "main"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert pushed == work.git("rev-parse", "HEAD")
    message = work.git("log", "-1", "--format=%B")
    assert "v2: new image, new settings" in message
    assert "Why: bad image" in message


def test_rollback_of_the_head_itself_is_refused(clone: tuple[GitRepo, Path]) -> None:
    work, _origin = clone
    result = CliRunner().invoke(
        cli,
        [
            "rollback",
            str(work.path),
            "--to",
            "HEAD",
            "--yes",
            "--state-dir",
            str(work.path.parent / "none"),
        ],
    )
    assert result.exit_code == 1
    assert "nothing to undo" in result.output
