"""``capstan schema [KIND]``: the fields Capstan reads, as JSON Schema (what validate checks).

Without KIND, lists the supported kinds; with one (``Deployment``, ``clusterrole``), prints
its JSON Schema. The loader's messages about fields Capstan does not read point here.
"""

from __future__ import annotations

import click

from schemas import SUPPORTED_KINDS
from schemas.export import schema_text

__all__ = ["schema"]


@click.command()
@click.argument("kind", required=False)
def schema(kind: str | None) -> None:
    """Print the JSON Schema of KIND (every field Capstan reads), or list the kinds."""
    if kind is None:
        for api_version, name in SUPPORTED_KINDS:
            click.echo(f"{name}\t{api_version}")
        return
    for api_version, name in SUPPORTED_KINDS:
        if name.lower() == kind.lower():
            click.echo(schema_text(api_version, name), nl=False)
            return
    known = ", ".join(name for _, name in SUPPORTED_KINDS)
    raise click.BadParameter(f"unknown kind {kind!r}; supported: {known}", param_hint="KIND")
