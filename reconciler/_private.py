"""Files and directories only their owner may read: the control plane's state.

Used by every writer under a state directory — the SQLite store
(``reconciler.store``), the admin token and TLS keys (``reconciler.api.server``),
the client config (``reconciler.client``), ``up.json`` (``reconciler.runinfo``),
cluster snapshots, the local agent's log — because the store holds Secret
values and the token is the admin's. Each file is 0600 from its first byte
(``os.open`` with the mode, then ``fchmod`` for a file that already existed with
a wider one), whatever the umask or the directory's mode; each directory
made is 0700.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from agent.state import atomic_write

__all__ = ["FILE_MODE", "open_private", "private_dir", "write_private"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (made if missing, tightened if not)."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    # The mode of an existing directory (an old ~/.capstan at 0755) is
    # tightened too; a directory we do not own is left as it is.
    with contextlib.suppress(PermissionError):
        os.chmod(path, DIR_MODE)
    return path


def open_private(path: Path, flags: int = os.O_RDWR) -> int:
    """A descriptor of ``path``, created 0600, or an existing file narrowed to 0600."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file readable by its owner only (replaced atomically, fsynced).

    A missing parent is made 0700; an existing one keeps its mode (it may be a home
    directory: state directories are tightened by :func:`private_dir` where they are owned).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    atomic_write(path, data, mode=FILE_MODE)
