"""The ingress proxy's routing table: which Service endpoints serve a (Host, path), and which
certificate serves an SNI name. Pure data, built from the desired set; no I/O.

Built by :class:`agent.ingress.server.IngressServer` whenever the desired Ingresses
(``Sync.ingresses``, already filtered to Capstan's class by the control plane), their TLS
Secrets (``Sync.secrets``) or the node's Service rules (:class:`agent.proxy.ServiceRuleSet`,
with endpoints being drained already taken out) change. The endpoints are the same
``(node address, host port)`` pairs the Service proxy dials, so an Ingress backend follows
readiness, rollouts and local drains exactly as a Service does.

Matching, as Kubernetes specifies it and ingress-nginx does it:

- host: an exact ``host`` first, then a wildcard (``*.example.com`` matches exactly one more
  label: ``a.example.com``, not ``b.a.example.com`` nor ``example.com``), then rules without
  a host. Rules of every Ingress for one host are merged.
- path, among the chosen host's paths: ``Exact`` paths equal to the request's path first, then
  the longest ``Prefix`` (``ImplementationSpecific`` is treated as ``Prefix``) that matches
  element-wise (``/foo`` matches ``/foo``, ``/foo/`` and ``/foo/bar``, not ``/foobar``).
- nothing matched: the ``defaultBackend`` (of the first Ingress by namespace/name that has
  one), else 404. Ties between Ingresses go to the first by namespace/name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from agent.proxy import Endpoint, ServiceRuleSet
from schemas.core import Secret
from schemas.networking import Ingress, IngressServiceBackend

__all__ = ["TLS_SECRET_TYPE", "Backend", "Certificate", "PathRoute", "RouteTable", "build_table"]

TLS_SECRET_TYPE = "kubernetes.io/tls"  # noqa: S105 - a Secret type, not a secret
_WILDCARD = re.compile(r"\*\.(.+)")


@dataclass(frozen=True)
class Backend:
    """A Service port behind an Ingress path and its ready endpoints (empty: answer 503)."""

    label: str
    """``namespace/service:port``, for logs and error pages."""
    endpoints: tuple[Endpoint, ...] = ()


@dataclass(frozen=True)
class PathRoute:
    path: str
    exact: bool
    backend: Backend

    def matches(self, path: str) -> bool:
        if self.exact:
            return path == self.path
        prefix = self.path.rstrip("/")
        return prefix == "" or path == prefix or path.startswith(prefix + "/")

    @property
    def precedence(self) -> tuple[int, int]:
        """Sort key: Exact paths first, then longer prefixes."""
        return (0 if self.exact else 1, -len(self.path.rstrip("/")))


@dataclass(frozen=True)
class Certificate:
    """A TLS certificate chain and key (PEM) from a ``kubernetes.io/tls`` Secret."""

    source: str
    """``namespace/secret``."""
    chain: bytes = field(repr=False)
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class RouteTable:
    """Every route of the node's Ingresses; :meth:`route` answers one request."""

    hosts: dict[str, tuple[PathRoute, ...]] = field(default_factory=dict)
    wildcards: dict[str, tuple[PathRoute, ...]] = field(default_factory=dict)
    any_host: tuple[PathRoute, ...] = ()
    default: Backend | None = None
    certificates: dict[str, Certificate] = field(default_factory=dict)
    """SNI name (or ``*.suffix``) → certificate; ``""`` is the one for names none matches."""
    problems: tuple[str, ...] = ()
    """What could not be served as written (a missing or malformed TLS Secret)."""

    @property
    def empty(self) -> bool:
        return not (self.hosts or self.wildcards or self.any_host or self.default)

    def _paths_for(self, host: str) -> tuple[PathRoute, ...]:
        if host in self.hosts:
            return self.hosts[host]
        _, dot, parent = host.partition(".")
        if dot and parent in self.wildcards:
            return self.wildcards[parent]
        return self.any_host

    def route(self, host: str, path: str) -> Backend | None:
        """The backend for a request to ``host`` (lowercase, no port) and ``path`` (no query);
        None: no rule and no default backend (404)."""
        for candidate in self._paths_for(host):
            if candidate.matches(path):
                return candidate.backend
        return self.default

    def certificate(self, server_name: str | None) -> Certificate | None:
        """The certificate for an SNI name: exact, then wildcard, then the default one."""
        if server_name:
            name = server_name.lower().rstrip(".")
            if name in self.certificates:
                return self.certificates[name]
            _, dot, parent = name.partition(".")
            if dot and f"*.{parent}" in self.certificates:
                return self.certificates[f"*.{parent}"]
        return self.certificates.get("")


def _backend(namespace: str, ref: IngressServiceBackend, rules: ServiceRuleSet) -> Backend:
    port = ref.port
    wanted = port.number if port.number is not None else port.name
    for rule in rules.service(namespace, ref.name):
        if rule.protocol != "TCP":
            continue
        if (port.number is not None and rule.port == port.number) or (
            port.name is not None and rule.port_name == port.name
        ):
            return Backend(label=f"{namespace}/{ref.name}:{wanted}", endpoints=rule.endpoints)
    return Backend(label=f"{namespace}/{ref.name}:{wanted}")


def _certificate(
    ingress: Ingress, name: str, secrets: dict[tuple[str, str], Secret]
) -> Certificate:
    secret = secrets.get((ingress.namespace, name))
    where = f"Ingress {ingress.namespace}/{ingress.name}: TLS Secret {ingress.namespace}/{name}"
    if secret is None:
        raise ValueError(f"{where} does not exist")
    if secret.type != TLS_SECRET_TYPE:
        raise ValueError(f"{where} is of type {secret.type!r}, not {TLS_SECRET_TYPE}")
    values = secret.decoded()
    missing = [key for key in ("tls.crt", "tls.key") if not values.get(key)]
    if missing:
        raise ValueError(f"{where} has no {' and no '.join(missing)}")
    return Certificate(
        source=f"{ingress.namespace}/{name}", chain=values["tls.crt"], key=values["tls.key"]
    )


def build_table(
    ingresses: Sequence[Ingress], secrets: Iterable[Secret], rules: ServiceRuleSet
) -> RouteTable:
    """The routing table of ``ingresses`` (all of Capstan's class), endpoints from ``rules``."""
    by_secret = {(s.namespace, s.name): s for s in secrets}
    hosts: dict[str, list[PathRoute]] = {}
    wildcards: dict[str, list[PathRoute]] = {}
    any_host: list[PathRoute] = []
    default: Backend | None = None
    certificates: dict[str, Certificate] = {}
    problems: list[str] = []
    for ingress in sorted(ingresses, key=lambda i: (i.namespace, i.name)):
        spec = ingress.spec
        backend = spec.default_backend
        if default is None and backend is not None and backend.service is not None:
            default = _backend(ingress.namespace, backend.service, rules)
        for rule in spec.rules:
            if rule.http is None:
                continue
            if rule.host is None:
                target = any_host
            elif wildcard := _WILDCARD.fullmatch(rule.host):
                target = wildcards.setdefault(wildcard.group(1).lower(), [])
            else:
                target = hosts.setdefault(rule.host.lower(), [])
            for path in rule.http.paths:
                service = path.backend.service
                assert service is not None  # schemas refuse resource backends
                target.append(
                    PathRoute(
                        path=path.path or "/",
                        exact=path.path_type == "Exact",
                        backend=_backend(ingress.namespace, service, rules),
                    )
                )
        for tls in spec.tls:
            if tls.secret_name is None:
                continue
            try:
                certificate = _certificate(ingress, tls.secret_name, by_secret)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            for host in tls.hosts or [""]:
                certificates.setdefault(host.lower(), certificate)
    if certificates and "" not in certificates:
        certificates[""] = certificates[min(certificates)]

    def ordered(routes: list[PathRoute]) -> tuple[PathRoute, ...]:
        # sorted() is stable: among equal paths the first Ingress by namespace/name wins.
        return tuple(sorted(routes, key=lambda r: r.precedence))

    return RouteTable(
        hosts={h: ordered(r) for h, r in hosts.items()},
        wildcards={h: ordered(r) for h, r in wildcards.items()},
        any_host=ordered(any_host),
        default=default,
        certificates=certificates,
        problems=tuple(problems),
    )
