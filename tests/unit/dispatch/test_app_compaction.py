"""``capstan up`` compacts its store: the leader runs the compactor, a follower does not."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.api import DATA_KEYS_FILE
from reconciler.app import CapstanApp, UpConfig
from reconciler.cli.up import up
from reconciler.store import Compacted, open_store
from reconciler.store.compactor import COMPACT_KEY
from reconciler.store.election import ElectionSettings
from tests.fixtures.waiting import wait_until

FAST = ElectionSettings(lease_duration_s=2, renew_deadline_s=1.5, retry_period_s=0.05)


def _repo(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "README").write_text("nothing to run\n")
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
        check=True,
    )
    return path


def _replica(tmp_path: Path, repo: Path, name: str, **options: object) -> CapstanApp:
    state_dir = tmp_path / name
    if name != "a":
        # The replicas share the store, so the data keys that seal its Secrets (docs/ha.md).
        state_dir.mkdir(mode=0o700)
        shutil.copy2(tmp_path / "a" / DATA_KEYS_FILE, state_dir / DATA_KEYS_FILE)
    config = UpConfig(
        repo=str(repo),
        state_dir=state_dir,
        store_url=f"sqlite:///{tmp_path / 'state.db'}",
        local_agent=False,
        election=FAST,
        identity=name,
        compaction_interval_s=0.05,
    )
    app = CapstanApp(replace(config, **options))  # type: ignore[arg-type]
    app.start()
    return app


def test_only_the_leader_compacts_and_the_next_leader_takes_over(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    a = _replica(tmp_path, repo, "a")
    b: CapstanApp | None = None
    try:
        assert a.compactor is not None
        b = _replica(tmp_path, repo, "b")
        assert b.elector is not None
        assert not b.elector.is_leader
        assert b.compactor is None  # a follower does not compact
        wait_until(lambda: a.compactor is not None and a.compactor.compacted > 0, what="a compacts")
        a.stop()
        wait_until(lambda: b is not None and b.compactor is not None, what="b leads")
        assert b.compactor is not None
        leader = b.compactor
        wait_until(lambda: leader.compacted > 0, what="b compacts")
        compacted = leader.compacted
    finally:
        a.stop()
        if b is not None:
            b.stop()
    # The history before the compaction is gone.
    with open_store(f"sqlite:///{tmp_path / 'state.db'}") as store, pytest.raises(Compacted):
        store.get(COMPACT_KEY, at_revision=compacted - 1)


def test_zero_turns_compaction_off(tmp_path: Path) -> None:
    app = _replica(tmp_path, _repo(tmp_path / "repo"), "a", compaction_interval_s=0.0)
    try:
        assert app.elector is not None
        assert app.elector.is_leader
        assert app.compactor is None
    finally:
        app.stop()


def test_the_flag_refuses_a_negative_interval() -> None:
    result = CliRunner().invoke(up, ["/nonexistent", "--store-compaction-interval", "-1"])
    assert result.exit_code == 2
    assert "--store-compaction-interval" in result.output
