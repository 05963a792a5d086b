"""Git as the source of truth: from a repository directory to validated objects.

The data flow's first step — fetch → render → load → validate, all or
nothing. This package offers the loader side:

- ``load_repository(root, *, env=None, subdir=None) -> LoadedRepository``:
  every object of the repository with its ``SourceLocation``, or
  ``ManifestErrors`` listing every problem (file:line:column, field path);
- ``ManifestError``, ``ManifestErrors``, ``SourceLocation``: what errors say;
- ``available_environments(root)``: the names ``--env`` accepts.

Modules: ``yamlpos`` (safe YAML with positions), ``render`` (sandboxed Jinja2),
``values`` (values files), ``load`` (the pipeline). Fetching and watching Git
(the sync loop's input) live beside them:

- ``GitSource(url_or_path, *, branch, cache_dir, credentials)`` (``git``): fetch into
  a bare cache, ``head()``, ``resolve(ref)``, ``snapshot(sha)`` (a read-only export of
  one commit), ``revert(shas, *, message)``, ``push()``; ``CommitInfo``, ``GitSourceError``;
- ``GitCredentials`` (``credentials``): token (askpass) or SSH key, from the
  environment (``CAPSTAN_GIT_*``) or a file; never in a URL or a message;
- ``BranchWatch`` (``watch``): watchdog on a local repository's refs, polling with
  jitter for a remote, ``trigger()``;
- ``verify_webhook(headers, body, *, secret) -> WebhookVerdict`` (``webhook``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.source.credentials import GitCredentials
    from reconciler.source.errors import ManifestError, ManifestErrors, SourceLocation
    from reconciler.source.git import CommitInfo, CommitSha, GitSource, GitSourceError
    from reconciler.source.load import (
        DEFAULT_NAMESPACE,
        LoadedObject,
        LoadedRepository,
        load_repository,
    )
    from reconciler.source.values import available_environments
    from reconciler.source.watch import BranchWatch
    from reconciler.source.webhook import WebhookVerdict, verify_webhook

# Imported on first use: the template renderer's child process imports
# `reconciler.source._renderjail` and must not pay for Git, pydantic and the
# schemas (about a second) each time a commit is rendered.
_WHERE = {
    "GitCredentials": "credentials",
    "ManifestError": "errors",
    "ManifestErrors": "errors",
    "SourceLocation": "errors",
    "CommitInfo": "git",
    "CommitSha": "git",
    "GitSource": "git",
    "GitSourceError": "git",
    "DEFAULT_NAMESPACE": "load",
    "LoadedObject": "load",
    "LoadedRepository": "load",
    "load_repository": "load",
    "available_environments": "values",
    "BranchWatch": "watch",
    "WebhookVerdict": "webhook",
    "verify_webhook": "webhook",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "DEFAULT_NAMESPACE",
    "BranchWatch",
    "CommitInfo",
    "CommitSha",
    "GitCredentials",
    "GitSource",
    "GitSourceError",
    "LoadedObject",
    "LoadedRepository",
    "ManifestError",
    "ManifestErrors",
    "SourceLocation",
    "WebhookVerdict",
    "available_environments",
    "load_repository",
    "verify_webhook",
]
