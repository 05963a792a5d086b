"""What the node proxy programs: one rule per Service port, with its ready endpoints.

The agent's sync loop receives ``Sync.services`` (:class:`schemas.protocol.ServiceRule`, one per
Service, only *ready* endpoints listed) and turns them into a :class:`ServiceRuleSet` with
:meth:`ServiceRuleSet.from_protocol`; that is the whole adapter. Everything downstream (the
nftables/iptables renderers, the userspace forwarder, the hosts/env helpers) reads only this
module's frozen values, so it can be tested with plain data. Those values are checked when
made (names by the API's rules, addresses, ports), so the rule text the renderers write is
built from validated parts only.

A rule set is the node's **complete** desired proxy state: applying it replaces whatever was
programmed before. Every Service gets a stable *virtual address* in a loopback range
(:mod:`agent.proxy.addresses`): the address its in-cluster names resolve to.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NewType

from agent.proxy.addresses import DEFAULT_VIRTUAL_RANGE, allocate_virtual_addresses
from schemas._validation import (
    dns1035_label_problem,
    dns1123_label_problem,
    port_name_problem,
)
from schemas.protocol import Endpoint as WireEndpoint
from schemas.protocol import ServiceRule

ServiceKey = NewType("ServiceKey", str)
"""``namespace/name`` of a Service."""

L4Protocol = Literal["TCP", "UDP", "SCTP"]


@functools.lru_cache(maxsize=4096)
def _check_ipv4(address: str) -> None:
    # Cached: every Service lists its endpoints on the same few node addresses, thousands
    # of endpoints per sync on a large fleet.
    ipaddress.IPv4Address(address)


@dataclass(frozen=True, order=True)
class Endpoint:
    """A ready backend: a node address (IPv4) and the host port the pod publishes there."""

    address: str
    port: int

    def __post_init__(self) -> None:
        _check_ipv4(self.address)  # raises ValueError on anything else
        if not 1 <= self.port <= 65535:
            raise ValueError(f"endpoint port {self.port} is out of range 1-65535")

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


#: One Endpoint value per (address, port): the same backends recur in every sync.
_endpoint = functools.lru_cache(maxsize=16384)(Endpoint)


def _sorted_endpoints(endpoints: Iterable[WireEndpoint]) -> tuple[Endpoint, ...]:
    """The distinct endpoints in Endpoint order. Deduplicated and sorted as plain
    (address, port) pairs: a rule lists thousands on a large fleet, and the dataclass's own
    hash and comparison are Python code per call."""
    pairs = sorted({(e.address, e.port) for e in endpoints})
    return tuple(_endpoint(address, port) for address, port in pairs)


@dataclass(frozen=True)
class PortRule:
    """One Service port as the proxy programs it.

    ``port`` answers on ``virtual_address`` (in-cluster names); ``node_port``, when set,
    answers on every node address. Both go to one of ``endpoints``.

    ``hostname`` set: the rule of one pod of a headless Service (its own name
    ``<hostname>.<name>.<namespace>``, its own virtual address, only its endpoints).

    ``external_local`` (``externalTrafficPolicy: Local``): the node port goes only to
    :meth:`node_port_endpoints`, the endpoints on this node, keeping the client's address;
    the virtual address still goes to all ``endpoints``.
    """

    namespace: str
    name: str
    port: int
    virtual_address: str
    endpoints: tuple[Endpoint, ...] = ()
    port_name: str | None = None
    protocol: L4Protocol = "TCP"
    node_port: int | None = None
    hostname: str | None = None
    external_local: bool = False

    def node_port_endpoints(self, node_addresses: Collection[str]) -> tuple[Endpoint, ...]:
        """Where the node port sends traffic on a node with ``node_addresses``: every
        endpoint, or (``external_local``) those whose address is one of the node's."""
        if not self.external_local:
            return self.endpoints
        return tuple(e for e in self.endpoints if e.address in node_addresses)

    def __post_init__(self) -> None:
        # The wire was validated already (schemas.protocol); checked again here because the
        # renderers put these values into iptables-restore and nft scripts as text.
        problems: list[str] = []
        for what, value, check in (
            ("namespace", self.namespace, dns1123_label_problem),
            ("name", self.name, dns1035_label_problem),
            ("hostname", self.hostname, dns1123_label_problem),
        ):
            if value is not None and (problem := check(value)) is not None:
                problems.append(f"{what} {value!r}: {problem}")
        if self.port_name is not None and (problem := port_name_problem(self.port_name)):
            problems.append(f"port name {self.port_name!r}: {problem}")
        if self.protocol not in ("TCP", "UDP", "SCTP"):
            problems.append(f"protocol {self.protocol!r} is not TCP, UDP or SCTP")
        for what, port in (("port", self.port), ("nodePort", self.node_port)):
            if port is not None and not (isinstance(port, int) and 1 <= port <= 65535):
                problems.append(f"{what} {port!r} is out of range 1-65535")
        try:
            ipaddress.IPv4Address(self.virtual_address)
        except ValueError:
            problems.append(f"virtual address {self.virtual_address!r} is not an IPv4 address")
        if problems:
            raise ValueError(f"Service port rule refused: {'; '.join(problems)}")

    @property
    def service(self) -> ServiceKey:
        """``namespace/name``, or ``namespace/hostname.name`` for a pod's own rule."""
        return ServiceKey(f"{self.namespace}/{self.dns_name}")

    @property
    def dns_name(self) -> str:
        """The name under the namespace: ``name``, or ``hostname.name`` for a pod's own rule."""
        return f"{self.hostname}.{self.name}" if self.hostname else self.name

    @property
    def label(self) -> str:
        """``namespace/name:port`` (or ``:portname``), for logs and rule comments."""
        return f"{self.namespace}/{self.dns_name}:{self.port_name or self.port}"


@dataclass(frozen=True)
class ServiceRuleSet:
    """The complete set of Service port rules for one node, in a stable order."""

    rules: tuple[PortRule, ...] = ()
    _by_service: dict[ServiceKey, tuple[PortRule, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        index: dict[ServiceKey, list[PortRule]] = {}
        seen_node_ports: dict[tuple[str, int], str] = {}
        for rule in self.rules:
            index.setdefault(rule.service, []).append(rule)
            if rule.node_port is not None:
                other = seen_node_ports.setdefault((rule.protocol, rule.node_port), rule.label)
                if other != rule.label:
                    raise ValueError(
                        f"nodePort {rule.node_port}/{rule.protocol} is used by both {other} "
                        f"and {rule.label}"
                    )
        self._by_service.update({key: tuple(rules) for key, rules in index.items()})

    def __iter__(self) -> Iterator[PortRule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def service(self, namespace: str, name: str) -> tuple[PortRule, ...]:
        """The port rules of one Service (empty when it is not in the set)."""
        return self._by_service.get(ServiceKey(f"{namespace}/{name}"), ())

    def services(self) -> Iterable[ServiceKey]:
        return self._by_service.keys()

    def without_endpoints(self, gone: Iterable[Endpoint]) -> ServiceRuleSet:
        """The same rules minus ``gone``: how the kubelet drains a pod it is about to stop
        (apply this before SIGTERM) without waiting for the control plane's next sync."""
        drop = frozenset(gone)
        return ServiceRuleSet(
            tuple(
                replace(rule, endpoints=tuple(e for e in rule.endpoints if e not in drop))
                for rule in self.rules
            )
        )

    @classmethod
    def from_protocol(
        cls,
        services: Sequence[ServiceRule],
        *,
        virtual_range: str = DEFAULT_VIRTUAL_RANGE,
    ) -> ServiceRuleSet:
        """The adapter from the wire: ``ServiceRuleSet.from_protocol(sync.services)``.

        A Service whose ``clusterIP`` lies in ``virtual_range`` keeps it (the control plane
        chose it); the others get a stable address hashed from namespace/name, so every node
        computes the same one without talking to the others. Endpoints that carry a
        ``hostname`` (pods of a headless Service) also get a rule of their own per pod, at an
        address hashed from ``namespace/hostname.name`` after the Services took theirs, so a
        pod's name never moves a Service's address.
        """
        pinned = {
            (svc.namespace, svc.name): svc.cluster_ip
            for svc in services
            if svc.cluster_ip is not None
        }
        addresses = allocate_virtual_addresses(
            [(svc.namespace, svc.name) for svc in services],
            pinned=pinned,
            virtual_range=virtual_range,
        )
        pod_names = {
            (svc.namespace, f"{ep.hostname}.{svc.name}")
            for svc in services
            for port in svc.ports
            for ep in port.endpoints
            if ep.hostname is not None
        }
        if pod_names:
            addresses = allocate_virtual_addresses(
                [*addresses, *pod_names], pinned=addresses, virtual_range=virtual_range
            )
        rules: list[PortRule] = []
        for svc in sorted(services, key=lambda s: (s.namespace, s.name)):
            hostnames = sorted(
                {ep.hostname for port in svc.ports for ep in port.endpoints if ep.hostname}
            )
            for hostname in hostnames:
                for port in svc.ports:
                    rules.append(
                        PortRule(
                            namespace=svc.namespace,
                            name=svc.name,
                            hostname=hostname,
                            port=port.port,
                            port_name=port.name,
                            protocol=port.protocol,
                            virtual_address=addresses[(svc.namespace, f"{hostname}.{svc.name}")],
                            endpoints=_sorted_endpoints(
                                ep for ep in port.endpoints if ep.hostname == hostname
                            ),
                        )
                    )
            for port in svc.ports:
                rules.append(
                    PortRule(
                        namespace=svc.namespace,
                        name=svc.name,
                        port=port.port,
                        port_name=port.name,
                        protocol=port.protocol,
                        virtual_address=addresses[(svc.namespace, svc.name)],
                        node_port=port.node_port,
                        endpoints=_sorted_endpoints(port.endpoints),
                        external_local=svc.external_traffic_policy == "Local",
                    )
                )
        return cls(tuple(rules))
