"""The API server over HTTP: Kubernetes-shaped REST, bearer tokens, RBAC, watch, metrics.

Sits in front of :class:`reconciler.api.Api` inside ``capstan up``; the CLI
(:mod:`reconciler.client`), node tooling and people's scripts reach the control plane through
it. Offers:

- :func:`serve` (bootstrap the state dir, start uvicorn, return an :class:`ApiServer`) and
  :func:`create_app` (the ASGI app alone), configured by :class:`ServeOptions`,
  :class:`ServerHooks` (webhook, syncs, plan, readiness callbacks) and :class:`Limits`;
- :func:`prepare_state`, :func:`ensure_admin_token`, :func:`ensure_tls`: first-start secrets;
- :class:`Authorizer` and the built-in ClusterRoles (``view``, ``edit``, ``admin``,
  ``cluster-admin``); :func:`openapi_document`.

Errors are Kubernetes ``Status`` bodies; see ``docs/api.md`` for paths, semantics and the
Git-is-truth write guard.
"""

from reconciler.api.server._app import ServerHooks, create_app
from reconciler.api.server._auth import ADMIN_USER, Authenticator
from reconciler.api.server._openapi import openapi_document
from reconciler.api.server._rbac import (
    BUILTIN_CLUSTER_ROLES,
    Attributes,
    Authorizer,
    UserInfo,
    denial_message,
)
from reconciler.api.server._rest import DRIFT_ANNOTATION, OVERRIDE_HEADER, Limits
from reconciler.api.server._serve import (
    ApiServer,
    ServeOptions,
    ServerState,
    prepare_state,
    serve,
)
from reconciler.api.server._tls import TlsFiles, ensure_admin_token, ensure_tls

__all__ = [
    "ADMIN_USER",
    "BUILTIN_CLUSTER_ROLES",
    "DRIFT_ANNOTATION",
    "OVERRIDE_HEADER",
    "ApiServer",
    "Attributes",
    "Authenticator",
    "Authorizer",
    "Limits",
    "ServeOptions",
    "ServerHooks",
    "ServerState",
    "TlsFiles",
    "UserInfo",
    "create_app",
    "denial_message",
    "ensure_admin_token",
    "ensure_tls",
    "openapi_document",
    "prepare_state",
    "serve",
]
