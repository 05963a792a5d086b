"""``capstan config``: the contexts of the client config, as ``kubectl config`` shows them.

Every ``capstan up`` records itself in the client config (``$CAPSTAN_CONFIG``, else
``~/.capstan/config``; ``reconciler.client``) and becomes the current context; the other
commands use the current context when neither a flag nor ``$CAPSTAN_STATE_DIR`` says
otherwise (``reconciler.cli._target``). These subcommands list the contexts, show the
current one and switch. They read and write only that file.
"""

from __future__ import annotations

import json

import click

from reconciler.cli._table import format_table
from reconciler.client import ConfigError, Context, client_config_path, contexts, use_context
from reconciler.display import one_line

__all__ = ["config"]


@click.group("config")
def config() -> None:
    """Show and switch the contexts of the client config (~/.capstan/config)."""


def _read() -> tuple[list[Context], str | None]:
    try:
        return contexts(client_config_path())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@config.command("get-contexts")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "name", "json"]),
    default="table",
    show_default=True,
)
def get_contexts(output: str) -> None:
    """List the contexts; the current one is marked *."""
    found, current = _read()
    if output == "name":
        for context in found:
            click.echo(one_line(context.name))
        return
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "config": str(client_config_path()),
                    "currentContext": current,
                    "contexts": [
                        {
                            "name": c.name,
                            "current": c.name == current,
                            "stateDir": str(c.state_dir) if c.state_dir else None,
                            "server": c.server,
                        }
                        for c in found
                    ],
                },
                indent=2,
            )
        )
        return
    if not found:
        click.echo(f"No contexts in {client_config_path()}: `capstan up` records one.")
        return
    rows = [
        [
            "*" if c.name == current else "",
            c.name,
            c.server or "-",
            str(c.state_dir) if c.state_dir else "-",
        ]
        for c in found
    ]
    click.echo(_one_line_table(format_table(["CURRENT", "NAME", "SERVER", "STATE-DIR"], rows)))


def _one_line_table(table: str) -> str:
    return "\n".join(one_line(line) for line in table.splitlines())


@config.command("current-context")
def current_context() -> None:
    """Print the name of the current context."""
    _, current = _read()
    if current is None:
        raise click.ClickException(f"no current context in {client_config_path()}")
    click.echo(one_line(current))


@config.command("use-context")
@click.argument("name")
def use_context_command(name: str) -> None:
    """Make NAME the current context."""
    try:
        use_context(name, client_config_path())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Switched to context {one_line(name)!r}.")
