"""Authentication: who sent this request, from its ``Authorization: Bearer`` token.

Called by the HTTP server before authorization. Two kinds of token:

- the admin token, made at first start (:func:`reconciler.api.server.ensure_admin_token`);
  the server keeps only its SHA-256 and compares digests in constant time. Its user is
  ``capstan:admin`` in ``system:masters`` (Kubernetes' cluster-admin group);
- service account tokens, minted by the serviceaccount controller and checked by
  :meth:`reconciler.api.Api.authenticate_token` (hashed at rest, constant-time compare, the
  account must still exist). Their user is ``system:serviceaccount:<ns>:<name>``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from reconciler.api import Api, Identity
from reconciler.api.server._rbac import MASTERS_GROUP, UserInfo
from reconciler.api.server._status import HttpError

__all__ = ["ADMIN_USER", "AUTHENTICATED_GROUP", "Authenticator", "token_digest"]

ADMIN_USER = "capstan:admin"
AUTHENTICATED_GROUP = "system:authenticated"
_MAX_TOKEN_CHARS = 1024


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _unauthorized(message: str) -> HttpError:
    return HttpError(401, message, headers={"WWW-Authenticate": 'Bearer realm="capstan"'})


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`UserInfo`, or raises a 401."""

    def __init__(
        self,
        *,
        admin_token_sha256: str | None,
        service_accounts: Callable[[str], Identity | None],
    ) -> None:
        self._admin_digest = admin_token_sha256
        self._service_accounts = service_accounts

    @classmethod
    def for_api(cls, api: Api, *, admin_token_sha256: str | None) -> Authenticator:
        return cls(admin_token_sha256=admin_token_sha256, service_accounts=api.authenticate_token)

    @staticmethod
    def bearer(header: str | None) -> str:
        """The token of an ``Authorization`` header, or a 401."""
        if not header:
            raise _unauthorized("Unauthorized: no bearer token (Authorization: Bearer <token>)")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("Unauthorized: the Authorization header must be 'Bearer <token>'")
        if len(token) > _MAX_TOKEN_CHARS or not token.isascii() or not token.isprintable():
            raise _unauthorized("Unauthorized: invalid bearer token")
        return token

    def admin(self, token: str) -> UserInfo | None:
        """The admin user if ``token`` is the admin token (no I/O: safe on the event loop)."""
        if self._admin_digest is None:
            return None
        if hmac.compare_digest(token_digest(token), self._admin_digest):
            return UserInfo(ADMIN_USER, (MASTERS_GROUP, AUTHENTICATED_GROUP))
        return None

    def service_account(self, token: str) -> UserInfo:
        """The service account of ``token`` (reads the API: call off the loop), or a 401."""
        identity = self._service_accounts(token)
        if identity is None:
            raise _unauthorized("Unauthorized: invalid bearer token")
        return UserInfo(identity.username, (*identity.groups, AUTHENTICATED_GROUP))
