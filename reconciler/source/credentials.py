"""Credentials for fetching and pushing Git, and the redaction that keeps them out of every message.

Used by ``reconciler.source.git.GitSource`` for every git command it runs. A token never
travels in a URL or on a command line (both end up in logs, ``ps`` and error messages): HTTP(S)
credentials reach git through a ``GIT_ASKPASS`` program that reads them from the environment
of that one git process; SSH uses a key file named in ``GIT_SSH_COMMAND``. Every error message
built from git's output goes through ``redact`` first.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = [
    "ENV_PREFIX",
    "GitCredentials",
    "redact",
    "split_url_credentials",
]

ENV_PREFIX = "CAPSTAN_GIT_"
_ASKPASS_USER_VAR = "CAPSTAN_GIT_ASKPASS_USERNAME"
_ASKPASS_PASSWORD_VAR = "CAPSTAN_GIT_ASKPASS_PASSWORD"  # noqa: S105 - a variable name
# git calls the askpass program with the prompt ("Username for 'https://host': ") as $1;
# the answer comes from this git process's environment, never from a file or argv.
_ASKPASS_SCRIPT = f"""#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "${_ASKPASS_USER_VAR}" ;;
  *) printf '%s\\n' "${_ASKPASS_PASSWORD_VAR}" ;;
esac
"""
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_MASK = "***"


@dataclass(frozen=True)
class GitCredentials:
    """How to authenticate to a remote: a username and token (HTTP), or an SSH key.

    ``token`` is left out of ``repr``; ``secrets()`` lists what ``redact`` must hide.
    """

    username: str = "git"
    token: str = field(default="", repr=False)
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefix: str = ENV_PREFIX
    ) -> GitCredentials | None:
        """Read ``<prefix>USERNAME``, ``<prefix>TOKEN`` or ``<prefix>TOKEN_FILE``,
        ``<prefix>SSH_KEY``, ``<prefix>KNOWN_HOSTS``; None when none is set."""
        env = os.environ if environ is None else environ
        token = env.get(f"{prefix}TOKEN", "")
        token_file = env.get(f"{prefix}TOKEN_FILE")
        if not token and token_file:
            token = _read_token(Path(token_file))
        key = env.get(f"{prefix}SSH_KEY")
        known_hosts = env.get(f"{prefix}KNOWN_HOSTS")
        username = env.get(f"{prefix}USERNAME", "")
        if not (token or key or known_hosts or username):
            return None
        return cls(
            username=username or "git",
            token=token,
            ssh_key_file=Path(key) if key else None,
            known_hosts_file=Path(known_hosts) if known_hosts else None,
        )

    @classmethod
    def from_file(cls, path: Path, *, username: str = "git") -> GitCredentials:
        """A token kept in a file (first line), as a mounted secret is."""
        return cls(username=username, token=_read_token(path))

    def secrets(self) -> tuple[str, ...]:
        return (self.token,) if self.token else ()

    def git_env(self, *, askpass: Path) -> dict[str, str]:
        """Environment for one git process using these credentials."""
        env: dict[str, str] = {}
        if self.token:
            env.update(
                {
                    "GIT_ASKPASS": str(askpass),
                    _ASKPASS_USER_VAR: self.username,
                    _ASKPASS_PASSWORD_VAR: self.token,
                    # WARNING: a configured helper such as `credential.helper=store` would be
                    # handed our token and write it to disk in plain text. An empty value resets
                    # the helper list, for this process only.
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "credential.helper",
                    "GIT_CONFIG_VALUE_0": "",
                }
            )
        if self.ssh_key_file is not None or self.known_hosts_file is not None:
            command = ["ssh", "-o", "BatchMode=yes"]
            if self.ssh_key_file is not None:
                command += ["-i", str(self.ssh_key_file), "-o", "IdentitiesOnly=yes"]
            if self.known_hosts_file is not None:
                command += [
                    "-o",
                    f"UserKnownHostsFile={self.known_hosts_file}",
                    "-o",
                    "StrictHostKeyChecking=yes",
                ]
            env["GIT_SSH_COMMAND"] = shlex.join(command)
        return env


def write_askpass(directory: Path) -> Path:
    """The askpass program (owner-only), written once per cache directory."""
    path = directory / "capstan-askpass.sh"
    if not path.exists() or path.read_text() != _ASKPASS_SCRIPT:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(_ASKPASS_SCRIPT)
        tmp.chmod(stat.S_IRWXU)
        tmp.replace(path)
    return path


def split_url_credentials(url: str) -> tuple[str, GitCredentials | None]:
    """``https://user:token@host/x.git`` -> (``https://host/x.git``, credentials).

    A URL is printed in logs and errors; the userinfo part must not travel with it.
    """
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc or parts.scheme in ("ssh", "git+ssh"):
        # ssh://git@host: the user is not a secret and ssh needs it in the URL.
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, token = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, GitCredentials(username=unquote(user) or "git", token=unquote(token))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret and every URL userinfo replaced by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{_MASK}@", text)


def _read_token(path: Path) -> str:
    lines = path.read_text().splitlines()
    return lines[0].strip() if lines else ""
