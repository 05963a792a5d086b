"""``capstan node ...``: commands that talk to a node directly, before or outside a sync
(``keyscan``), and that take a node out of service (``cordon``, ``uncordon``, ``drain``: see
``reconciler.cli.drain``)."""

from __future__ import annotations

import click

from reconciler.cli.drain import cordon_command, drain_command, uncordon_command
from reconciler.nodes import KeyscanError, keyscan


@click.group("node")
def node() -> None:
    """Work with nodes."""


@node.command("keyscan")
@click.argument("address")
@click.option("--port", type=int, default=22, show_default=True, help="sshd port on the node.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait.")
def keyscan_command(address: str, port: int, timeout: float) -> None:
    """Print the spec.hostKey line for ADDRESS and its SHA256 fingerprint.

    Compare the fingerprint with the node's own (ssh-keygen -lf on its console) before
    pasting the line into the Node manifest.
    """
    try:
        scanned = keyscan(address, port=port, timeout=timeout)
    except KeyscanError as exc:
        raise click.ClickException(f"cannot read the host key: {exc}") from exc
    click.echo(scanned.manifest_line())
    click.echo(f"# {scanned.fingerprint}")


node.add_command(cordon_command)
node.add_command(uncordon_command)
node.add_command(drain_command)
