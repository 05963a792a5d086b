"""Git as the source of truth: from a repository directory to validated objects.

The data flow's first step — fetch → render → load → validate, all or
nothing. This package offers the loader side:

- `load_repository(root, *, env=None, subdir=None) -> LoadedRepository`:
  every object of the repository with its `SourceLocation`, or
  `ManifestErrors` listing every problem (file:line:column, field path);
- `ManifestError`, `ManifestErrors`, `SourceLocation`: what errors say;
- `available_environments(root)`: the names `--env` accepts.

Modules: `yamlpos` (safe YAML with positions), `render` (sandboxed Jinja2),
`values` (values files), `load` (the pipeline). Fetching and watching Git
(the sync loop's input) live beside them in their own modules.
"""

from reconciler.source.errors import ManifestError, ManifestErrors, SourceLocation
from reconciler.source.load import (
    DEFAULT_NAMESPACE,
    LoadedObject,
    LoadedRepository,
    load_repository,
)
from reconciler.source.values import available_environments

__all__ = [
    "DEFAULT_NAMESPACE",
    "LoadedObject",
    "LoadedRepository",
    "ManifestError",
    "ManifestErrors",
    "SourceLocation",
    "available_environments",
    "load_repository",
]
