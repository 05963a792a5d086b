"""The persisted desired set: atomic, private, refuses to guess when corrupt."""

from __future__ import annotations

import stat

import pytest

from agent.state import CorruptState, DesiredStateFile, atomic_write, prepare_state_dir
from schemas import ObjectMeta, Secret
from schemas.protocol import Sync, encode_message


def test_save_and_load(tmp_path):
    prepare_state_dir(tmp_path / "s")
    state = DesiredStateFile(tmp_path / "s")
    assert state.load() is None
    sync = Sync(generation=4)
    state.save(sync)
    assert state.load() == sync
    assert stat.S_IMODE(state.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["data-keys", "desired.json"]


PLANTED = "planted-Zq8vX3-value"


def test_secret_values_are_sealed_with_the_nodes_own_key(tmp_path):
    prepare_state_dir(tmp_path / "s")
    state = DesiredStateFile(tmp_path / "s")
    secret = Secret(
        metadata=ObjectMeta(name="db", namespace="default"), string_data={"password": PLANTED}
    )
    sync = Sync(generation=1, secrets=[secret])
    state.save(sync)
    assert PLANTED.encode() not in state.path.read_bytes()
    assert stat.S_IMODE((tmp_path / "s" / "data-keys").stat().st_mode) == 0o600
    assert DesiredStateFile(tmp_path / "s").load() == sync  # a restarted agent reads it
    # Another node's key (or a lost key file) does not open it: refused, not guessed.
    prepare_state_dir(tmp_path / "other")
    DesiredStateFile(tmp_path / "other").save(Sync(generation=1))
    (tmp_path / "other" / "desired.json").write_bytes(state.path.read_bytes())
    with pytest.raises(CorruptState, match="authentication"):
        DesiredStateFile(tmp_path / "other").load()
    assert PLANTED not in repr(sync)


def test_a_plaintext_file_from_before_sealing_still_loads(tmp_path):
    prepare_state_dir(tmp_path / "s")
    sync = Sync(generation=2)
    (tmp_path / "s" / "desired.json").write_bytes(encode_message(sync))
    assert DesiredStateFile(tmp_path / "s").load() == sync


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
