"""The persisted desired set: atomic, private, refuses to guess when corrupt."""

from __future__ import annotations

import stat

import pytest

from agent.state import CorruptState, DesiredStateFile, atomic_write, prepare_state_dir
from schemas.protocol import Sync


def test_save_and_load(tmp_path):
    prepare_state_dir(tmp_path / "s")
    state = DesiredStateFile(tmp_path / "s")
    assert state.load() is None
    sync = Sync(generation=4)
    state.save(sync)
    assert state.load() == sync
    assert stat.S_IMODE(state.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["desired.json"]


def test_atomic_write_replaces_whole(tmp_path):
    target = tmp_path / "f"
    atomic_write(target, b"old")
    atomic_write(target, b"new", mode=0o400)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o400


def test_corrupt_file_is_an_error(tmp_path):
    state = DesiredStateFile(tmp_path)
    state.path.write_text("{half")
    with pytest.raises(CorruptState):
        state.load()
