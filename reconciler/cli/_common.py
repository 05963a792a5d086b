"""Options and error output shared by the commands that read a repository.

``validate``, ``render`` and ``plan`` take the same repository argument and ``--env``;
``validate`` and ``render`` report ``ManifestErrors`` the same way: one error per line on
stderr (control characters in file names and keys escaped, so each stays one line), or
as JSON on stdout for programs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from reconciler.display import one_line
from reconciler.secrets import plain_secret_errors, plain_secrets, requires_encryption
from reconciler.source import LoadedRepository, ManifestErrors, load_repository

__all__ = ["EXIT_INVALID", "env_option", "load_or_exit", "repository_argument"]

EXIT_INVALID = 1

F = TypeVar("F", bound=Callable[..., Any])


def repository_argument(function: F) -> F:
    return click.argument(
        "path",
        default=".",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
    )(function)


def env_option(function: F) -> F:
    return click.option(
        "--env",
        "-e",
        metavar="ENV",
        default=None,
        help="Overlay values.yaml with environments/ENV.yaml.",
    )(function)


def load_or_exit(
    path: Path, *, env: str | None, json_output: bool, subdir: str | None = None
) -> LoadedRepository:
    """The loaded repository (only ``subdir`` of it, if given: a Kustomize overlay, an app
    folder); on ManifestErrors, prints every error and exits 1."""
    try:
        return load_repository(path, env=env, subdir=subdir)
    except ManifestErrors as exc:
        _report(exc, path=path, json_output=json_output)


def check_secrets_or_exit(
    repository: LoadedRepository, *, path: Path, json_output: bool, require: bool
) -> LoadedRepository:
    """Plaintext Secrets: a warning each on stderr, or errors (exit 1) when ``require`` or
    the repository's ``.capstan.yaml`` asks for encrypted Secrets. Never opens a value."""
    try:
        required = require or requires_encryption(repository)
    except ManifestErrors as exc:
        _report(exc, path=path, json_output=json_output)
    errors = plain_secret_errors(repository)
    if errors and required:
        _report(ManifestErrors(errors, root=path), path=path, json_output=json_output)
    for loaded in plain_secrets(repository):
        click.echo(
            one_line(
                f"warning: {loaded.source.display(path)}: Secret {loaded.obj.namespace}/"
                f"{loaded.obj.name} is in plaintext in Git; seal it with `capstan secret encrypt "
                "-i` (docs/secrets.md)"
            ),
            err=True,
        )
    return repository


def _report(exc: ManifestErrors, *, path: Path, json_output: bool) -> NoReturn:
    if json_output:
        document = {
            "valid": False,
            "root": str(path),
            "errors": [error.to_dict() for error in exc.errors],
        }
        click.echo(json.dumps(document, indent=2))
    else:
        # A file name or a YAML key may hold a newline: each error stays one line, so a
        # commit cannot forge lines of this report.
        for line in exc.lines():
            click.echo(one_line(line), err=True)
        count = len(exc.errors)
        click.echo(
            one_line(f"{path}: {count} {'error' if count == 1 else 'errors'}, nothing is valid"),
            err=True,
        )
    raise SystemExit(EXIT_INVALID)
