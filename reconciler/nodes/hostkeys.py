"""Host key pinning for node connections: parse pins, fingerprint keys, refuse strangers.

Used when ``NodeConnection`` opens an SSH transport and by ``keyscan``. A node's host key comes
from its manifest (``spec.hostKey``: an OpenSSH public key line or a ``SHA256:`` fingerprint)
or from a known_hosts file; anything else is refused before authentication, and the refusal
carries both fingerprints so the node controller can put them in a Node condition.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

import paramiko

_FINGERPRINT_PREFIX = "SHA256:"


class HostKeyRejected(Exception):
    """The node offered a host key that is not the pinned one (or nothing is pinned)."""

    def __init__(self, *, host: str, expected: str, offered: str) -> None:
        self.host = host
        self.expected = expected
        self.offered = offered
        super().__init__(f"host key for {host} refused: expected {expected}, offered {offered}")


@dataclass(frozen=True, slots=True)
class HostKeyPin:
    """A parsed ``spec.hostKey``: either a full key or just its SHA256 fingerprint."""

    fingerprint: str
    key: paramiko.PKey | None = None

    @classmethod
    def parse(cls, text: str) -> HostKeyPin:
        """Accept ``SHA256:xxxx`` or ``<type> <base64> [comment]``; else ``ValueError``."""
        text = text.strip()
        if text.startswith(_FINGERPRINT_PREFIX):
            digest = text[len(_FINGERPRINT_PREFIX) :]
            try:
                raw = base64.b64decode(digest + "=" * (-len(digest) % 4), validate=True)
            except binascii.Error as exc:
                raise ValueError(f"hostKey fingerprint is not base64: {text!r}") from exc
            if len(raw) != hashlib.sha256().digest_size:
                raise ValueError(f"hostKey fingerprint is not a SHA256 digest: {text!r}")
            return cls(fingerprint=text.rstrip("="))
        parts = text.split()
        if len(parts) < 2:
            raise ValueError(
                "hostKey must be an OpenSSH public key line ('ssh-ed25519 AAAA...') "
                "or a 'SHA256:' fingerprint"
            )
        try:
            key = paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
        except (binascii.Error, paramiko.SSHException, ValueError) as exc:
            raise ValueError(f"hostKey is not a valid {parts[0]} public key: {exc}") from exc
        return cls(fingerprint=fingerprint(key), key=key)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:`` fingerprint (unpadded base64), as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return _FINGERPRINT_PREFIX + base64.b64encode(digest).decode("ascii").rstrip("=")


def key_line(key: paramiko.PKey) -> str:
    """The ``spec.hostKey`` value for ``key``: ``<type> <base64>``."""
    return f"{key.get_name()} {key.get_base64()}"


def known_hosts_name(address: str, port: int) -> str:
    """The name OpenSSH and paramiko look a host up by in known_hosts."""
    return address if port == 22 else f"[{address}]:{port}"


class PinnedKeyPolicy(paramiko.RejectPolicy):
    """``RejectPolicy`` that also accepts a key matching a pinned SHA256 fingerprint.

    paramiko consults the policy only for hosts missing from the client's host keys. A pinned
    full key or a known_hosts entry never reaches here (a mismatch there raises
    ``BadHostKeyException``); a fingerprint pin does, because paramiko cannot store a key it
    has never seen. Everything else is refused, with the offered fingerprint in the error.
    """

    def __init__(self, *, expected: str | None) -> None:
        self._expected = expected

    # RejectPolicy is typed NoReturn; this one returns for exactly one case, the pinned key.
    def missing_host_key(  # type: ignore[override]
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        offered = fingerprint(key)
        if self._expected is not None and offered == self._expected:
            return
        raise HostKeyRejected(
            host=hostname,
            expected=self._expected or "no pinned key (set spec.hostKey; see capstan node keyscan)",
            offered=offered,
        )
