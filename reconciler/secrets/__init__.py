"""Secrets that can live in Git (age) and Secret values encrypted at rest (docs/secrets.md).

Offers:

- identities and recipients: ``load_identities``, ``generate_identity``, ``parse_recipients``,
  ``find_recipients_file``, ``read_recipients_file``, ``Identities``, ``AgeError``;
- manifest files (``capstan secret``): ``load_documents``, ``dump_documents``, ``seal_document``,
  ``open_document``, ``plaintexts``;
- the sync's hook: ``open_repository`` (a commit's sealed Secrets opened, or the commit
  refused whole), ``plain_secrets`` / ``plain_secret_errors`` / ``requires_encryption`` for
  ``validate``'s warning and the repository option that forbids plaintext Secrets.

Sits between ``reconciler.source`` (what it opens) and ``reconciler.sync`` / ``reconciler.cli``
(who call it); it never touches the store.
"""

from reconciler.secrets._age import (
    RECIPIENTS_FILE,
    AgeError,
    Identities,
    find_recipients_file,
    generate_identity,
    load_identities,
    parse_recipients,
    read_recipients_file,
    seal_value,
)
from reconciler.secrets._manifest import (
    dump_documents,
    load_documents,
    open_document,
    open_secret,
    plaintexts,
    seal_document,
)
from reconciler.secrets._open import (
    REPO_OPTIONS_FILE,
    open_repository,
    plain_secret_errors,
    plain_secrets,
    requires_encryption,
)

__all__ = [
    "RECIPIENTS_FILE",
    "REPO_OPTIONS_FILE",
    "AgeError",
    "Identities",
    "dump_documents",
    "find_recipients_file",
    "generate_identity",
    "load_documents",
    "load_identities",
    "open_document",
    "open_repository",
    "open_secret",
    "parse_recipients",
    "plain_secret_errors",
    "plain_secrets",
    "plaintexts",
    "read_recipients_file",
    "requires_encryption",
    "seal_document",
    "seal_value",
]
