"""In-cluster names of Services: hosts-file entries and Kubernetes-style environment variables.

Called by the agent when it creates a pod's sandbox container (``extra_hosts``; app containers
that join the sandbox's network share its hosts file, and Docker refuses ``extra_hosts`` on
them) and each app container (``env``). Both are pure functions of the node's current
:class:`~agent.proxy.model.ServiceRuleSet` and the pod's namespace.

Names, as in Kubernetes DNS: ``NAME`` for Services in the pod's own namespace;
``NAME.NAMESPACE``, ``NAME.NAMESPACE.svc`` and ``NAME.NAMESPACE.svc.cluster.local`` for every
Service. A pod of a headless Service that names it as ``subdomain`` (a StatefulSet's pods) has
its own rule, and so its own names with ``NAME`` = ``HOSTNAME.SERVICE`` (``web-0.web``,
``web-0.web.ns``, ...), resolving to an address that reaches only that pod.
Variables, as the kubelet sets them, for Services in the pod's namespace only:
``<NAME>_SERVICE_HOST``, ``<NAME>_SERVICE_PORT`` (first port), ``<NAME>_SERVICE_PORT_<PORTNAME>``
and the Docker-link style ``<NAME>_PORT``, ``<NAME>_PORT_<P>_<PROTO>[_PROTO|_PORT|_ADDR]``.
Container-defined env wins over these (merge them first).
"""

from __future__ import annotations

import ipaddress
from typing import Final

from agent.proxy.addresses import DEFAULT_VIRTUAL_RANGE
from agent.proxy.model import PortRule, ServiceRuleSet

CLUSTER_DOMAIN: Final = "cluster.local"


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


def extra_hosts(rules: ServiceRuleSet, *, namespace: str) -> dict[str, str]:
    """``{hostname: virtual address}`` for the sandbox container of a pod in ``namespace``."""
    hosts: dict[str, str] = {}
    for key in rules.services():
        ns, name = key.split("/", 1)
        address = rules.service(ns, name)[0].virtual_address
        for host in (f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"):
            hosts[host] = address
        if ns == namespace:
            hosts[name] = address
    return hosts


def rewrite_hosts(
    current: str,
    rules: ServiceRuleSet,
    *,
    namespace: str,
    virtual_range: str = DEFAULT_VIRTUAL_RANGE,
) -> str:
    """``current`` hosts-file text with its Service lines replaced by today's Services.

    For Services created after a pod started: the agent may rewrite the sandbox's hosts file
    (Docker's ``HostsPath``, bind-mounted into every container of the pod) with this. A
    Service line is any line whose address is in ``virtual_range``: those are ours, whoever
    wrote them (Docker from ``extra_hosts``, or an earlier rewrite); every other line stays.
    """
    net = ipaddress.IPv4Network(virtual_range)
    kept = []
    for line in current.splitlines():
        fields = line.split("#", 1)[0].split()
        try:
            ours = bool(fields) and ipaddress.ip_address(fields[0]) in net
        except ValueError:
            ours = False
        if not ours:
            kept.append(line)
    added = [
        f"{address}\t{host}" for host, address in extra_hosts(rules, namespace=namespace).items()
    ]
    return "\n".join(kept + added) + "\n"


def _port_env(prefix: str, rule: PortRule) -> dict[str, str]:
    proto = rule.protocol.lower()
    url = f"{proto}://{rule.virtual_address}:{rule.port}"
    base = f"{prefix}_PORT_{rule.port}_{rule.protocol}"
    return {
        base: url,
        f"{base}_PROTO": proto,
        f"{base}_PORT": str(rule.port),
        f"{base}_ADDR": rule.virtual_address,
    }


def service_env(rules: ServiceRuleSet, *, namespace: str) -> dict[str, str]:
    """The Service environment variables of a container in ``namespace``."""
    env: dict[str, str] = {}
    for key in rules.services():
        ns, name = key.split("/", 1)
        if ns != namespace:
            continue
        ports = rules.service(ns, name)
        if ports[0].hostname is not None:
            continue  # a pod's own name: Kubernetes sets no variables for those either
        prefix = _env_name(name)
        first = ports[0]
        env[f"{prefix}_SERVICE_HOST"] = first.virtual_address
        env[f"{prefix}_SERVICE_PORT"] = str(first.port)
        env[f"{prefix}_PORT"] = f"{first.protocol.lower()}://{first.virtual_address}:{first.port}"
        for rule in ports:
            if rule.port_name:
                env[f"{prefix}_SERVICE_PORT_{_env_name(rule.port_name)}"] = str(rule.port)
            env.update(_port_env(prefix, rule))
    return env
