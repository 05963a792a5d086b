"""The Pod Security levels and the namespace label that picks one (no imports of other schemas).

Kept apart from :mod:`schemas.podsecurity` (the checks, which need the pod and workload
models) so that :mod:`schemas.core` can validate a Namespace's label without importing the
workload models that themselves import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, get_args

__all__ = ["DEFAULT_LEVEL", "ENFORCE_LABEL", "LEVELS", "Level", "level_problem", "namespace_level"]

Level = Literal["privileged", "baseline", "restricted"]
LEVELS: Final[tuple[Level, ...]] = get_args(Level)
ENFORCE_LABEL: Final = "pod-security.kubernetes.io/enforce"
DEFAULT_LEVEL: Final[Level] = "baseline"


def level_problem(value: str) -> str | None:
    """Why ``value`` is not a level the enforce label may hold (None when it is one)."""
    if value in LEVELS:
        return None
    return f"{value!r} is not a Pod Security level: use privileged, baseline or restricted"


def namespace_level(labels: Mapping[str, str] | None) -> Level:
    """The level a namespace with these labels enforces (``baseline`` when it says none)."""
    value = (labels or {}).get(ENFORCE_LABEL)
    for level in LEVELS:
        if value == level:
            return level
    return DEFAULT_LEVEL
