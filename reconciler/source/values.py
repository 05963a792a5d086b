"""The values templates see: ``values.yaml``, overlaid by ``environments/<env>.yaml``.

Called by the loader before any template is rendered. Mappings merge
recursively (the environment wins key by key); any other value — a list, a
string — is replaced whole, as Helm does with ``-f`` overlays.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.source._fs import (
    ENVIRONMENTS_DIR,
    VALUES_FILE,
    RepositoryPathError,
    is_inside,
    read_inside,
)
from reconciler.source.errors import ManifestError, ManifestErrors, SourceLocation
from reconciler.source.yamlpos import LoadBudget, load_documents

__all__ = ["available_environments", "deep_merge", "load_values"]

_ENV_SUFFIX = ".yaml"


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``base`` with ``overlay`` merged in, recursively for nested mappings."""
    merged: dict[str, Any] = dict(base)
    for key, value in overlay.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def available_environments(root: Path) -> list[str]:
    """Names of the ``environments/*.yaml`` files, sorted; empty if there is no such directory."""
    root_real = Path(root).resolve()
    directory = root_real / ENVIRONMENTS_DIR
    real_dir = Path(os.path.realpath(directory))
    if not is_inside(real_dir, root_real) or not real_dir.is_dir():
        return []
    return sorted(
        entry.name[: -len(_ENV_SUFFIX)]
        for entry in os.scandir(real_dir)
        if entry.name.endswith(_ENV_SUFFIX) and not entry.name.startswith((".", "_"))
    )


def load_values(
    root_real: Path, *, env: str | None, budget: LoadBudget | None = None
) -> dict[str, Any]:
    """The merged values for ``env`` (None: ``values.yaml`` alone). Raises ManifestErrors.

    ``budget`` is the commit's (see ``yamlpos.LoadBudget``); values files count
    against it like manifests.
    """
    errors: list[ManifestError] = []
    budget = budget if budget is not None else LoadBudget()
    values = _load_file(root_real, VALUES_FILE, errors=errors, required=False, budget=budget)
    if env is not None:
        names = available_environments(root_real)
        if env not in names:
            listed = ", ".join(names) if names else f"none ({ENVIRONMENTS_DIR}/ has no *.yaml)"
            errors.append(
                ManifestError(
                    SourceLocation(f"{ENVIRONMENTS_DIR}/"),
                    f"unknown environment {env!r}; available: {listed}",
                )
            )
        else:
            overlay = _load_file(
                root_real,
                f"{ENVIRONMENTS_DIR}/{env}{_ENV_SUFFIX}",
                errors=errors,
                required=True,
                budget=budget,
            )
            values = deep_merge(values, overlay)
    if errors:
        raise ManifestErrors(errors)
    return values


def _load_file(
    root_real: Path,
    name: str,
    *,
    errors: list[ManifestError],
    required: bool,
    budget: LoadBudget,
) -> dict[str, Any]:
    path = root_real / name
    if not os.path.lexists(path):
        if required:
            errors.append(ManifestError(SourceLocation(name), "no such file"))
        return {}
    try:
        text = read_inside(root_real, Path(os.path.realpath(path)))
    except RepositoryPathError as exc:
        errors.append(ManifestError(SourceLocation(name), str(exc)))
        return {}
    documents, problems = load_documents(text, file=name, budget=budget)
    errors.extend(problems)
    if problems:
        return {}
    if len(documents) > 1:
        errors.append(
            ManifestError(documents[1].location(), "a values file holds a single YAML document")
        )
        return {}
    if not documents:
        return {}
    data = documents[0].data
    if not isinstance(data, dict):
        errors.append(
            ManifestError(documents[0].location(), f"values must be a mapping, not {_kind(data)}")
        )
        return {}
    return data


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__
