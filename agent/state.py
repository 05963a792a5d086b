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
import ctypes
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final, cast

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


def _load_renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None  # a C library without renameat2 (glibc < 2.28, musl < 1.2.5)
    function.argtypes = (
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    )
    function.restype = ctypes.c_int
    return cast("Callable[[int, bytes, int, bytes, int], int]", function)


_renameat2: Callable[[int, bytes, int, bytes, int], int] | None = _load_renameat2()
_AT_FDCWD: Final = -100
_RENAME_EXCHANGE: Final = 2


def _exchange(tmp: str, path: str) -> bool:
    """Swap ``tmp`` and ``path`` atomically (``renameat2(RENAME_EXCHANGE)``); False when
    ``path`` does not exist or the system cannot exchange (then a rename does it)."""
    global _renameat2  # switched off once where the kernel refuses
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(path), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        _renameat2 = None
    elif error != errno.ENOENT:
        raise OSError(error, os.strerror(error), path)
    return False


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new content, whole.

    ``durable``: the new content is on disk when this returns (the file and its directory
    entry fsynced). Without it the replace is as atomic for readers but may be lost in a
    crash, for files rebuilt from what is durable (a pod's configMap and secret volumes,
    rewritten from the persisted desired set); such a file replaces the old one by an
    atomic exchange of the two names where the kernel has it, since a rename over an
    existing file makes ext4 write the new file's data out first (``auto_da_alloc``), the
    cost of an fsync without its guarantee.
    """
    target = os.fspath(path)
    tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            # Before the first byte: a temporary file left with a wider mode keeps it on open.
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if not durable and _exchange(tmp, target):
            os.unlink(tmp)  # the old content, under the temporary name now
            return
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if not durable:
        return
    # The rename is only durable once the directory entry is.
    dir_fd = os.open(os.path.dirname(target) or ".", os.O_RDONLY | os.O_DIRECTORY)
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
