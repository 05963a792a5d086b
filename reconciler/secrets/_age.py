"""age identities, recipients and single values (pyrage), as the ``age`` command line has them.

Used by ``capstan secret`` (reconciler/cli/secret.py) to seal and open values, and by the sync
(:func:`reconciler.secrets.open_repository`) to open them with the control plane's identities.
An identity file is refused when its mode lets group or others read it, as ssh refuses a loose
private key.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyrage
from pyrage import x25519

__all__ = [
    "RECIPIENTS_FILE",
    "AgeError",
    "Identities",
    "find_recipients_file",
    "generate_identity",
    "load_identities",
    "parse_recipients",
    "read_recipients_file",
    "seal_value",
]

#: One ``age1…`` per line, ``#`` comments; the nearest one at or above a manifest applies.
RECIPIENTS_FILE = ".capstan-recipients"
_LOOSE_BITS = stat.S_IRWXG | stat.S_IRWXO


class AgeError(Exception):
    """A key, recipient or message problem; the text never holds a secret value."""


@dataclass(frozen=True)
class Identities:
    """The private keys that may open values, with the files they came from (for messages)."""

    keys: tuple[x25519.Identity, ...] = field(default=(), repr=False)
    files: tuple[str, ...] = ()

    def open(self, armored: str) -> bytes:
        """The plaintext of one armored age message, or AgeError saying none of the
        identities opens it (or that the message itself is broken)."""
        if not self.keys:
            raise AgeError("no age identity is configured (capstan up --age-identity FILE)")
        try:
            return pyrage.decrypt(armored.strip().encode() + b"\n", list(self.keys))
        except pyrage.DecryptError as exc:
            # pyrage says "No matching keys found" for a wrong key and other texts for a
            # broken message; neither ever includes plaintext.
            if "matching" in str(exc).lower():
                raise AgeError(
                    "none of the control plane's age identities can open it "
                    f"({', '.join(self.files) or 'no identity'}); re-encrypt it for their "
                    "recipients with `capstan secret rotate`"
                ) from None
            raise AgeError(f"is not a readable age message ({exc})") from None


def generate_identity(path: Path) -> str:
    """Write a new identity to ``path`` (mode 0600, refusing to overwrite); its recipient."""
    key = x25519.Identity.generate()
    recipient = str(key.to_public())
    text = f"# created by capstan secret keygen\n# public key: {recipient}\n{key}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return recipient


def load_identities(paths: Iterable[Path]) -> Identities:
    """Every ``AGE-SECRET-KEY-1…`` line of every file in ``paths`` (age's identity file
    format). A file group or others may read is refused, as ssh refuses loose keys."""
    keys: list[x25519.Identity] = []
    files: list[str] = []
    for path in paths:
        try:
            mode = path.stat().st_mode
            text = path.read_text()
        except OSError as exc:
            raise AgeError(f"{path}: cannot read the age identity: {exc.strerror}") from None
        if mode & _LOOSE_BITS:
            raise AgeError(
                f"{path}: permissions {stat.S_IMODE(mode):04o} are too open for an age "
                f"identity; it must be readable by its owner only (chmod 600 {path})"
            )
        found = 0
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                keys.append(x25519.Identity.from_str(line))
            except pyrage.IdentityError:
                # The line is a private key gone wrong: never echo it.
                raise AgeError(
                    f"{path}:{number}: not an age identity (expected AGE-SECRET-KEY-1...)"
                ) from None
            found += 1
        if not found:
            raise AgeError(f"{path}: holds no age identity")
        files.append(str(path))
    return Identities(tuple(keys), tuple(files))


def parse_recipients(texts: Iterable[str], *, where: str = "") -> tuple[x25519.Recipient, ...]:
    """``age1…`` strings as recipients; AgeError naming the bad one (public, so shown)."""
    found: list[x25519.Recipient] = []
    for text in texts:
        try:
            found.append(x25519.Recipient.from_str(text.strip()))
        except pyrage.RecipientError:
            raise AgeError(f"{where}{text.strip()!r} is not an age recipient (age1...)") from None
    return tuple(found)


def read_recipients_file(path: Path) -> tuple[x25519.Recipient, ...]:
    """The recipients in a ``.capstan-recipients`` file: one per line, ``#`` comments."""
    recipients: list[x25519.Recipient] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            recipients.extend(parse_recipients([line], where=f"{path}:{number}: "))
    if not recipients:
        raise AgeError(f"{path}: lists no recipient")
    return tuple(recipients)


def find_recipients_file(start: Path) -> Path | None:
    """The nearest ``.capstan-recipients`` in ``start`` (a file's directory) or above."""
    here = start.resolve()
    for folder in (here, *here.parents):
        candidate = folder / RECIPIENTS_FILE
        if candidate.is_file():
            return candidate
    return None


def seal_value(plaintext: bytes, recipients: Sequence[x25519.Recipient]) -> str:
    """One armored age message for ``recipients`` (what ``age -a -r`` writes)."""
    if not recipients:
        raise AgeError("no recipients to encrypt for")
    return pyrage.encrypt(plaintext, list(recipients), armored=True).decode()
