"""A pod's configMap, secret and projected volumes on disk: files follow the objects, each
replaced whole, unchanged files left as they are, keys gone removed."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from agent_testdata import desired, pod

from agent import state
from agent.kubelet import volumes
from agent.kubelet.podspec import ConfigIndex, volume_dir
from agent.state import atomic_write
from schemas.core import ConfigMap, Secret


def config_map(name: str, data: dict[str, str]) -> ConfigMap:
    return ConfigMap.model_validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
    )


def secret(name: str, data: dict[str, bytes]) -> Secret:
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return Secret.model_validate(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}
    )


POD = pod(
    containers=[{"name": "app", "image": "i:1"}],
    volumes=[
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {
            "name": "some",
            "configMap": {"name": "cfg", "items": [{"key": "b", "path": "deep/er/b.txt"}]},
        },
        {"name": "sec", "secret": {"secretName": "sec"}},
        {
            "name": "proj",
            "projected": {"sources": [{"configMap": {"name": "cfg"}}, {"secret": {"name": "sec"}}]},
        },
    ],
)


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_volumes_follow_their_objects(tmp_path):
    d = desired(POD)
    configs = ConfigIndex.of(
        [config_map("cfg", {"a": "1", "b": "2"})], [secret("sec", {"s": b"x"})]
    )
    volumes.materialize(d, state_dir=tmp_path, configs=configs)
    cfg = volume_dir(tmp_path, d.uid, "cfg")
    assert files(cfg) == {"a": b"1", "b": b"2"}
    assert files(volume_dir(tmp_path, d.uid, "some")) == {"deep/er/b.txt": b"2"}
    assert files(volume_dir(tmp_path, d.uid, "sec")) == {"s": b"x"}
    assert files(volume_dir(tmp_path, d.uid, "proj")) == {"a": b"1", "b": b"2", "s": b"x"}
    assert (cfg / "a").stat().st_mode & 0o777 == 0o444
    assert (volume_dir(tmp_path, d.uid, "sec") / "s").stat().st_mode & 0o777 == 0o400
    unchanged_inode = (cfg / "b").stat().st_ino

    # One key changed, one gone, one new (with the contents a refresh shares among its pods).
    configs = ConfigIndex.of(
        [config_map("cfg", {"b": "2", "c": "3"})], [secret("sec", {"s": b"x"})]
    )
    contents = volumes.VolumeContents(configs)
    volumes.materialize(d, state_dir=tmp_path, configs=configs, contents=contents)
    assert files(cfg) == {"b": b"2", "c": b"3"}
    assert files(volume_dir(tmp_path, d.uid, "proj")) == {"b": b"2", "c": b"3", "s": b"x"}
    # The unchanged file was left as it was, not written again.
    assert (cfg / "b").stat().st_ino == unchanged_inode
    # No temporary file is left beside the files.
    assert sorted(os.listdir(cfg)) == ["b", "c"]


def test_a_changed_file_is_replaced_whole_with_its_mode(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old content")
    os.chmod(target, 0o600)
    atomic_write(target, b"new", mode=0o444, durable=False)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o444
    assert os.listdir(tmp_path) == ["f"]
    # A file not there yet is created.
    atomic_write(tmp_path / "g", b"first", mode=0o400, durable=False)
    assert (tmp_path / "g").read_bytes() == b"first"


def test_without_an_exchange_of_names_a_rename_replaces_the_file(tmp_path, monkeypatch):
    # A C library without renameat2, or a file system that refuses RENAME_EXCHANGE.
    monkeypatch.setattr(state, "_renameat2", None)
    target = tmp_path / "f"
    atomic_write(target, b"old", durable=False)
    atomic_write(target, b"new", mode=0o444, durable=False)
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f"]


def test_an_exchange_refused_by_the_kernel_falls_back_to_a_rename(tmp_path, monkeypatch):
    def refuse(*_args: object) -> int:
        import ctypes
        import errno

        ctypes.set_errno(errno.EINVAL)
        return -1

    monkeypatch.setattr(state, "_renameat2", refuse)
    target = tmp_path / "f"
    atomic_write(target, b"old", durable=False)
    atomic_write(target, b"new", durable=False)
    assert target.read_bytes() == b"new"
    assert state._renameat2 is None  # not tried again
    assert os.listdir(tmp_path) == ["f"]


@pytest.mark.skipif(state._renameat2 is None, reason="no renameat2 in this C library")
def test_the_exchange_leaves_the_new_file_under_the_name(tmp_path):
    # The name holds the new file (a new inode); the old one is gone with the temporary name.
    target = tmp_path / "f"
    atomic_write(target, b"old", durable=False)
    old_inode = target.stat().st_ino
    atomic_write(target, b"new", durable=False)
    assert target.stat().st_ino != old_inode
    assert target.read_bytes() == b"new"


def test_existing_pod_dirs_are_the_directories_under_pods(tmp_path):
    assert volumes.existing_pod_dirs(tmp_path) == []
    (tmp_path / "pods" / "uid-a").mkdir(parents=True)
    (tmp_path / "pods" / "uid-b").mkdir()
    (tmp_path / "pods" / ".stray").write_bytes(b"")
    assert sorted(volumes.existing_pod_dirs(tmp_path)) == ["uid-a", "uid-b"]
    (tmp_path / "file").write_bytes(b"")
    assert volumes.existing_pod_dirs(tmp_path / "file") == []
