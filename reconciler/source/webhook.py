"""Verifying Git forge webhooks: GitHub's ``X-Hub-Signature-256`` and GitLab's ``X-Gitlab-Token``.

The API server's ``POST /hooks/git`` calls ``verify_webhook`` on the raw request and, only when
it holds, ``BranchWatch.trigger()``. The payload is never trusted for *what* changed: a
verified hook only makes the source fetch now instead of at the next poll.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = ["WebhookVerdict", "verify_webhook"]

Provider = Literal["github", "gitlab"]
_GITHUB_HEADER = "x-hub-signature-256"
_GITLAB_HEADER = "x-gitlab-token"
_SHA256_PREFIX = "sha256="


@dataclass(frozen=True)
class WebhookVerdict:
    """Whether a request is authentic, which forge sent it, and why it was refused."""

    ok: bool
    reason: str
    provider: Provider | None = None

    def __bool__(self) -> bool:
        return self.ok


def verify_webhook(
    headers: Mapping[str, str], body: bytes, *, secret: str | bytes
) -> WebhookVerdict:
    """Check a webhook request against the shared secret, in constant time.

    GitHub signs the raw body: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256>``. GitLab sends
    the secret itself in ``X-Gitlab-Token``. With no secret configured every request is
    refused: an unauthenticated endpoint would let anyone make the reconciler fetch.
    """
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not key:
        return WebhookVerdict(False, "no webhook secret is configured")
    lowered = {name.lower(): value for name, value in headers.items()}
    signature = lowered.get(_GITHUB_HEADER)
    if signature is not None:
        return _verify_github(signature, body, key)
    token = lowered.get(_GITLAB_HEADER)
    if token is not None:
        if hmac.compare_digest(token.encode(), key):
            return WebhookVerdict(True, "GitLab token matches", "gitlab")
        return WebhookVerdict(False, "X-Gitlab-Token does not match", "gitlab")
    return WebhookVerdict(
        False, "no X-Hub-Signature-256 or X-Gitlab-Token header: request is not signed"
    )


def _verify_github(signature: str, body: bytes, key: bytes) -> WebhookVerdict:
    if not signature.startswith(_SHA256_PREFIX):
        return WebhookVerdict(False, "X-Hub-Signature-256 must start with 'sha256='", "github")
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    given = signature[len(_SHA256_PREFIX) :].strip().lower()
    if hmac.compare_digest(given.encode(), expected.encode()):
        return WebhookVerdict(True, "GitHub signature matches", "github")
    return WebhookVerdict(False, "X-Hub-Signature-256 does not match the body", "github")
