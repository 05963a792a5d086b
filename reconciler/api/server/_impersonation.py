"""Impersonation: a request that acts as another user (``kubectl --as``, ``--as-group``).

Called by the REST handler right after authentication, for every request. ``Impersonate-User``
(and any ``Impersonate-Group`` headers) replace the caller's identity for the rest of the
request, authorization included, once RBAC allows the caller the ``impersonate`` verb on that
user (``users``, or ``serviceaccounts`` in its namespace for
``system:serviceaccount:<ns>:<name>``) and on each group (``groups``), as in Kubernetes.
``Impersonate-Uid`` and ``Impersonate-Extra-*`` are refused: Capstan's identities carry
neither. The built-in roles grant ``impersonate`` only through ``cluster-admin``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from reconciler.api.server._auth import AUTHENTICATED_GROUP
from reconciler.api.server._rbac import Attributes, UserInfo, denial_message
from reconciler.api.server._status import HttpError

__all__ = ["IMPERSONATE_GROUP", "IMPERSONATE_USER", "impersonated"]

IMPERSONATE_USER = "impersonate-user"
IMPERSONATE_GROUP = "impersonate-group"
_SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def _checks(caller: UserInfo, name: str, groups: Sequence[str]) -> list[Attributes]:
    checks = []
    if name.startswith(_SERVICE_ACCOUNT_PREFIX):
        namespace, _, account = name[len(_SERVICE_ACCOUNT_PREFIX) :].partition(":")
        checks.append(
            Attributes(
                user=caller,
                verb="impersonate",
                resource="serviceaccounts",
                namespace=namespace,
                name=account,
            )
        )
    else:
        checks.append(Attributes(user=caller, verb="impersonate", resource="users", name=name))
    checks.extend(
        Attributes(user=caller, verb="impersonate", resource="groups", name=group)
        for group in groups
    )
    return checks


async def impersonated(
    caller: UserInfo,
    headers: Sequence[tuple[str, str]],
    *,
    allowed: Callable[[Attributes], Awaitable[bool]],
) -> UserInfo:
    """The identity the request acts as: ``caller``, or the one its impersonation headers
    name if ``allowed`` says the caller may impersonate it (else a 403). A 400 for headers
    that cannot be honoured."""
    names = [value for key, value in headers if key.lower() == IMPERSONATE_USER]
    groups = [value for key, value in headers if key.lower() == IMPERSONATE_GROUP]
    others = sorted(
        {
            key
            for key, _ in headers
            if key.lower().startswith("impersonate-")
            and key.lower() not in (IMPERSONATE_USER, IMPERSONATE_GROUP)
        }
    )
    if not names:
        if groups or others:
            raise HttpError(400, "Impersonate-Group and the like need Impersonate-User as well")
        return caller
    if others:
        raise HttpError(400, f"{', '.join(others)}: not supported; only user and groups")
    if len(names) > 1 or not names[0].strip():
        raise HttpError(400, "Impersonate-User must name exactly one user")
    name = names[0].strip()
    for attrs in _checks(caller, name, groups):
        if not await allowed(attrs):
            raise HttpError(403, denial_message(attrs))
    extra: tuple[str, ...] = ()
    if name.startswith(_SERVICE_ACCOUNT_PREFIX):
        namespace = name[len(_SERVICE_ACCOUNT_PREFIX) :].partition(":")[0]
        extra = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
    return UserInfo(name, tuple(dict.fromkeys((*groups, *extra, AUTHENTICATED_GROUP))))
