"""Local data keys for encryption at rest (AES-256-GCM), as Kubernetes' ``aesgcm`` provider.

Shared by the control plane (Secret values in the store: ``reconciler.api.seal_secrets``) and
the agent (its ``desired.json``: ``agent.state``), each with its own key file, mode 0600, in its
own state directory. The file holds one key per line, ``NAME BASE64``; the first key encrypts,
every key decrypts, so a rotation puts a new key first and keeps the old ones until every
value was written again. A sealed value is ``capstan:enc:aesgcm:v1:NAME:`` followed by the
12-byte nonce and the ciphertext; the caller's ``context`` (the store key, the file name) is
authenticated data, so a value moved elsewhere does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SEALED_PREFIX", "DataKeyError", "DataKeys"]

SEALED_PREFIX = b"capstan:enc:aesgcm:v1:"
_NONCE_BYTES = 12
_LOOSE_BITS = stat.S_IRWXG | stat.S_IRWXO


class DataKeyError(Exception):
    """A key file or a sealed value that cannot be used; never holds key or plaintext."""


@dataclass(frozen=True)
class DataKeys:
    """Named AES-256 keys; ``keys[0]`` encrypts."""

    keys: tuple[tuple[str, bytes], ...] = field(repr=False)

    @classmethod
    def load_or_create(cls, path: Path) -> DataKeys:
        """The keys in ``path``, made (one fresh key, mode 0600) when the file is missing.
        A file group or others may read is refused."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return cls.load(path)  # another process made it first
            with os.fdopen(fd, "w") as out:
                out.write(_line(_new_key("key1")))
                out.flush()
                os.fsync(out.fileno())
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> DataKeys:
        mode = path.stat().st_mode
        if mode & _LOOSE_BITS:
            raise DataKeyError(
                f"{path}: permissions {stat.S_IMODE(mode):04o} are too open for "
                f"a data key file (chmod 600 {path})"
            )
        keys: list[tuple[str, bytes]] = []
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, _, encoded = line.partition(" ")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if not name or len(key) != 32 or ":" in name:
                raise DataKeyError(f"{path}:{number}: expected NAME BASE64 (a 32-byte key)")
            keys.append((name, key))
        if not keys:
            raise DataKeyError(f"{path}: holds no data key")
        return cls(tuple(keys))

    @classmethod
    def rotate(cls, path: Path) -> DataKeys:
        """Put a new key first in ``path`` (it encrypts from now on); old keys still decrypt."""
        current = cls.load(path)
        names = {name for name, _ in current.keys}
        number = len(current.keys) + 1
        while f"key{number}" in names:
            number += 1
        rotated = cls((_new_key(f"key{number}"), *current.keys))
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("".join(_line(key) for key in rotated.keys))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        return rotated

    @property
    def writer(self) -> str:
        return self.keys[0][0]

    def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        name, key = self.keys[0]
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext, context)
        return SEALED_PREFIX + name.encode() + b":" + nonce + sealed

    def open(self, value: bytes, *, context: bytes) -> bytes:
        """The plaintext of a sealed value; a value without the prefix is returned as it is
        (written before encryption at rest was on)."""
        if not value.startswith(SEALED_PREFIX):
            return value
        name, sep, rest = value[len(SEALED_PREFIX) :].partition(b":")
        key = dict(self.keys).get(name.decode(errors="replace"))
        if not sep or key is None:
            raise DataKeyError(
                f"sealed with data key {name.decode(errors='replace')!r}, "
                "which is not in the key file"
            )
        try:
            return AESGCM(key).decrypt(rest[:_NONCE_BYTES], rest[_NONCE_BYTES:], context)
        except InvalidTag:
            raise DataKeyError("a sealed value failed authentication") from None


def _new_key(name: str) -> tuple[str, bytes]:
    return name, secrets.token_bytes(32)


def _line(key: tuple[str, bytes]) -> str:
    return f"{key[0]} {base64.b64encode(key[1]).decode()}\n"
