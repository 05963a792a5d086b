"""The ``capstan`` command group; each subcommand lives in its own module of this package.

Later commands (``up``, ``plan``, ``status``, ``get``, ...) are added here with
``cli.add_command``, so ``capstan --help`` lists them in one place.
"""

from __future__ import annotations

import click

from reconciler.cli.config import config
from reconciler.cli.history import history
from reconciler.cli.inspect import describe, events, get
from reconciler.cli.kubeconfig import kubeconfig
from reconciler.cli.logs import logs
from reconciler.cli.node import node
from reconciler.cli.plan import plan
from reconciler.cli.render import render
from reconciler.cli.rollback import rollback
from reconciler.cli.schema import schema
from reconciler.cli.secret import secret
from reconciler.cli.snapshot import snapshot
from reconciler.cli.status import status
from reconciler.cli.syncctl import sync
from reconciler.cli.up import up
from reconciler.cli.validate import validate

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="capstan", prog_name="capstan")
def cli() -> None:
    """Capstan: a GitOps container orchestrator. Git holds the truth; Capstan converges to it."""


cli.add_command(validate)
cli.add_command(schema)
cli.add_command(render)
cli.add_command(node)
cli.add_command(up)
cli.add_command(plan)
cli.add_command(history)
cli.add_command(rollback)
cli.add_command(snapshot)
cli.add_command(status)
cli.add_command(get)
cli.add_command(describe)
cli.add_command(logs)
cli.add_command(events)
cli.add_command(sync)
cli.add_command(config)
cli.add_command(kubeconfig)
cli.add_command(secret)


def main() -> None:
    """Console-script entry point (``capstan``)."""
    cli()
