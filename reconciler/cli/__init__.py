"""The `capstan` command line: the user's side of every step of the data flow.

Offers `main` (the console script) and `cli` (the click group, for
`click.testing.CliRunner` and for later commands to extend). Today:
`capstan validate` and `capstan render` (Git source → objects).
"""

from reconciler.cli._app import cli, main

__all__ = ["cli", "main"]
