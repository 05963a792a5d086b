"""Opening a commit's sealed Secrets with the control plane's identities: the sync's hook.

Called by the sync loop right after a commit loads (``reconciler.sync.loop``), so a Secret no
identity opens makes the commit invalid as a whole (last good commit stays live), with the
file:line of the Secret and the key at fault. ``validate`` and ``plan`` never call it: without
the key they compare sealed values by ciphertext digest (``reconciler.diff``).
"""

from __future__ import annotations

import dataclasses

import yaml

from reconciler.secrets._age import AgeError, Identities
from reconciler.secrets._manifest import open_secret
from reconciler.source import (
    LoadedObject,
    LoadedRepository,
    ManifestError,
    ManifestErrors,
    SourceLocation,
)
from schemas import Secret
from schemas.sealed import ENCRYPTED_ANNOTATION

__all__ = [
    "REPO_OPTIONS_FILE",
    "open_repository",
    "plain_secret_errors",
    "plain_secrets",
    "requires_encryption",
]

#: Repository options at the repository root; ``requireEncryptedSecrets: true`` forbids
#: plaintext Secrets in every commit.
REPO_OPTIONS_FILE = ".capstan.yaml"
_REQUIRE_OPTION = "requireEncryptedSecrets"


def open_repository(repo: LoadedRepository, identities: Identities) -> LoadedRepository:
    """``repo`` with every sealed Secret opened; ManifestErrors (every failure, and every
    plaintext Secret when the repository requires encryption) if any fails."""
    objects: list[LoadedObject] = []
    errors: list[ManifestError] = plain_secret_errors(repo) if requires_encryption(repo) else []
    for loaded in repo.objects:
        obj = loaded.obj
        if not isinstance(obj, Secret) or ENCRYPTED_ANNOTATION not in obj.metadata.annotations:
            objects.append(loaded)
            continue
        try:
            opened, _ = open_secret(obj, identities)
        except AgeError as exc:
            errors.extend(
                ManifestError(
                    loaded.source, f"Secret {obj.namespace}/{obj.name}: {message}", field_path=path
                )
                for path, message in exc.args
            )
            continue
        objects.append(dataclasses.replace(loaded, obj=opened))
    if errors:
        raise ManifestErrors(errors, root=repo.root)
    return dataclasses.replace(repo, objects=objects)


def plain_secrets(repo: LoadedRepository) -> list[LoadedObject]:
    """The Secrets of ``repo`` kept in plaintext in Git (``validate`` warns about each)."""
    return [
        loaded
        for loaded in repo.objects
        if isinstance(loaded.obj, Secret)
        and ENCRYPTED_ANNOTATION not in loaded.obj.metadata.annotations
        and (loaded.obj.data or loaded.obj.string_data)
    ]


def plain_secret_errors(repo: LoadedRepository) -> list[ManifestError]:
    """One error per plaintext Secret (when encryption is required)."""
    return [
        ManifestError(
            loaded.source,
            f"Secret {loaded.obj.namespace}/{loaded.obj.name} is in plaintext and this "
            "repository requires encrypted Secrets; seal it with `capstan secret encrypt -i`",
        )
        for loaded in plain_secrets(repo)
    ]


def requires_encryption(repo: LoadedRepository) -> bool:
    """Whether the repository's ``.capstan.yaml`` sets ``requireEncryptedSecrets: true``."""
    path = repo.root / REPO_OPTIONS_FILE
    try:
        options = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return False
    except (OSError, yaml.YAMLError):
        raise ManifestErrors(
            [ManifestError(SourceLocation(REPO_OPTIONS_FILE), "cannot be read as YAML")],
            root=repo.root,
        ) from None
    if options is None:
        return False
    value = options.get(_REQUIRE_OPTION, False) if isinstance(options, dict) else None
    if not isinstance(value, bool):
        raise ManifestErrors(
            [
                ManifestError(
                    SourceLocation(REPO_OPTIONS_FILE),
                    "must be true or false",
                    field_path=_REQUIRE_OPTION,
                )
            ],
            root=repo.root,
        )
    return value
