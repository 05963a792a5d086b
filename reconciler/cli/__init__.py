"""The ``capstan`` command line: the user's side of every step of the data flow.

Offers ``main`` (the console script) and ``cli`` (the click group, for
``click.testing.CliRunner``). The commands are in ``reconciler.cli._app``: validating and
rendering a repository, ``capstan up``, planning and syncing, rollback and history, status,
kubectl-style reads, nodes, secrets and logs.
"""

from reconciler.cli._app import cli, main

__all__ = ["cli", "main"]
