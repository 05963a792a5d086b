"""Registry credentials from a pod's ``imagePullSecrets`` (``kubernetes.io/dockerconfigjson``
Secrets, and the older ``kubernetes.io/dockercfg``), keyed by registry host.

Called by ``podspec.desired_pod``; the executor passes the credentials of an image's registry
to the runtime's pull. As in Kubernetes, a missing or unreadable secret is not an error: the
pull goes without credentials (and fails if the registry needs them).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from agent.runtime.facts import RegistryAuth
from schemas.core import LocalObjectReference, Secret

__all__ = ["registry_auths", "registry_of"]

_DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})


def registry_of(image: str) -> str:
    """The registry host of an image reference (Docker's rule: a first component with a '.'
    or ':' or ``localhost`` is a host; anything else is on Docker Hub)."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return _normalized(first)
    return _DOCKER_HUB


def _normalized(key: str) -> str:
    host = key.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    return _DOCKER_HUB if host in _HUB_ALIASES else host


def _auth_of(entry: Any) -> RegistryAuth | None:
    if not isinstance(entry, dict):
        return None
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str):
        return RegistryAuth(username=username, password=password)
    encoded = entry.get("auth")
    if not isinstance(encoded, str):
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, secret = decoded.partition(":")
    return RegistryAuth(username=user, password=secret) if colon else None


def _entries(secret: Secret) -> Mapping[str, Any]:
    values = secret.decoded()
    try:
        if secret.type == "kubernetes.io/dockerconfigjson":
            document = json.loads(values.get(".dockerconfigjson", b"{}"))
            auths = document.get("auths") if isinstance(document, dict) else None
            return auths if isinstance(auths, dict) else {}
        if secret.type == "kubernetes.io/dockercfg":
            document = json.loads(values.get(".dockercfg", b"{}"))
            return document if isinstance(document, dict) else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return {}


def registry_auths(
    references: Sequence[LocalObjectReference],
    *,
    namespace: str,
    secrets: Mapping[tuple[str, str], Secret],
) -> dict[str, RegistryAuth]:
    """Registry host → credentials; the first secret naming a registry wins, as in kubelet."""
    found: dict[str, RegistryAuth] = {}
    for reference in references:
        secret = secrets.get((namespace, reference.name))
        if secret is None:
            continue
        for key, entry in _entries(secret).items():
            auth = _auth_of(entry)
            if auth is not None:
                found.setdefault(_normalized(str(key)), auth)
    return found
