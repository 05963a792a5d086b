"""Service account tokens: minting, the hashed index the API checks, and authentication.

The serviceaccount controller mints a token (:func:`generate_token`) and stores it in a Secret of
type ``kubernetes.io/service-account-token`` (the holder needs the clear token, as in
Kubernetes). When that Secret is written, the API writes, in the same transaction, an index entry
``/registry/capstan-tokens/<token id>`` holding only the SHA-256 of the token's secret half; the
API authenticates against that entry with :func:`hmac.compare_digest`, so the place where tokens
are *checked* never holds one. Tokens read ``<id>.<secret>``: the id is a lookup key (not
secret), so a lookup reveals nothing about the secret and the comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from reconciler.store import Op

__all__ = [
    "SERVICE_ACCOUNT_NAME_ANNOTATION",
    "SERVICE_ACCOUNT_TOKEN_TYPE",
    "SERVICE_ACCOUNT_UID_ANNOTATION",
    "Identity",
    "generate_token",
]

SERVICE_ACCOUNT_TOKEN_TYPE = "kubernetes.io/service-account-token"  # noqa: S105 - a type name
SERVICE_ACCOUNT_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SERVICE_ACCOUNT_UID_ANNOTATION = "kubernetes.io/service-account.uid"
TOKEN_INDEX_PREFIX = "/registry/capstan-tokens/"  # noqa: S105 - a key prefix

_TOKEN_RE = re.compile(r"^([a-z0-9]{8})\.([A-Za-z0-9_-]{32,128})\Z")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token belongs to (Kubernetes' service account user info)."""

    username: str
    namespace: str
    service_account: str
    uid: str
    groups: tuple[str, ...]


def generate_token() -> str:
    """A new random token, ``<8 char id>.<43 char secret>`` (256 bits of secret)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    token_id = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"{token_id}.{secrets.token_urlsafe(32)}"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token_of(secret_doc: dict[str, Any]) -> tuple[str, str] | None:
    if secret_doc.get("type") != SERVICE_ACCOUNT_TOKEN_TYPE:
        return None
    raw = (secret_doc.get("stringData") or {}).get("token")
    if raw is None:
        encoded = (secret_doc.get("data") or {}).get("token")
        if encoded is None:
            return None
        try:
            raw = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
    match = _TOKEN_RE.match(raw)
    return (match.group(1), match.group(2)) if match else None


def index_ops(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Op]:
    """Store ops that keep the token index in step with a Secret going from ``old`` to ``new``
    (either may be None: create, delete). Empty for Secrets that hold no service account token."""
    old_token = _token_of(old) if old else None
    new_token = _token_of(new) if new else None
    ops: list[Op] = []
    if old_token and (not new_token or new_token[0] != old_token[0]):
        ops.append(Op.delete(TOKEN_INDEX_PREFIX + old_token[0]))
    if new is not None and new_token:
        annotations = new["metadata"].get("annotations") or {}
        entry = {
            "sha256": _digest(new_token[1]),
            "namespace": new["metadata"]["namespace"],
            "serviceAccount": annotations.get(SERVICE_ACCOUNT_NAME_ANNOTATION, ""),
            "uid": annotations.get(SERVICE_ACCOUNT_UID_ANNOTATION, ""),
            "secret": new["metadata"]["name"],
        }
        ops.append(Op.put(TOKEN_INDEX_PREFIX + new_token[0], json.dumps(entry).encode()))
    return ops


def split_token(token: str) -> tuple[str, str] | None:
    match = _TOKEN_RE.match(token)
    return (match.group(1), match.group(2)) if match else None


def check(entry: dict[str, Any], secret: str) -> Identity | None:
    if not hmac.compare_digest(_digest(secret), str(entry.get("sha256", ""))):
        return None
    namespace, name = str(entry["namespace"]), str(entry["serviceAccount"])
    return Identity(
        username=f"system:serviceaccount:{namespace}:{name}",
        namespace=namespace,
        service_account=name,
        uid=str(entry["uid"]),
        groups=("system:serviceaccounts", f"system:serviceaccounts:{namespace}"),
    )
