"""The agent's memory on disk: the last desired set it accepted, with its generation.

Written by the server when a ``sync`` is accepted, read once at start-up so that the kubelet
keeps running the node's pods with no reconciler connected. Every write is atomic (temporary
file, fsync, rename, fsync of the directory): a crash leaves the old set or the new one,
never half of one. The file holds Secret values: it is sealed whole with the node's own data
key (AES-GCM, ``schemas.datakeys``; ``data-keys`` beside it, 0600, made on first use), and it
and the state directory are 0600/0700. A file written before sealing was on still loads.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

from schemas.datakeys import DataKeyError, DataKeys
from schemas.protocol import ProtocolError, Sync, decode_message, encode_message

DESIRED_FILE: Final = "desired.json"
#: The node's own data key file in the agent's state directory.
DATA_KEYS_FILE: Final = "data-keys"


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new content, whole."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        # Before the first byte: a temporary file left with a wider mode keeps it on open.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    # The rename is only durable once the directory entry is.
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class CorruptState(Exception):
    """The persisted desired set cannot be read; the agent refuses to guess."""


class DesiredStateFile:
    """The persisted :class:`~schemas.protocol.Sync` of one agent."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / DESIRED_FILE
        self._keys_path = state_dir / DATA_KEYS_FILE
        self._keys: DataKeys | None = None

    def _data_keys(self) -> DataKeys:
        if self._keys is None:
            self._keys = DataKeys.load_or_create(self._keys_path)
        return self._keys

    @property
    def path(self) -> Path:
        return self._path

    def load(self) -> Sync | None:
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            opened = self._data_keys().open(data, context=DESIRED_FILE.encode())
        except DataKeyError as exc:
            raise CorruptState(f"{self._path}: {exc}") from None
        try:
            message = decode_message(opened.rstrip(b"\n"))
        except ProtocolError as exc:
            raise CorruptState(f"{self._path}: {exc}") from None
        if not isinstance(message, Sync):
            raise CorruptState(f"{self._path}: holds a {message.type} message, not a sync")
        return message

    def save(self, sync: Sync) -> None:
        sealed = self._data_keys().seal(encode_message(sync), context=DESIRED_FILE.encode())
        atomic_write(self._path, sealed)


def prepare_state_dir(state_dir: Path) -> None:
    """Create the state directory private to the agent (it will hold secrets)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
