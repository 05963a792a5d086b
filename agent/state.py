"""The agent's memory on disk: the last desired set it accepted, with its generation.

Written by the server when a ``sync`` is accepted, read once at start-up so that the kubelet
keeps running the node's pods with no reconciler connected. Every write is atomic (temporary
file, fsync, rename, fsync of the directory): a crash leaves the old set or the new one,
never half of one. The file holds Secret values: it is sealed whole with the node's own data
key (AES-GCM, ``schemas.datakeys``; ``data-keys`` beside it, 0600, made on first use), and it
and the state directory are 0600/0700. A file written before sealing was on still loads.

The file is one sync message, written whole on every accepted sync, but encoded in parts: each
pod, Service rule, ConfigMap, Secret and Ingress is encoded once and its JSON kept while the
same (frozen) object stays in the desired set, so a sync that changes a few pods or one
Service's endpoints costs the encoding of those only (:class:`agent.wire.SyncDecoder` hands
back the same objects for unchanged parts).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from schemas.datakeys import DataKeyError, DataKeys
from schemas.protocol import ProtocolError, Sync, decode_message, encode_message

DESIRED_FILE: Final = "desired.json"
#: The node's own data key file in the agent's state directory.
DATA_KEYS_FILE: Final = "data-keys"
#: The list fields of a sync encoded element by element (attribute, wire name).
_PARTS: Final = (
    ("pods", "pods"),
    ("config_maps", "configMaps"),
    ("secrets", "secrets"),
    ("services", "services"),
    ("ingresses", "ingresses"),
)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new content, whole.

    ``durable``: the new content is on disk when this returns (the file and its directory
    entry fsynced). Without it the replace is as atomic for readers but may be lost in a
    crash, for files rebuilt from what is durable (a pod's configMap and secret volumes,
    rewritten from the persisted desired set).
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        # Before the first byte: a temporary file left with a wider mode keeps it on open.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if not durable:
        return
    # The rename is only durable once the directory entry is.
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _unknown(_model: BaseModel) -> str | None:
    return None


class CorruptState(Exception):
    """The persisted desired set cannot be read; the agent refuses to guess."""


class DesiredStateFile:
    """The persisted :class:`~schemas.protocol.Sync` of one agent."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / DESIRED_FILE
        self._keys_path = state_dir / DATA_KEYS_FILE
        self._keys: DataKeys | None = None
        # id -> (the element, its JSON) for the elements of the last set saved; the element
        # is held so that its id cannot be reused by another object meanwhile.
        self._encoded: dict[int, tuple[BaseModel, bytes]] = {}

    def _data_keys(self) -> DataKeys:
        if self._keys is None:
            self._keys = DataKeys.load_or_create(self._keys_path)
        return self._keys

    @property
    def path(self) -> Path:
        return self._path

    def read(self) -> bytes | None:
        """The persisted sync's JSON line, unsealed and not decoded (None before the first)."""
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return self._data_keys().open(data, context=DESIRED_FILE.encode())
        except DataKeyError as exc:
            raise CorruptState(f"{self._path}: {exc}") from None

    def load(self) -> Sync | None:
        opened = self.read()
        if opened is None:
            return None
        try:
            message = decode_message(opened.rstrip(b"\n"))
        except ProtocolError as exc:
            raise CorruptState(f"{self._path}: {exc}") from None
        if not isinstance(message, Sync):
            raise CorruptState(f"{self._path}: holds a {message.type} message, not a sync")
        return message

    def save(self, sync: Sync, *, known: Callable[[BaseModel], str | None] = _unknown) -> None:
        """Persist ``sync`` (atomic, fsynced): the acknowledgement of a sync follows this.

        ``known``: the JSON an element of the sync was decoded from, when the caller has it
        (:meth:`agent.wire.SyncDecoder.text`); written as it is instead of encoding again.
        """
        sealed = self._data_keys().seal(self._encode(sync, known), context=DESIRED_FILE.encode())
        atomic_write(self._path, sealed)

    def _encode(self, sync: Sync, known: Callable[[BaseModel], str | None]) -> bytes:
        """``encode_message(sync)``, up to the order of fields, from the kept parts."""
        head = encode_message(sync, exclude={attribute for attribute, _ in _PARTS})
        chunks = [head.rstrip().removesuffix(b"}")]
        encoded: dict[int, tuple[BaseModel, bytes]] = {}
        for attribute, wire in _PARTS:
            items: list[BaseModel] = getattr(sync, attribute)
            if not items:
                continue
            texts = []
            for item in items:
                kept = self._encoded.get(id(item))
                if kept is None or kept[0] is not item:
                    text = known(item)
                    kept = (
                        item,
                        text.encode()
                        if text is not None
                        else item.model_dump_json(by_alias=True, exclude_none=True).encode(),
                    )
                encoded[id(item)] = kept
                texts.append(kept[1])
            chunks.append(b',"%s":[%s]' % (wire.encode(), b",".join(texts)))
        self._encoded = encoded
        return b"".join(chunks) + b"}\n"


def prepare_state_dir(state_dir: Path) -> None:
    """Create the state directory private to the agent (it will hold secrets)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
