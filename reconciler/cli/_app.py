"""The `capstan` command group; each subcommand lives in its own module of this package.

Later commands (`up`, `plan`, `status`, `get`, ...) are added here with
`cli.add_command`, so `capstan --help` lists them in one place.
"""

from __future__ import annotations

import click

from reconciler.cli.node import node
from reconciler.cli.render import render
from reconciler.cli.validate import validate

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="capstan", prog_name="capstan")
def cli() -> None:
    """Capstan: a GitOps container orchestrator. Git holds the truth; Capstan converges to it."""


cli.add_command(validate)
cli.add_command(render)
cli.add_command(node)


def main() -> None:
    """Console-script entry point (`capstan`)."""
    cli()
