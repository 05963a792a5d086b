"""networking.k8s.io/v1 Ingress and IngressClass: HTTP(S) routing by host and path to Services.

Loaded from Git by the source and stored by the API server like every kind. The dispatcher
(``reconciler.nodes``) sends each node the Ingresses of Capstan's class (:func:`is_capstan_class`)
with the Secrets their ``tls`` entries name; the agent's ingress proxy (``agent.ingress``)
serves them on the node's HTTP and HTTPS ports, routing to the Services' ready endpoints. The
ingress controller writes ``status.loadBalancer.ingress`` (the Ready nodes' addresses).

What Kubernetes allows and Capstan cannot serve is refused with the field path: a ``resource``
backend (only Services are backends here), a host that is an IP address or has a port.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import AfterValidator, Field, model_validator

from schemas._validation import (
    DNS1035Label,
    DNSSubdomain,
    PortName,
    PortNumber,
    Problems,
    dns1123_subdomain_problem,
    rule_error,
)
from schemas.meta import KubeModel, KubeObject

__all__ = [
    "CAPSTAN_INGRESS_CLASS",
    "CAPSTAN_INGRESS_CONTROLLER",
    "DEFAULT_CLASS_ANNOTATION",
    "LEGACY_CLASS_ANNOTATION",
    "HTTPIngressPath",
    "HTTPIngressRuleValue",
    "Ingress",
    "IngressBackend",
    "IngressClass",
    "IngressClassSpec",
    "IngressLoadBalancerIngress",
    "IngressLoadBalancerStatus",
    "IngressRule",
    "IngressServiceBackend",
    "IngressSpec",
    "IngressStatus",
    "IngressTLS",
    "ServiceBackendPort",
    "host_problem",
    "is_capstan_class",
    "printed_address",
    "printed_hosts",
    "printed_ports",
    "tls_secret_names",
]

CAPSTAN_INGRESS_CLASS: Final = "capstan"
"""The class name Capstan serves without any IngressClass object in the cluster."""
CAPSTAN_INGRESS_CONTROLLER: Final = "capstan.io/ingress"
"""``IngressClass.spec.controller`` of classes Capstan serves (whatever their name)."""
DEFAULT_CLASS_ANNOTATION: Final = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION: Final = "kubernetes.io/ingress.class"

PathType = Literal["Prefix", "Exact", "ImplementationSpecific"]

_WILDCARD_HOST: Final = re.compile(r"\*\.(.+)")


def host_problem(value: str) -> str | None:
    """Why ``value`` is not an Ingress host (a DNS name, optionally ``*.`` + a DNS name)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return "must be a DNS name, not an IP address"
    if ":" in value:
        return "must be a DNS name without a port"
    wildcard = _WILDCARD_HOST.fullmatch(value)
    name = wildcard.group(1) if wildcard else value
    problem = dns1123_subdomain_problem(name)
    if problem is not None:
        return f"must be a DNS name or '*.' followed by one ({problem})"
    return None


def _host(value: str) -> str:
    problem = host_problem(value)
    if problem is not None:
        raise rule_error("ingress_host", problem)
    return value


def _path(value: str) -> str:
    if not value.startswith("/"):
        raise rule_error("ingress_path", "must be an absolute path (start with /)")
    return value


IngressHost = Annotated[str, AfterValidator(_host)]
IngressPathText = Annotated[str, AfterValidator(_path)]


class ServiceBackendPort(KubeModel):
    """The Service port a backend names: by ``number`` or by ``name``, exactly one."""

    name: PortName | None = None
    number: PortNumber | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ServiceBackendPort:
        if (self.name is None) == (self.number is None):
            problems = Problems("ServiceBackendPort")
            problems.add((), "backend_port", "set exactly one of name and number")
            problems.raise_if_any()
        return self


class IngressServiceBackend(KubeModel):
    name: DNS1035Label
    port: ServiceBackendPort


class IngressBackend(KubeModel):
    """Where matching requests go: a Service of the Ingress's namespace and one of its ports."""

    service: IngressServiceBackend | None = None
    resource: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _service_only(self) -> IngressBackend:
        problems = Problems("IngressBackend")
        if self.resource is not None:
            problems.add(
                ("resource",),
                "unsupported_backend",
                "resource backends are not supported: Capstan routes only to Services; "
                "use service: {name, port}",
            )
        elif self.service is None:
            problems.add(("service",), "missing", "a backend needs service: {name, port}")
        problems.raise_if_any()
        return self


class HTTPIngressPath(KubeModel):
    path: IngressPathText | None = None
    path_type: PathType
    backend: IngressBackend


class HTTPIngressRuleValue(KubeModel):
    paths: list[HTTPIngressPath] = Field(min_length=1)


class IngressRule(KubeModel):
    """Requests for ``host`` (every host when unset; ``*.example.com`` matches one label)."""

    host: IngressHost | None = None
    http: HTTPIngressRuleValue | None = None


class IngressTLS(KubeModel):
    """A ``kubernetes.io/tls`` Secret (``tls.crt``, ``tls.key``) for ``hosts`` (SNI)."""

    hosts: list[IngressHost] = Field(default_factory=list)
    secret_name: DNSSubdomain | None = None


class IngressSpec(KubeModel):
    ingress_class_name: DNSSubdomain | None = None
    default_backend: IngressBackend | None = None
    tls: list[IngressTLS] = Field(default_factory=list)
    rules: list[IngressRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _routes_something(self) -> IngressSpec:
        if self.default_backend is None and not self.rules:
            problems = Problems("IngressSpec")
            problems.add((), "ingress_empty", "set defaultBackend or rules (or both)")
            problems.raise_if_any()
        return self

    def backends(self) -> Iterable[IngressServiceBackend]:
        """Every Service backend the Ingress names, the default one first."""
        if self.default_backend is not None and self.default_backend.service is not None:
            yield self.default_backend.service
        for rule in self.rules:
            for path in rule.http.paths if rule.http is not None else []:
                if path.backend.service is not None:
                    yield path.backend.service


class IngressPortStatus(KubeModel):
    port: int
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    error: str | None = None


class IngressLoadBalancerIngress(KubeModel):
    ip: str | None = None
    hostname: str | None = None
    ports: list[IngressPortStatus] = Field(default_factory=list)


class IngressLoadBalancerStatus(KubeModel):
    ingress: list[IngressLoadBalancerIngress] = Field(default_factory=list)


class IngressStatus(KubeModel):
    load_balancer: IngressLoadBalancerStatus | None = None


class Ingress(KubeObject):
    NAMESPACED: ClassVar[bool] = True

    api_version: Literal["networking.k8s.io/v1"] = "networking.k8s.io/v1"
    kind: Literal["Ingress"] = "Ingress"
    spec: IngressSpec
    status: IngressStatus | None = None

    @property
    def class_name(self) -> str | None:
        """``spec.ingressClassName``, else the legacy ``kubernetes.io/ingress.class``."""
        return self.spec.ingress_class_name or self.metadata.annotations.get(
            LEGACY_CLASS_ANNOTATION
        )


class IngressClassSpec(KubeModel):
    controller: str | None = Field(default=None, max_length=250)
    parameters: dict[str, Any] | None = None


class IngressClass(KubeObject):
    """A class of Ingresses and the controller serving it. Capstan serves the classes whose
    ``controller`` is ``capstan.io/ingress``, and the name ``capstan`` even without an object."""

    NAMESPACED: ClassVar[bool] = False

    api_version: Literal["networking.k8s.io/v1"] = "networking.k8s.io/v1"
    kind: Literal["IngressClass"] = "IngressClass"
    spec: IngressClassSpec = Field(default_factory=IngressClassSpec)

    @property
    def is_default(self) -> bool:
        return self.metadata.annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"


def is_capstan_class(ingress: Ingress, classes: Iterable[IngressClass]) -> bool:
    """Whether Capstan's proxy serves ``ingress``.

    A named class is Capstan's when it is ``capstan`` and no IngressClass of that name points
    elsewhere, or when its IngressClass's controller is ``capstan.io/ingress``. An Ingress
    without a class takes the default class: the IngressClass marked
    ``ingressclass.kubernetes.io/is-default-class: "true"`` when there is one (Capstan's or
    another controller's), Capstan's when none is marked — Capstan is the only Ingress
    implementation on its nodes.
    """
    by_name = {c.name: c for c in classes}
    name = ingress.class_name
    if name is None:
        defaults = [c for c in by_name.values() if c.is_default]
        if not defaults:
            return True
        return any(c.spec.controller == CAPSTAN_INGRESS_CONTROLLER for c in defaults)
    found = by_name.get(name)
    if found is None:
        return name == CAPSTAN_INGRESS_CLASS
    return found.spec.controller == CAPSTAN_INGRESS_CONTROLLER


def tls_secret_names(ingress: Ingress) -> set[str]:
    """The Secrets (in the Ingress's namespace) its ``tls`` entries name."""
    return {tls.secret_name for tls in ingress.spec.tls if tls.secret_name is not None}


def printed_hosts(ingress: Mapping[str, Any]) -> str:
    """kubectl's HOSTS cell from an Ingress's JSON form: the rules' hosts (``*`` for a rule
    without one), at most four, then ``+ N more...``."""
    rules = (ingress.get("spec") or {}).get("rules") or []
    hosts = [rule.get("host") or "*" for rule in rules]
    if not hosts:
        return "*"
    shown = ",".join(hosts[:4])
    return shown + (f" + {len(hosts) - 4} more..." if len(hosts) > 4 else "")


def printed_address(ingress: Mapping[str, Any]) -> str:
    """kubectl's ADDRESS cell: the load balancer's addresses, comma-separated."""
    balancer = (ingress.get("status") or {}).get("loadBalancer") or {}
    entries = balancer.get("ingress") or []
    return ",".join(e.get("ip") or e.get("hostname") or "" for e in entries if e)


def printed_ports(ingress: Mapping[str, Any]) -> str:
    """kubectl's PORTS cell: ``80``, or ``80, 443`` when the Ingress has TLS."""
    return "80, 443" if (ingress.get("spec") or {}).get("tls") else "80"
