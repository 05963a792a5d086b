"""``capstan secret keygen|encrypt|decrypt|edit|rotate``: age-sealed Secrets for Git.

People and CI call these on manifest files; the control plane opens the values at sync with
its own identity (``capstan up --age-identity``). Plaintext goes only to stdout (``decrypt``) or a
0600 temporary file that ``edit`` removes; it never goes to an error message. docs/secrets.md
describes the format.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from pyrage import x25519

from reconciler.api import DATA_KEYS_FILE
from reconciler.runinfo import default_state_dir
from reconciler.secrets import (
    RECIPIENTS_FILE,
    AgeError,
    Identities,
    dump_documents,
    find_recipients_file,
    generate_identity,
    load_documents,
    load_identities,
    open_document,
    parse_recipients,
    plaintexts,
    read_recipients_file,
    seal_document,
)
from schemas.datakeys import DataKeyError, DataKeys

__all__ = ["secret"]

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
_IDENTITY_ENV = "CAPSTAN_AGE_IDENTITY"
_file_argument = click.argument(
    "file", type=click.Path(path_type=Path, dir_okay=False, exists=True)
)


def _identity_option(*, required: bool) -> Callable[[F], F]:
    return click.option(
        "--identity",
        "identities",
        multiple=True,
        required=required,
        type=click.Path(path_type=Path, dir_okay=False),
        metavar="FILE",
        envvar=_IDENTITY_ENV,
        help="An age identity file (mode 0600; repeatable; default $CAPSTAN_AGE_IDENTITY).",
    )


_recipient_option = click.option(
    "-r",
    "--recipient",
    "recipients",
    multiple=True,
    metavar="RECIPIENT",
    help=f"An age1... recipient (repeatable); default: the nearest {RECIPIENTS_FILE} "
    "in FILE's directory or above.",
)


@click.group()
def secret() -> None:
    """Seal Secret values with age so they can live in Git (docs/secrets.md)."""


@secret.command()
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Where to write the new identity (created with mode 0600).",
)
def keygen(output: Path) -> None:
    """Write a new age identity to FILE and print its recipient (age1...)."""
    try:
        recipient = generate_identity(output)
    except FileExistsError:
        raise click.ClickException(f"{output} exists; refusing to overwrite an identity") from None
    except OSError as exc:
        raise click.ClickException(f"{output}: {exc.strerror}") from None
    click.echo(recipient)


@secret.command()
@_recipient_option
@click.option("-i", "--in-place", is_flag=True, help="Rewrite FILE instead of printing.")
@_file_argument
def encrypt(recipients: tuple[str, ...], in_place: bool, file: Path) -> None:
    """Seal every plain value of the Secrets in FILE (data and stringData, one age
    message per key); values already sealed stay as they are."""
    docs = _read(file)
    keys = _recipients(recipients, file)
    _write(file, [_guard(seal_document, doc, keys) for doc in docs], in_place=in_place)


@secret.command()
@_identity_option(required=True)
@_file_argument
def decrypt(identities: tuple[Path, ...], file: Path) -> None:
    """Print FILE with its Secrets' values opened (for people; never commit the output)."""
    ids = _identities(identities)
    docs = _read(file)
    click.echo(dump_documents([_guard(open_document, doc, ids) for doc in docs]), nl=False)


@secret.command()
@_identity_option(required=True)
@_recipient_option
@_file_argument
def edit(identities: tuple[Path, ...], recipients: tuple[str, ...], file: Path) -> None:
    """Open FILE's Secrets in $EDITOR; seal again only the values that changed."""
    ids = _identities(identities)
    docs = _read(file)
    keys = _recipients(recipients, file)
    before = [_guard(plaintexts, doc, ids) for doc in docs]
    opened = dump_documents([_guard(open_document, doc, ids) for doc in docs])
    edited = _run_editor(opened, suffix=file.suffix or ".yaml")
    new_docs = _load_or_fail(edited, where="the edited text")
    if len(new_docs) != len(docs):
        raise click.ClickException("the edit added or removed documents; FILE left unchanged")
    out = []
    for old_doc, old_plain, new_doc in zip(docs, before, new_docs, strict=True):

        def keep(
            field: str,
            key: str,
            plain: bytes,
            old_doc: Any = old_doc,
            old_plain: dict[tuple[str, str], bytes] = old_plain,
        ) -> str | None:
            if old_plain.get((field, key)) == plain:
                return str(old_doc[field][key])
            return None

        out.append(
            _guard(seal_document, new_doc, keys, keep=keep) if _was_sealed(old_doc) else new_doc
        )
    _write(file, out, in_place=True)


@secret.command()
@_identity_option(required=True)
@_recipient_option
@_file_argument
def rotate(identities: tuple[Path, ...], recipients: tuple[str, ...], file: Path) -> None:
    """Seal FILE's Secrets again, in place, for a new recipient list (opened with
    --identity, default $CAPSTAN_AGE_IDENTITY)."""
    ids = _identities(identities)
    docs = _read(file)
    keys = _recipients(recipients, file)
    out = [
        _guard(seal_document, _guard(open_document, doc, ids), keys) if _was_sealed(doc) else doc
        for doc in docs
    ]
    _write(file, out, in_place=True)


@secret.command("rotate-data-key")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The capstan up state directory (default: $CAPSTAN_STATE_DIR or ~/.capstan).",
)
def rotate_data_key(state_dir: Path | None) -> None:
    """Put a new data key first in <state-dir>/data-keys: Secrets are sealed at rest with it
    after the next `capstan up` start; older keys still open what they sealed."""
    path = (state_dir or default_state_dir()).expanduser() / DATA_KEYS_FILE
    if not path.exists():
        raise click.ClickException(f"{path} does not exist (capstan up makes it)")
    try:
        rotated = DataKeys.rotate(path)
    except DataKeyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{path}: {rotated.writer} now seals new writes "
        f"({len(rotated.keys)} keys); restart capstan up to use it"
    )


def _was_sealed(doc: Any) -> bool:
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return isinstance(annotations, dict) and "capstan.io/encrypted" in annotations


def _guard(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return function(*args, **kwargs)
    except AgeError as exc:
        raise click.ClickException(str(exc)) from None


def _load_or_fail(text: str, *, where: str) -> list[Any]:
    return _guard(load_documents, text, where=where)


def _read(file: Path) -> list[Any]:
    return _load_or_fail(file.read_text(), where=str(file))


def _identities(paths: Sequence[Path]) -> Identities:
    return _guard(load_identities, paths)


def _recipients(given: Sequence[str], file: Path) -> tuple[x25519.Recipient, ...]:
    if given:
        return _guard(parse_recipients, given)
    found = find_recipients_file(file.parent)
    if found is None:
        raise click.ClickException(
            f"no recipient: give -r age1... or put a {RECIPIENTS_FILE} file in "
            f"{file.parent} or above"
        )
    return _guard(read_recipients_file, found)


def _write(file: Path, docs: Sequence[Any], *, in_place: bool) -> None:
    text = dump_documents(docs)
    if not in_place:
        click.echo(text, nl=False)
        return
    # Replace atomically: a crash never leaves a half-written manifest.
    tmp = file.with_name(f".{file.name}.capstan-tmp")
    tmp.write_text(text)
    os.replace(tmp, file)


def _run_editor(text: str, *, suffix: str) -> str:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    fd, name = tempfile.mkstemp(prefix="capstan-secret-", suffix=suffix)
    path = Path(name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        done = subprocess.run([*shlex.split(editor), str(path)], check=False)
        if done.returncode != 0:
            raise click.ClickException(
                f"{editor} exited with {done.returncode}; FILE left unchanged"
            )
        return path.read_text()
    finally:
        path.unlink(missing_ok=True)
