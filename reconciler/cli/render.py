"""``capstan render PATH [--env ENV] [-o yaml|json]``: the objects exactly as Capstan sees them.

Templates rendered, defaults filled in (replicas, probe periods, namespace
``default``, ...), in apply order. Secret values are masked unless
``--show-secrets`` is given, so the output can be pasted into a review.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from reconciler.cli._common import env_option, load_or_exit, repository_argument
from reconciler.source import LoadedObject

__all__ = ["render"]

MASK = "***"
_SECRET_FIELDS = ("data", "stringData")


class _ManifestDumper(yaml.SafeDumper):
    """Writes multi-line strings (pages, scripts, configs) as ``|`` blocks, as people write them."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


@click.command()
@repository_argument
@env_option
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="yaml: one document per object; json: a v1 List.",
)
@click.option("--show-secrets", is_flag=True, help="Print Secret values instead of masking them.")
def render(path: Path, env: str | None, output: str, show_secrets: bool) -> None:
    """Print the rendered, defaulted objects of the repository at PATH."""
    repository = load_or_exit(path, env=env, json_output=output == "json")
    manifests = [_manifest(item, show_secrets=show_secrets) for item in repository.objects]
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}, indent=2))
        return
    documents = [
        f"# Source: {item.source}\n" + yaml.dump(manifest, Dumper=_ManifestDumper, sort_keys=False)
        for item, manifest in zip(repository.objects, manifests, strict=True)
    ]
    click.echo("---\n".join(documents), nl=False)


def _manifest(item: LoadedObject, *, show_secrets: bool) -> dict[str, Any]:
    manifest = item.obj.to_dict()
    if item.obj.kind == "Secret" and not show_secrets:
        for field in _SECRET_FIELDS:
            values = manifest.get(field)
            if isinstance(values, dict):
                manifest[field] = dict.fromkeys(values, MASK)
    return manifest
