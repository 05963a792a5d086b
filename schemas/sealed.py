"""The shape of an age-encrypted Secret value, checked without any key.

Used by :class:`schemas.Secret` when a Secret is annotated ``capstan.io/encrypted: age``
(every value must then be an ASCII-armored age message, docs/secrets.md), and by the sync and
``capstan plan`` (``reconciler.secrets``) to name a value by the digest of its ciphertext, so a
plan without the key still tells a changed value from an unchanged one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

__all__ = [
    "ARMOR_BEGIN",
    "ARMOR_END",
    "DIGESTS_ANNOTATION",
    "ENCRYPTED_ANNOTATION",
    "ENCRYPTED_VALUE",
    "armor_problem",
    "ciphertext_digest",
    "is_armored",
]

#: On a Secret in Git: every ``data``/``stringData`` value is an armored age message.
ENCRYPTED_ANNOTATION = "capstan.io/encrypted"
ENCRYPTED_VALUE = "age"
#: On the Secret the sync stores (values decrypted): JSON ``{key: ciphertext digest}``.
DIGESTS_ANNOTATION = "capstan.io/encrypted-digests"
ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
_HEADER = b"age-encryption.org/v1\n"


def is_armored(value: str) -> bool:
    """Whether ``value`` looks like an armored age message (begins with the armor line)."""
    return value.strip().startswith(ARMOR_BEGIN)


def armor_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an armored age message, or None. Checks the frame only
    (armor lines, base64 body, age header): whether a key opens it is the sync's business."""
    lines = value.strip().splitlines()
    if not lines or lines[0].strip() != ARMOR_BEGIN:
        return f"must be an age message in ASCII armor (starting {ARMOR_BEGIN})"
    if len(lines) < 3 or lines[-1].strip() != ARMOR_END:
        return f"is a truncated age message: the armor does not end with {ARMOR_END}"
    try:
        body = base64.b64decode("".join(line.strip() for line in lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        return "is not a valid age message: its armored body is not base64"
    if not body.startswith(_HEADER):
        return "is not a valid age message: no age-encryption.org/v1 header"
    return None


def ciphertext_digest(value: str) -> str:
    """A stable name for one encrypted value: sha256 of its armored text, whitespace at the
    line ends ignored (YAML block scalars may add or drop the final newline)."""
    normalized = "\n".join(line.strip() for line in value.strip().splitlines())
    return "sha256:" + hashlib.sha256(normalized.encode()).hexdigest()
