"""The persisted desired set: atomic, private, refuses to guess when corrupt."""

from __future__ import annotations

import os
import stat

import pytest
from agent_testdata import desired, pod

from agent.kubelet import volumes
from agent.kubelet.podspec import ConfigIndex, volume_dir
from agent.state import CorruptState, DesiredStateFile, atomic_write, prepare_state_dir
from schemas import ConfigMap, ObjectMeta, Secret
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


def test_the_desired_set_is_fsynced_and_a_pods_config_volume_is_not(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    prepare_state_dir(tmp_path / "s")
    state = DesiredStateFile(tmp_path / "s")
    state.save(Sync(generation=1))  # makes the node's data key too
    monkeypatch.setattr(os, "fsync", fsync)
    state.save(Sync(generation=2))
    assert len(synced) == 2  # the file, then its directory entry
    synced.clear()
    config = ConfigMap(metadata=ObjectMeta(name="cm", namespace="default"), data={"k": "v2"})
    d = desired(pod(volumes=[{"name": "cfg", "configMap": {"name": "cm"}}]))
    volumes.materialize(d, state_dir=tmp_path, configs=ConfigIndex.of([config], []))
    assert (volume_dir(tmp_path, d.uid, "cfg") / "k").read_bytes() == b"v2"
    assert synced == []


def test_corrupt_file_is_an_error(tmp_path):
    state = DesiredStateFile(tmp_path)
    state.path.write_text("{half")
    with pytest.raises(CorruptState):
        state.load()
