"""Every state file is 0600 and every state directory 0700, whatever the umask or the parent.

The store holds Secret values and the token is the admin's: with umask 000
and a world-writable parent directory, each real writer (the SQLite store
with its -wal/-shm, the server's first-start secrets, the client config,
up.json, snapshots) still leaves nothing another user can read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.api.server import prepare_state
from reconciler.api.server._serve import ServeOptions
from reconciler.client import ClientConfig, write_config
from reconciler.runinfo import RunInfo, write_run_info
from reconciler.snapshot import ClusterSnapshot
from reconciler.store import open_store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_world(tmp_path: Path) -> Iterator[Path]:
    """A world-writable directory, and umask 000 while the test runs."""
    parent = tmp_path / "open"
    parent.mkdir()
    os.chmod(parent, 0o777)
    old = os.umask(0)
    try:
        yield parent
    finally:
        os.umask(old)


def test_the_store_and_its_wal_and_shm_are_private(open_world: Path) -> None:
    path = open_world / "state.db"
    store = open_store(f"sqlite:///{path}")
    try:
        store.put("/registry/secrets/default/s", b'{"data": {"k": "c2VjcmV0"}}')
        files = sorted(p.name for p in open_world.iterdir())
        assert files == ["state.db", "state.db-shm", "state.db-wal"]
        assert {name: mode(open_world / name) for name in files} == dict.fromkeys(files, 0o600)
    finally:
        store.close()


def test_an_older_wider_store_file_is_narrowed_when_opened(open_world: Path) -> None:
    path = open_world / "state.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    store = open_store(f"sqlite:///{path}")
    store.close()
    assert mode(path) == 0o600


def test_first_start_secrets_client_config_and_run_info_are_private(open_world: Path) -> None:
    state_dir = open_world / "state"
    state = prepare_state(ServeOptions(state_dir=state_dir))
    assert state.tls is not None
    write_config(
        open_world / "home" / "config",
        ClientConfig("https://127.0.0.1:6443", token=state.admin_token, ca_file=state.tls.ca_cert),
    )
    write_run_info(state_dir, RunInfo(1, "sqlite:///x", "repo", "main", "/run/s"))
    ClusterSnapshot(datetime.now(UTC), None, (), (), (), ()).save(state_dir / "snap.json")
    files = [p for p in open_world.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {
        "admin-token",
        "config",
        "ca.key",
        "ca.crt",
        "server.key",
        "server.crt",
        "up.json",
        "snap.json",
    }
    assert {str(p): mode(p) for p in files} == {str(p): 0o600 for p in files}
    directories = [p for p in open_world.rglob("*") if p.is_dir()]
    assert {str(p): mode(p) for p in directories} == {str(p): 0o700 for p in directories}


def test_an_existing_open_state_directory_is_tightened(open_world: Path) -> None:
    state_dir = open_world / "state"
    state_dir.mkdir(mode=0o755)
    prepare_state(ServeOptions(state_dir=state_dir, insecure_http=True))
    assert mode(state_dir) == 0o700
