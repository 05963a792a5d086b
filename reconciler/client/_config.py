"""The client config file: a kubeconfig-like YAML of contexts, and where it is.

Read by every ``capstan`` command through :mod:`reconciler.cli._target`, written by
``capstan up`` (the API server records itself as a context) and ``capstan config``. The
format is described in :mod:`reconciler.client`.
"""

from __future__ import annotations

import builtins
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconciler._private import open_private, write_private
from reconciler.client._exceptions import ConfigError
from reconciler.runinfo import RUN_INFO_FILE

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "SERVER_CONTEXT",
    "ClientConfig",
    "Context",
    "client_config_path",
    "contexts",
    "load_config",
    "use_context",
    "write_config",
]

DEFAULT_CONFIG_PATH = Path("~/.capstan/config")
#: Names the client config file instead of ``~/.capstan/config`` (as ``KUBECONFIG`` does).
CONFIG_ENV = "CAPSTAN_CONFIG"
#: The context an API server writes into its state directory's config.
SERVER_CONTEXT = "capstan"


@dataclass(frozen=True)
class ClientConfig:
    """Where the server is and how to prove who we are. ``token`` wins over ``token_file``."""

    server: str
    token: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None

    def bearer_token(self) -> str | None:
        if self.token:
            return self.token
        if self.token_file is not None:
            try:
                return self.token_file.expanduser().read_text(encoding="ascii").strip() or None
            except OSError as exc:
                raise ConfigError(f"cannot read token file {self.token_file}: {exc}") from exc
        return None


def client_config_path() -> Path:
    """``$CAPSTAN_CONFIG``, else ``~/.capstan/config``."""
    configured = os.environ.get(CONFIG_ENV)
    return Path(configured or DEFAULT_CONFIG_PATH).expanduser()


@dataclass(frozen=True)
class Context:
    """One named context of the client config: a ``capstan up`` on this machine
    (``state_dir``), a server to reach (``server``, ``ca_file``, ``token_file``), or both."""

    name: str
    state_dir: Path | None = None
    server: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None


def _named(entries: Any, name: str, section: str, path: Path) -> dict[str, Any]:
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and entry.get("name") == name:
                inner = entry.get(section)
                if isinstance(inner, dict):
                    return inner
    raise ConfigError(f"{path}: no {section} named {name!r}")


def _read_document(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read client config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: must be a mapping")
    return document


def _relative(value: Any, path: Path) -> Path | None:
    """A path from the file: relative ones are relative to the file's directory."""
    if not isinstance(value, str) or not value:
        return None
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else path.parent / candidate


def load_config(path: Path | None = None, *, context: str | None = None) -> ClientConfig:
    """Read a kubeconfig-like file (``yaml.safe_load``); relative file paths in it are
    relative to the file."""
    path = (path or client_config_path()).expanduser()
    document = _read_document(path)
    name = context or document.get("current-context")
    if not isinstance(name, str):
        raise ConfigError(f"{path}: no current-context")
    ctx = _named(document.get("contexts"), name, "context", path)
    cluster = _named(document.get("clusters"), str(ctx.get("cluster")), "cluster", path)
    user = _named(document.get("users"), str(ctx.get("user")), "user", path)
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise ConfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    token = user.get("token")
    return ClientConfig(
        server=server,
        token=token if isinstance(token, str) and token else None,
        token_file=_relative(user.get("token-file"), path),
        ca_file=_relative(cluster.get("certificate-authority"), path),
    )


def contexts(path: Path | None = None) -> tuple[builtins.list[Context], str | None]:
    """Every context of the client config and the name of the current one; a missing file
    has none."""
    path = (path or client_config_path()).expanduser()
    if not path.exists():
        return [], None
    document = _read_document(path)
    found: builtins.list[Context] = []
    for entry in document.get("contexts") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        ctx = entry.get("context")
        if not isinstance(ctx, dict):
            ctx = {}
        cluster = _optional(document.get("clusters"), ctx.get("cluster"), "cluster")
        user = _optional(document.get("users"), ctx.get("user"), "user")
        server = cluster.get("server")
        state_dir = _relative(ctx.get("state-dir"), path)
        if state_dir is None and entry["name"] == SERVER_CONTEXT and _is_state_dir(path.parent):
            # Written by the API server into its own state directory's config (the default
            # ~/.capstan/config is one): that context is this directory's capstan up.
            state_dir = path.parent
        found.append(
            Context(
                name=entry["name"],
                state_dir=state_dir,
                server=server if isinstance(server, str) and server else None,
                token_file=_relative(user.get("token-file"), path),
                ca_file=_relative(cluster.get("certificate-authority"), path),
            )
        )
    current = document.get("current-context")
    return found, current if isinstance(current, str) and current else None


def _is_state_dir(directory: Path) -> bool:
    return (directory / RUN_INFO_FILE).exists() or (directory / "state.db").exists()


def _optional(entries: Any, name: Any, section: str) -> dict[str, Any]:
    if not isinstance(name, str):
        return {}
    try:
        return _named(entries, name, section, Path())
    except ConfigError:
        return {}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the config file between processes (two ``capstan
    up`` starting together must not drop each other's context)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = open_private(path.with_name(f".{path.name}.lock"))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _upsert(entries: Any, name: str, section: str, value: dict[str, str]) -> list[Any]:
    """``entries`` (a kubeconfig list) with the entry ``name`` replaced by ``value``."""
    if entries is not None and not isinstance(entries, list):
        raise ConfigError(f"the {section}s of the client config must be a list")
    kept = [e for e in entries or [] if not (isinstance(e, dict) and e.get("name") == name)]
    return [*kept, {"name": name, section: value}]


def write_config(
    path: Path,
    config: ClientConfig | None,
    *,
    name: str = SERVER_CONTEXT,
    state_dir: Path | None = None,
    make_current: bool = True,
) -> None:
    """Record context ``name`` (``config``'s server and credentials, ``state_dir``) in the
    kubeconfig-like file at ``path``, replacing a context of that name and keeping every
    other one; 0600 (it may hold a token). ``make_current``: switch to it."""
    path = path.expanduser()
    user: dict[str, str] = {}
    cluster: dict[str, str] = {}
    if config is not None:
        if config.token:
            user["token"] = config.token
        if config.token_file is not None:
            user["token-file"] = str(config.token_file)
        cluster["server"] = config.server
        if config.ca_file is not None:
            cluster["certificate-authority"] = str(config.ca_file)
    context: dict[str, str] = {"cluster": name, "user": name}
    if state_dir is not None:
        context["state-dir"] = str(state_dir)
    with _locked(path):
        document = _read_document(path) if path.exists() else {}
        document = {
            "apiVersion": "capstan.io/v1",
            "kind": "Config",
            "current-context": name if make_current else document.get("current-context", name),
            "clusters": _upsert(document.get("clusters"), name, "cluster", cluster),
            "users": _upsert(document.get("users"), name, "user", user),
            "contexts": _upsert(document.get("contexts"), name, "context", context),
        }
        _replace(path, document)


def use_context(name: str, path: Path | None = None) -> None:
    """Make ``name`` the current context; ConfigError when there is no such context."""
    path = (path or client_config_path()).expanduser()
    with _locked(path):
        if not path.exists():
            raise ConfigError(f"no context named {name!r}: {path} does not exist")
        document = _read_document(path)
        names = [e.get("name") for e in document.get("contexts") or [] if isinstance(e, dict)]
        if name not in names:
            known = ", ".join(str(n) for n in names) or "none"
            raise ConfigError(f"no context named {name!r} in {path} (contexts: {known})")
        document["current-context"] = name
        _replace(path, document)


def _replace(path: Path, document: dict[str, Any]) -> None:
    # Replaced atomically (readers never see a half-written file), 0600: it may hold a token.
    write_private(path, yaml.safe_dump(document, sort_keys=False).encode("utf-8"))
