"""``capstan node keyscan``: fetch a node's SSH host key so the user can pin it consciously.

Runs before a Node manifest exists: it opens a bare paramiko ``Transport`` (key exchange
only, no authentication, nothing trusted or stored) and returns the key line for
``spec.hostKey`` with its SHA256 fingerprint, which the user compares out of band (for
instance with ``ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`` on the node's console).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import paramiko

from reconciler.nodes.hostkeys import fingerprint, key_line


class KeyscanError(OSError):
    """The host key could not be read (no answer, not SSH, key exchange failed)."""


@dataclass(frozen=True, slots=True)
class ScannedKey:
    address: str
    port: int
    key_line: str
    fingerprint: str

    def manifest_line(self) -> str:
        """The line to paste under the Node's ``spec``."""
        return f'hostKey: "{self.key_line}"'


def keyscan(address: str, *, port: int = 22, timeout: float = 10.0) -> ScannedKey:
    """Return the host key ``address:port`` offers by default to Capstan's SSH client.

    The key type is the one paramiko negotiates first, so a fingerprint pin taken from this
    output matches what the node connection will see. Raises :class:`KeyscanError`.
    """
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise KeyscanError(f"cannot connect to {address}:{port}: {exc}") from exc
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (OSError, paramiko.SSHException) as exc:
        raise KeyscanError(f"no SSH host key from {address}:{port}: {exc}") from exc
    finally:
        transport.close()
        sock.close()
    return ScannedKey(
        address=address, port=port, key_line=key_line(key), fingerprint=fingerprint(key)
    )
