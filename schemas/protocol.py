"""The wire protocol between the reconciler and a node agent (version 1).

Carried as JSON lines (one object per line, at most :data:`MAX_LINE_BYTES`) over the stdio of
``capstan-agent connect`` (over SSH, or a local pipe), which bridges to the agent daemon's
Unix socket. Every message has ``"v": 1`` and a ``type`` that selects its model:

reconciler → agent
    ``hello`` (optional, says who is talking), ``sync`` (the node's **complete** desired set
    with a generation), ``logs`` (a log request).
agent → reconciler
    ``hello`` (first line on every connection: versions, node name, capabilities),
    ``ack`` (a sync was accepted, or ignored and why), ``status`` (node status, every pod's
    status and the last applied generation; sent on change and as a heartbeat),
    ``logs_chunk`` (log data for a request, ``eof`` on the last), ``error``.

A line that is not valid JSON, names an unknown type or version, or fails validation gets an
``error`` reply and changes nothing; the connection stays usable. Validation uses the API's
rules for every identifier a side acts on — names and namespaces (DNS-1123 labels and
subdomains, Service names DNS-1035 labels), pod uids (:data:`Uid`), ports and addresses — so
a garbled or hostile line never reaches a path, a proxy rule script or a container name.
Field names are camelCase on the wire (``nodeName``, ``configMaps``), snake_case in Python,
as everywhere in :mod:`schemas`.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import json
import re
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError, model_validator

from schemas._validation import (
    DNS1035Label,
    DNSLabel,
    DNSSubdomain,
    NonNegativeInt,
    PortName,
    PortNumber,
    Problems,
    dns1123_subdomain_problem,
    rule_error,
)
from schemas.core import ConfigMap, Secret
from schemas.meta import KubeModel
from schemas.networking import Ingress
from schemas.node import NodeStatus
from schemas.pod import Pod, PodStatus, Protocol

if TYPE_CHECKING:
    from pydantic.main import IncEx

__all__ = [
    "AGENT_SOCKET_ENV",
    "DEFAULT_AGENT_SOCKET",
    "DEFAULT_HEARTBEAT_S",
    "FEATURE_ENDPOINT_HOSTNAMES",
    "FEATURE_EXTERNAL_TRAFFIC_POLICY",
    "FEATURE_INGRESSES",
    "FEATURE_NODE_UNCHANGED",
    "FEATURE_PODS_UNCHANGED",
    "FEATURE_SERVICES_UNCHANGED",
    "FEATURE_SERVICE_DELTAS",
    "FEATURE_STATUS_DELTAS",
    "MAX_LINE_BYTES",
    "PROTOCOL_VERSION",
    "WIRE_FEATURES",
    "Ack",
    "Endpoint",
    "ErrorCode",
    "ErrorMessage",
    "Hello",
    "LogsChunk",
    "LogsRequest",
    "Message",
    "PodReport",
    "ProtocolError",
    "RuleDeltaMemo",
    "ServicePortDelta",
    "ServicePortRule",
    "ServiceRule",
    "ServiceRuleDelta",
    "ServiceRuleKey",
    "ServiceRulesDelta",
    "Status",
    "Sync",
    "Uid",
    "decode_message",
    "encode_message",
    "merge_service_rules",
    "node_address_problem",
    "service_rules_delta",
    "uid_problem",
    "wire_cluster_ip",
]

PROTOCOL_VERSION: Final = 1
MAX_LINE_BYTES: Final = 16 * 1024 * 1024
"""Longest accepted line (bytes, newline excluded); a longer one is answered ``too_large``."""
# Where the agent daemon listens on a node, and the variable that moves it: read by the agent
# (`capstan-agent serve` / `connect`) and by the control plane (a local agent, `capstan logs`).
DEFAULT_AGENT_SOCKET: Final = "/run/capstan/agent.sock"
AGENT_SOCKET_ENV: Final = "CAPSTAN_AGENT_SOCKET"
#: Seconds between an agent's status heartbeats (the kubelet's nodeStatusUpdateFrequency).
#: The control plane stamps a node's lease with when the last one arrived and writes the
#: leases every 10 s, so a lease is at most this plus 10 s old: well inside the node monitor
#: grace period (40 s by default).
DEFAULT_HEARTBEAT_S: Final = 10.0

# Wire features newer than the protocol's first release. Each side lists those it understands
# in its hello's ``capabilities`` and sends a feature's fields only to a peer that lists it,
# the older form otherwise: a rolling upgrade runs agents and control planes of different
# releases side by side, and each side refuses fields it does not know.
FEATURE_SERVICES_UNCHANGED: Final = "servicesUnchanged"
"""``Sync.servicesUnchanged``: the agent keeps the Service rules of its last applied sync."""
FEATURE_PODS_UNCHANGED: Final = "podsUnchanged"
"""``Sync.podsUnchanged``: the agent keeps the pods of its last applied sync."""
FEATURE_INGRESSES: Final = "ingresses"
"""``Sync.ingresses``: the agent's ingress proxy serves them."""
FEATURE_ENDPOINT_HOSTNAMES: Final = "endpointHostnames"
"""``Endpoint.hostname``: per-pod names through a headless Service."""
FEATURE_EXTERNAL_TRAFFIC_POLICY: Final = "externalTrafficPolicy"
"""``ServiceRule.externalTrafficPolicy``: ``Local`` node ports use only the node's own endpoints.
An agent without it gets the rule without the field, and serves the Service as ``Cluster``."""
FEATURE_STATUS_DELTAS: Final = "statusDeltas"
"""``Status.complete`` / ``removed``: a status may carry only the pods that changed."""
FEATURE_NODE_UNCHANGED: Final = "nodeUnchanged"
"""``Status.node`` may be left out of a status that is not ``complete``: the node's status
is as last reported on this connection but for heartbeat times (the kubelet's split of its
lease from ``nodeStatusReportFrequency``). An idle node's heartbeat is then a few bytes."""
FEATURE_SERVICE_DELTAS: Final = "serviceDeltas"
"""``Sync.servicesBase``: the sync carries only the Service rules that changed since the sync
of that generation, the last this connection applied (``services``: new or changed whole,
``servicesChanged``: endpoints added and removed per port, ``servicesRemoved``: gone)."""
WIRE_FEATURES: Final = (
    FEATURE_SERVICES_UNCHANGED,
    FEATURE_PODS_UNCHANGED,
    FEATURE_INGRESSES,
    FEATURE_ENDPOINT_HOSTNAMES,
    FEATURE_STATUS_DELTAS,
    FEATURE_NODE_UNCHANGED,
    FEATURE_EXTERNAL_TRAFFIC_POLICY,
    FEATURE_SERVICE_DELTAS,
)

ErrorCode = Literal[
    "malformed",  # not JSON, or not a JSON object
    "unsupported_version",  # "v" is not one this side speaks
    "unknown_type",  # "type" names no message
    "invalid",  # the type is known but a field is wrong
    "too_large",  # the line exceeds MAX_LINE_BYTES
    "unexpected",  # a valid message this side does not accept (e.g. a status sent to the agent)
    "not_found",  # a logs request for a pod or container the agent does not run
    "internal",  # the agent failed; the message says how
]


_UID: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SHOWN: Final = 80


def uid_problem(value: str) -> str | None:
    """Why ``value`` is not a pod uid the agent may use as a directory name, or None."""
    if len(value) > 63 or not _UID.fullmatch(value):
        return (
            "must be a uid: lowercase letters, digits and '-' (a UUID as the API assigns), "
            "at most 63 characters"
        )
    return None


def _shown(value: str) -> str:
    return repr(value[:_SHOWN]) + ("..." if len(value) > _SHOWN else "")


def _uid(value: str) -> str:
    problem = uid_problem(value)
    if problem is not None:
        raise rule_error("uid", f"{_shown(value)}: {problem}")
    return value


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise rule_error("ip_address", f"{_shown(value)}: must be an IP address") from None
    return value


@functools.lru_cache(maxsize=4096)
def node_address_problem(value: str) -> str | None:
    """Why ``value`` is not where a node is reached (an IP address or a DNS name), or None."""
    # Cached: every sync lists each Service's endpoints, the same few node addresses
    # thousands of times on a large fleet.
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if dns1123_subdomain_problem(value) is not None:
            return "must be an IP address or a DNS name"
    return None


def _node_address(value: str) -> str:
    problem = node_address_problem(value)
    if problem is not None:
        raise rule_error("node_address", f"{_shown(value)}: {problem}")
    return value


def wire_cluster_ip(value: str | None) -> str | None:
    """The ``clusterIP`` a Service pins on the wire: its address when it is one, else None.

    Used by the reconciler where it builds :class:`ServiceRule`: a Service's clusterIP may be
    ``"None"`` (headless) or unset, and the agent then picks the address itself.
    """
    if value is None:
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return None
    return value


Uid = Annotated[str, AfterValidator(_uid)]
IPAddress = Annotated[str, AfterValidator(_ip_address)]
NodeAddress = Annotated[str, AfterValidator(_node_address)]


class _Message(KubeModel):
    v: Literal[1] = 1
    id: str | None = Field(default=None, max_length=128)
    """Optional correlation id; replies carry it back as ``inReplyTo``."""


class Hello(_Message):
    type: Literal["hello"] = "hello"
    versions: list[int] = Field(default_factory=lambda: [PROTOCOL_VERSION])
    role: Literal["agent", "reconciler", "cli"]
    node_name: DNSSubdomain | None = None
    agent_version: str | None = None
    capabilities: list[str] = Field(default_factory=list)


class Endpoint(KubeModel):
    """A ready backend of a Service port: a node address and the host port the pod publishes.

    ``hostname``: for a headless Service, the pod's ``spec.hostname`` when its
    ``spec.subdomain`` names the Service; the node then also gives that pod its own name,
    ``<hostname>.<service>.<namespace>`` (a StatefulSet's ``web-0.web.ns``).
    """

    address: NodeAddress
    port: PortNumber
    hostname: DNSLabel | None = None


class ServicePortRule(KubeModel):
    """One port of a Service and where its traffic goes."""

    name: PortName | None = None
    protocol: Protocol = "TCP"
    port: PortNumber
    node_port: int | None = Field(default=None, ge=1, le=65535)
    endpoints: list[Endpoint] = Field(default_factory=list)


class ServiceRule(KubeModel):
    """A Service as a node's proxy programs it: only *ready* endpoints are listed.

    ``externalTrafficPolicy: Local`` (a NodePort rule only; absent means ``Cluster``): traffic
    reaching a node port goes only to the endpoints whose address is one of that node's own,
    without masquerading, and a node with none of them does not forward it. The virtual
    address (in-cluster traffic) still goes to every endpoint.
    """

    namespace: DNSLabel
    name: DNS1035Label
    type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    cluster_ip: IPAddress | None = Field(default=None, alias="clusterIP")
    ports: list[ServicePortRule] = Field(default_factory=list)
    external_traffic_policy: Literal["Local"] | None = None


class ServiceRuleKey(KubeModel):
    """Names a Service rule of the base a delta sync is against (``servicesRemoved``)."""

    namespace: DNSLabel
    name: DNS1035Label


class ServicePortDelta(KubeModel):
    """How one port's endpoints changed: ``removed`` (each as the base lists it) are taken
    out, ``added`` put in; the port's endpoints are then in (address, port) order."""

    protocol: Protocol = "TCP"
    port: PortNumber
    added: list[Endpoint] = Field(default_factory=list)
    removed: list[Endpoint] = Field(default_factory=list)


class ServiceRuleDelta(KubeModel):
    """A rule of the base whose endpoints alone changed, port by port (``servicesChanged``)."""

    namespace: DNSLabel
    name: DNS1035Label
    ports: list[ServicePortDelta] = Field(default_factory=list)


class Sync(_Message):
    """The node's complete desired state. Pods absent from ``pods`` must not run on the node.

    ``configMaps`` and ``secrets`` are those the pods reference (env and volumes), and
    ``secrets`` also holds the TLS Secrets of ``ingresses`` (the Ingresses of Capstan's class,
    which every node's ingress proxy serves); the agent never logs their values. A sync whose
    generation is lower than the applied one is acknowledged with ``applied: false`` and
    ignored; an equal one is re-applied (a no-op). ``term`` is the sending control plane's
    leadership term: a sync from an older term than the newest the agent took is refused
    whatever its generation (a deposed leader).

    ``servicesUnchanged``: the Service rules are those of the sync the agent applied last
    (the sender saw it acknowledged on this connection), and ``services`` is empty. Every
    node gets every Service's endpoints, so on a large fleet the rules are most of each
    sync; a node whose pods changed gets only its pods. ``podsUnchanged`` likewise keeps the
    pods of that sync (``pods`` is empty): endpoint churn elsewhere in the fleet then sends a
    node only the rules. An agent with no applied sync refuses either (``applied: false``).
    """

    type: Literal["sync"] = "sync"
    generation: NonNegativeInt
    term: NonNegativeInt = 0
    pods: list[Pod] = Field(default_factory=list)
    config_maps: list[ConfigMap] = Field(default_factory=list)
    secrets: list[Secret] = Field(default_factory=list)
    services: list[ServiceRule] = Field(default_factory=list)
    ingresses: list[Ingress] = Field(default_factory=list)
    services_unchanged: bool = False
    pods_unchanged: bool = False
    services_base: NonNegativeInt | None = None
    services_changed: list[ServiceRuleDelta] = Field(default_factory=list)
    services_removed: list[ServiceRuleKey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _identified(self) -> Sync:
        # The API assigns every pod a uid and a namespace; the agent keys containers and
        # directories by them, so a pod on the wire without them (or with a uid that is not
        # one) is refused whole, before anything acts on it.
        problems = Problems("Sync")
        for index, pod in enumerate(self.pods):
            uid = pod.metadata.uid
            if uid is None:
                problems.add(("pods", index, "metadata", "uid"), "missing", "Field required")
            elif (problem := uid_problem(uid)) is not None:
                problems.add(("pods", index, "metadata", "uid"), "uid", f"{_shown(uid)}: {problem}")
            if pod.metadata.namespace is None:
                problems.add(("pods", index, "metadata", "namespace"), "missing", "Field required")
        named: tuple[tuple[str, list[ConfigMap] | list[Secret] | list[Ingress]], ...] = (
            ("configMaps", self.config_maps),
            ("secrets", self.secrets),
            ("ingresses", self.ingresses),
        )
        for field, objects in named:
            for index, obj in enumerate(objects):
                if obj.metadata.namespace is None:
                    problems.add(
                        (field, index, "metadata", "namespace"), "missing", "Field required"
                    )
        if self.services_base is None:
            for field, listed in (
                ("servicesChanged", self.services_changed),
                ("servicesRemoved", self.services_removed),
            ):
                if listed:
                    problems.add((field,), "delta", "only in a delta sync (with servicesBase)")
        elif self.services_unchanged:
            problems.add(
                ("servicesUnchanged",), "delta", "a delta sync (servicesBase) has rules to change"
            )
        problems.raise_if_any()
        return self


class Ack(_Message):
    type: Literal["ack"] = "ack"
    in_reply_to: str | None = None
    generation: NonNegativeInt
    applied: bool
    message: str = ""


class PodReport(KubeModel):
    """One pod's status as the agent sees it, keyed by namespace, name and uid."""

    namespace: DNSLabel
    name: DNSSubdomain
    uid: Uid
    status: PodStatus


class Status(_Message):
    """Node and pod status. ``generation`` is the last applied sync (None before the first).

    ``complete``: ``pods`` reports every pod the agent runs. Otherwise ``pods`` holds only
    those whose report changed since the last status on this connection (the heartbeat of
    an unchanged node carries none), ``removed`` the uids reported before that the agent no
    longer runs; the receiver keeps the other pods' last reports. ``node`` is None in such a
    status when the node's status changed only in its heartbeat times since the last one sent
    (only to a peer that lists ``nodeUnchanged``): the receiver keeps the last one. Every
    status still says the node is alive.
    """

    type: Literal["status"] = "status"
    node_name: DNSSubdomain
    generation: NonNegativeInt | None = None
    node: NodeStatus | None = None
    pods: list[PodReport] = Field(default_factory=list)
    complete: bool = True
    removed: list[Uid] = Field(default_factory=list)

    @model_validator(mode="after")
    def _node_when_complete(self) -> Status:
        if self.complete and self.node is None:
            problems = Problems("Status")
            problems.add(("node",), "missing", "Field required in a complete status")
            problems.raise_if_any()
        return self


class LogsRequest(_Message):
    """Ask for a container's log: the last ``tail`` lines (all when None), then follow;
    ``previous``: the log of the attempt before the newest (the last terminated one)."""

    type: Literal["logs"] = "logs"
    namespace: DNSLabel
    pod: DNSSubdomain
    container: DNSLabel | None = None
    tail: NonNegativeInt | None = None
    follow: bool = False
    previous: bool = False


class LogsChunk(_Message):
    """Log text for the request ``inReplyTo``; ``eof`` marks the last chunk of that request."""

    type: Literal["logs_chunk"] = "logs_chunk"
    in_reply_to: str | None = None
    data: str = ""
    eof: bool = False


class ErrorMessage(_Message):
    type: Literal["error"] = "error"
    in_reply_to: str | None = None
    code: ErrorCode
    message: str


Message = Annotated[
    Hello | Sync | Ack | Status | LogsRequest | LogsChunk | ErrorMessage,
    Field(discriminator="type"),
]
_MESSAGE_TYPES: Final = frozenset({"hello", "sync", "ack", "status", "logs", "logs_chunk", "error"})


class ProtocolError(Exception):
    """A line that is not a message this protocol version knows; becomes an ``error`` reply."""

    def __init__(self, code: ErrorCode, message: str, *, in_reply_to: str | None = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.in_reply_to = in_reply_to

    def to_message(self) -> ErrorMessage:
        return ErrorMessage(code=self.code, message=str(self), in_reply_to=self.in_reply_to)


def _adapter() -> TypeAdapter[Message]:
    return TypeAdapter(Message)


_ADAPTER: Final[TypeAdapter[Message]] = _adapter()


def _describe(exc: ValidationError) -> str:
    # Never echo the input: a malformed sync may carry secret values.
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:5]:
        loc = ".".join(str(p) for p in error["loc"][1:]) or "(message)"
        parts.append(f"{loc}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def decode_message(line: bytes | str) -> Message:
    """Parse one line (without its newline) into a message, or raise :class:`ProtocolError`."""
    return decode_object(load_line(line))


def load_line(line: bytes | str) -> Any:
    """The JSON value of one line (without its newline), or :class:`ProtocolError`."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError("too_large", f"line exceeds {MAX_LINE_BYTES} bytes")
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("malformed", f"not JSON: {exc}") from None


def decode_object(raw: object) -> Message:
    """A message from a line already parsed as JSON (what :func:`decode_message` does after
    ``json.loads``); parts of ``raw`` may be models already, which are taken as they are."""
    if not isinstance(raw, dict):
        raise ProtocolError("malformed", "a message must be a JSON object")
    msg_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    if raw.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            "unsupported_version",
            f"protocol version {raw.get('v')!r} is not supported; this side speaks "
            f"{PROTOCOL_VERSION}",
            in_reply_to=msg_id,
        )
    kind = raw.get("type")
    if kind not in _MESSAGE_TYPES:
        raise ProtocolError(
            "unknown_type",
            f"unknown message type {kind!r}; known: {', '.join(sorted(_MESSAGE_TYPES))}",
            in_reply_to=msg_id,
        )
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise ProtocolError(
            "invalid", f"invalid {kind} message: {_describe(exc)}", in_reply_to=msg_id
        ) from None


def encode_message(message: Message, *, exclude: IncEx | None = None) -> bytes:
    """One message as one line, newline included; ``exclude`` leaves fields out (by field
    name, nested as pydantic takes it), for a peer that does not know them."""
    return (
        message.model_dump_json(by_alias=True, exclude_none=True, exclude=exclude).encode() + b"\n"
    )


_RuleKey = tuple[str, str]
_EndpointKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ServiceRulesDelta:
    """What turns one list of Service rules into another (a delta sync's three fields)."""

    services: list[ServiceRule]
    changed: list[ServiceRuleDelta]
    removed: list[ServiceRuleKey]


def _rule_key(rule: ServiceRule | ServiceRuleDelta | ServiceRuleKey) -> _RuleKey:
    return (rule.namespace, rule.name)


def _endpoint_key(endpoint: Endpoint) -> _EndpointKey:
    return (endpoint.address, endpoint.port)


def _in_order(keys: Sequence[Any]) -> bool:
    """Strictly ascending: sorted and no key twice."""
    return all(a < b for a, b in itertools.pairwise(keys))


def _port_delta(old: ServicePortRule, new: ServicePortRule) -> ServicePortDelta | None:
    """The endpoints ``new`` adds and removes against ``old`` (None when equal), or raises
    :class:`_Whole` when the merge could not give ``new`` back exactly."""
    if (old.name, old.protocol, old.port, old.node_port) != (
        new.name,
        new.protocol,
        new.port,
        new.node_port,
    ) or not _in_order([_endpoint_key(e) for e in new.endpoints]):
        raise _Whole
    before = {_endpoint_key(e): e for e in old.endpoints}
    if len(before) != len(old.endpoints):
        raise _Whole
    after = {_endpoint_key(e): e for e in new.endpoints}
    removed = [
        e for key, e in before.items() if (n := after.get(key)) is None or (n is not e and n != e)
    ]
    added = [
        e for key, e in after.items() if (o := before.get(key)) is None or (o is not e and o != e)
    ]
    if not removed and not added:
        return None
    return ServicePortDelta(protocol=new.protocol, port=new.port, added=added, removed=removed)


class _Whole(Exception):
    """A changed rule that goes whole on the wire, not as endpoint changes."""


def _rule_delta(old: ServiceRule, new: ServiceRule) -> ServiceRuleDelta | None:
    """``new``'s endpoint changes against ``old`` (None when equal); raises :class:`_Whole`
    when more than endpoints changed."""
    if (old.type, old.cluster_ip, old.external_traffic_policy, len(old.ports)) != (
        new.type,
        new.cluster_ip,
        new.external_traffic_policy,
        len(new.ports),
    ):
        raise _Whole
    ports = [
        delta
        for a, b in zip(old.ports, new.ports, strict=True)
        if (delta := _port_delta(a, b)) is not None
    ]
    if not ports:
        return None
    return ServiceRuleDelta(namespace=new.namespace, name=new.name, ports=ports)


RuleDeltaMemo = MutableMapping[
    tuple[int, int], tuple[ServiceRule, ServiceRule, ServiceRuleDelta | bool | None]
]
"""Rule-pair deltas kept by the ids of both rules (the rules are kept too, so the ids stay
theirs): every node of a fleet gets the same rule objects, so a pair is diffed once."""


def service_rules_delta(
    base: Sequence[ServiceRule],
    current: Sequence[ServiceRule],
    *,
    memo: RuleDeltaMemo | None = None,
) -> ServiceRulesDelta | None:
    """The delta that :func:`merge_service_rules` turns ``base`` into ``current`` with, or
    None when ``current`` is not in the wire's order (by namespace and name, each once).

    A rule whose Service changed in more than its endpoints, or whose endpoints are not in
    (address, port) order each once, goes whole; so does every new one.
    """
    if not _in_order([_rule_key(rule) for rule in current]):
        return None
    before = {_rule_key(rule): rule for rule in base}
    services: list[ServiceRule] = []
    changed: list[ServiceRuleDelta] = []
    for rule in current:
        old = before.pop(_rule_key(rule), None)
        if old is rule:
            continue
        if old is None:
            services.append(rule)
            continue
        kept = memo.get((id(old), id(rule))) if memo is not None else None
        if kept is not None and kept[0] is old and kept[1] is rule:
            delta = kept[2]
        else:
            try:
                delta = _rule_delta(old, rule)
            except _Whole:
                delta = True
            if memo is not None:
                memo[(id(old), id(rule))] = (old, rule, delta)
        if delta is True:
            services.append(rule)
        elif isinstance(delta, ServiceRuleDelta):
            changed.append(delta)
    removed = [ServiceRuleKey(namespace=ns, name=name) for ns, name in before]
    return ServiceRulesDelta(services=services, changed=changed, removed=removed)


def _merged_port(port: ServicePortRule, delta: ServicePortDelta, where: str) -> ServicePortRule:
    endpoints = {_endpoint_key(e): e for e in port.endpoints}
    if len(endpoints) != len(port.endpoints):
        raise ValueError(f"{where}: the base lists an endpoint twice")
    for endpoint in delta.removed:
        key = _endpoint_key(endpoint)
        if endpoints.get(key) != endpoint:
            raise ValueError(f"{where}: removed endpoint {key[0]}:{key[1]} is not in the base")
        del endpoints[key]
    for endpoint in delta.added:
        key = _endpoint_key(endpoint)
        if key in endpoints:
            raise ValueError(f"{where}: added endpoint {key[0]}:{key[1]} is already there")
        endpoints[key] = endpoint
    return port.model_copy(update={"endpoints": [endpoints[key] for key in sorted(endpoints)]})


def merge_service_rules(
    base: Sequence[ServiceRule],
    *,
    services: Sequence[ServiceRule],
    changed: Sequence[ServiceRuleDelta],
    removed: Sequence[ServiceRuleKey],
) -> list[ServiceRule]:
    """``base`` with a delta sync's rules applied, in the wire's order; unchanged rules are
    the base's own objects. Raises ValueError naming the field and rule when the delta is not
    against ``base`` (a rule or endpoint it changes or removes is not there, or one it adds
    is): the sender's base and the receiver's differ, and only the whole set can mend that."""
    rules = {_rule_key(rule): rule for rule in base}
    seen: set[_RuleKey] = set()

    def once(key: _RuleKey, field: str) -> str:
        where = f"{field}: Service {key[0]}/{key[1]}"
        if key in seen:
            raise ValueError(f"{where} appears twice in the delta")
        seen.add(key)
        return where

    for gone in removed:
        key = _rule_key(gone)
        where = once(key, "servicesRemoved")
        if rules.pop(key, None) is None:
            raise ValueError(f"{where} is not in the base")
    for delta in changed:
        key = _rule_key(delta)
        where = once(key, "servicesChanged")
        rule = rules.get(key)
        if rule is None:
            raise ValueError(f"{where} is not in the base")
        ports = list(rule.ports)
        index = {(p.protocol, p.port): i for i, p in enumerate(ports)}
        done: set[int] = set()
        for port_delta in delta.ports:
            at = index.get((port_delta.protocol, port_delta.port))
            port_where = f"{where} port {port_delta.port}/{port_delta.protocol}"
            if at is None or at in done:
                raise ValueError(f"{port_where}: not in the base, or changed twice")
            done.add(at)
            ports[at] = _merged_port(ports[at], port_delta, port_where)
        rules[key] = rule.model_copy(update={"ports": ports})
    for rule in services:
        key = _rule_key(rule)
        once(key, "services")
        rules[key] = rule
    return [rules[key] for key in sorted(rules)]
