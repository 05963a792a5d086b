"""The HTTP client of the Capstan API, for the CLI (``capstan get/describe/status``) and tools.

Talks to the server of ``reconciler.api.server`` with a bearer token over TLS, locally or
remotely. Where to connect comes from flags or from a kubeconfig-like YAML file
(``$CAPSTAN_CONFIG``, else ``~/.capstan/config``; 0600), in which every ``capstan up``
records itself as a context and becomes the current one::

    apiVersion: capstan.io/v1
    kind: Config
    current-context: local
    clusters: [{name: local, cluster: {server: "https://127.0.0.1:6443",
                                       certificate-authority: /var/lib/capstan/pki/ca.crt}}]
    users: [{name: admin, user: {token-file: /var/lib/capstan/admin-token}}]
    contexts: [{name: local, context: {cluster: local, user: admin,
                                       state-dir: /var/lib/capstan}}]

``state-dir`` (Capstan's own key) names the state directory of a ``capstan up`` on this
machine: the CLI then finds it there as with ``--state-dir`` (its API when it serves one,
else its store). A context without one reaches its ``server`` only. ``capstan config``
lists and switches contexts (``contexts``, ``use_context``); ``reconciler.cli._target`` picks
one for every command.

Typed calls return ``schemas`` objects; error responses (Kubernetes ``Status`` bodies) raise
the same :class:`reconciler.api.ApiError` subclasses the in-process API raises.
"""

from typing import TYPE_CHECKING, Any

from reconciler.api import BadRequest, TooManyRequests, Unauthorized
from reconciler.client._config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    SERVER_CONTEXT,
    ClientConfig,
    Context,
    client_config_path,
    contexts,
    load_config,
    use_context,
    write_config,
)
from reconciler.client._exceptions import ConfigError, error_from_status

if TYPE_CHECKING:
    from reconciler.client._client import Client, ClientWatch, resource_path

#: Loaded on first use: they bring httpx, which ``capstan up`` (it writes the config file of
#: this package, it makes no HTTP call) would otherwise import for nothing.
_HTTP_NAMES = frozenset({"Client", "ClientWatch", "resource_path"})


def __getattr__(name: str) -> Any:
    if name not in _HTTP_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from reconciler.client import _client

    value = getattr(_client, name)
    globals()[name] = value
    return value


__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "SERVER_CONTEXT",
    "BadRequest",
    "Client",
    "ClientConfig",
    "ClientWatch",
    "ConfigError",
    "Context",
    "TooManyRequests",
    "Unauthorized",
    "client_config_path",
    "contexts",
    "error_from_status",
    "load_config",
    "resource_path",
    "use_context",
    "write_config",
]
