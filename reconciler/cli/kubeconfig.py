"""``capstan kubeconfig``: a real kubeconfig for the API that ``capstan up --listen`` serves,
so ``kubectl`` and the official Kubernetes clients connect as they would to Kubernetes.

The source is the client config ``capstan up`` writes into its state directory
(``<state-dir>/config``: server URL, CA file, admin token file). The kubeconfig carries the
CA's certificate inline (``certificate-authority-data``) and the token itself, so the file
works as is on another machine. ``capstan up`` also writes it to ``<state-dir>/kubeconfig``
(mode 0600: it holds the admin token) via :func:`write_kubeconfig`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

from reconciler.client import ClientConfig, ConfigError, load_config
from reconciler.runinfo import CLIENT_CONFIG_FILE, default_state_dir

__all__ = ["KUBECONFIG_FILE", "kubeconfig", "kubeconfig_document", "write_kubeconfig"]

KUBECONFIG_FILE = "kubeconfig"


def kubeconfig_document(
    config: ClientConfig, *, name: str = "capstan", namespace: str = "default"
) -> dict[str, Any]:
    """A ``v1 Config`` with one cluster, one user and one context, all called ``name``."""
    cluster: dict[str, Any] = {"server": config.server}
    if config.ca_file is not None:
        try:
            ca = config.ca_file.expanduser().read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the CA certificate {config.ca_file}: {exc}") from exc
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode("ascii")
    user: dict[str, Any] = {}
    token = config.bearer_token()
    if token:
        user["token"] = token
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "current-context": name,
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
        ],
    }


def _render(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False)


def write_kubeconfig(state_dir: Path, *, say: Callable[[str], None] | None = None) -> Path | None:
    """Write ``<state_dir>/kubeconfig`` from the client config ``capstan up`` wrote there
    (mode 0600); None when there is none (``capstan up`` without ``--listen``)."""
    source = state_dir / CLIENT_CONFIG_FILE
    if not source.exists():
        return None
    text = _render(kubeconfig_document(load_config(source)))
    target = state_dir / KUBECONFIG_FILE
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, target)
    if say is not None:
        say(f"kubectl: export KUBECONFIG={target}")
    return target


@click.command("kubeconfig")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="State directory of the running `capstan up` (default: $CAPSTAN_STATE_DIR or ~/.capstan).",
)
@click.option(
    "--name",
    default="capstan",
    show_default=True,
    help="Name of the cluster, user and context in the kubeconfig.",
)
@click.option(
    "--namespace",
    "-n",
    default="default",
    show_default=True,
    help="The context's default namespace.",
)
def kubeconfig(state_dir: Path | None, name: str, namespace: str) -> None:
    """Print a kubeconfig for kubectl: the API server of `capstan up --listen`, its CA and
    the admin token. Use: capstan kubeconfig > ~/.kube/capstan; KUBECONFIG=~/.kube/capstan."""
    directory = (state_dir or default_state_dir()).expanduser()
    source = directory / CLIENT_CONFIG_FILE
    if not source.exists():
        raise click.ClickException(
            f"no API server config in {directory} ({CLIENT_CONFIG_FILE} is missing): start "
            "`capstan up REPO --listen 127.0.0.1:6443` first (or pass --state-dir)"
        )
    try:
        document = kubeconfig_document(load_config(source), name=name, namespace=namespace)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(_render(document), nl=False)
