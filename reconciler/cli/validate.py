"""``capstan validate PATH [--env ENV]``: would this repository load? (CI for GitOps repos.)

Runs the same loader the sync loop runs on each commit; exit 0 with a summary
of the objects by kind and namespace (and, on stderr, a warning for each object of a kind
Capstan stores but does not act on), or exit 1 with every error.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import click

from reconciler.cli._common import (
    check_secrets_or_exit,
    env_option,
    load_or_exit,
    repository_argument,
)
from reconciler.cli._table import format_table
from reconciler.display import one_line
from reconciler.source import LoadedRepository

__all__ = ["validate"]

_MAX_NAMES_WIDTH = 60


@click.command()
@repository_argument
@env_option
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json: a document for programs (errors too go to stdout).",
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Also list the files not read as manifests, and why."
)
@click.option(
    "--path",
    "subdir",
    default=None,
    metavar="SUBDIR",
    help="Load only this folder of the repository (e.g. a Kustomize overlay: overlays/prod).",
)
@click.option(
    "--require-encrypted-secrets",
    is_flag=True,
    help="A plaintext Secret is an error, not a warning (as .capstan.yaml's "
    "requireEncryptedSecrets: true). See docs/secrets.md.",
)
def validate(
    path: Path,
    env: str | None,
    output: str,
    verbose: bool,
    subdir: str | None,
    require_encrypted_secrets: bool,
) -> None:
    """Render and validate every manifest of the repository at PATH."""
    repository = load_or_exit(path, env=env, json_output=output == "json", subdir=subdir)
    repository = check_secrets_or_exit(
        repository, path=path, json_output=output == "json", require=require_encrypted_secrets
    )
    if output == "json":
        click.echo(json.dumps(_as_json(repository), indent=2))
        return
    for warning in repository.warnings:
        click.echo(f"warning: {warning.display(path)}", err=True)
    if verbose:
        for skipped in repository.skipped:
            click.echo(f"skipped {path / skipped.name}: {skipped.reason}")
        if repository.skipped:
            click.echo()
    for item in repository.objects:
        note = getattr(type(item.obj), "NOT_ACTED_ON", "")
        if note:
            click.echo(
                f"{path}/{item.source.file}:{item.source.line}: warning: "
                f"{item.obj.kind} {item.obj.name!r}: {note}",
                err=True,
            )
    click.echo(_summary_table(repository))
    click.echo()
    env_note = f" (env {env})" if env else ""
    click.echo(
        one_line(
            f"{path}{env_note}: valid, {_plural(len(repository.objects), 'object')} "
            f"in {_plural(len(repository.files), 'file')}"
        )
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _summary_table(repository: LoadedRepository) -> str:
    # Objects arrive in apply order; the table keeps it.
    groups: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for item in repository.objects:
        groups[(item.obj.kind, item.obj.namespace or None)].append(item.obj.name)
    rows = [
        (kind, namespace, len(names), _names(names)) for (kind, namespace), names in groups.items()
    ]
    return format_table(("KIND", "NAMESPACE", "OBJECTS", "NAMES"), rows)


def _names(names: list[str]) -> str:
    text = ", ".join(names)
    if len(text) <= _MAX_NAMES_WIDTH:
        return text
    return text[: _MAX_NAMES_WIDTH - 3].rsplit(", ", 1)[0] + ", ..."


def _as_json(repository: LoadedRepository) -> dict[str, object]:
    return {
        "valid": True,
        "root": str(repository.root),
        "env": repository.env,
        "files": repository.files,
        "warnings": [warning.to_dict() for warning in repository.warnings],
        "skipped": [{"file": item.name, "reason": item.reason} for item in repository.skipped],
        "objects": [
            {
                "apiVersion": item.obj.api_version,
                "kind": item.obj.kind,
                "namespace": item.obj.namespace or None,
                "name": item.obj.name,
                "source": str(item.source),
            }
            for item in repository.objects
        ],
    }
