"""The reconciler's end of the agent protocol (``schemas.protocol``): framing and meaning.

``NodeConnection`` uses it to turn a desired set into a ``sync`` line and an agent's line into
a message, and to answer the few questions the connection asks of a message (which
generation does this ack, does this error refuse a sync); the pool, the desired-set builder
and the node dispatcher use its types (``DesiredSet``, ``Ack``, ``AgentMessage``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from reconciler.nodes._packed import POD_JSON
from schemas.core import ConfigMap, Secret
from schemas.networking import Ingress
from schemas.pod import Pod
from schemas.protocol import (
    FEATURE_ENDPOINT_HOSTNAMES,
    FEATURE_EXTERNAL_TRAFFIC_POLICY,
    FEATURE_INGRESSES,
    FEATURE_NODE_UNCHANGED,
    FEATURE_PODS_UNCHANGED,
    FEATURE_SERVICE_DELTAS,
    FEATURE_SERVICES_UNCHANGED,
    FEATURE_STATUS_DELTAS,
    MAX_LINE_BYTES,
    WIRE_FEATURES,
    Ack,
    ErrorMessage,
    Hello,
    LogsChunk,
    ProtocolError,
    RuleDeltaMemo,
    ServiceRule,
    ServiceRulesDelta,
    Status,
    Sync,
    decode_message,
    encode_message,
    service_rules_delta,
)

__all__ = [
    "FEATURE_INGRESSES",
    "MAX_LINE_BYTES",
    "Ack",
    "AgentHello",
    "AgentMessage",
    "DesiredSet",
    "ErrorMessage",
    "WireError",
]

AgentHello = Hello
AgentMessage = Hello | Ack | Status | LogsChunk | ErrorMessage

_SYNC_ID_PREFIX = "sync-"
#: Rule pairs already diffed (``schemas.protocol.RuleDeltaMemo``), shared by every node's
#: connection thread. It keeps both rules of each pair alive, each with all its endpoints:
#: past ``_MEMO_SLACK`` entries per current rule, pairs whose newer rule is no longer the
#: current one are dropped (``_prune_rule_deltas``).
_RULE_DELTAS: Final[RuleDeltaMemo] = {}
_RULE_DELTAS_LOCK: Final = threading.Lock()
_MEMO_SLACK: Final = 8
#: A delta that lists more endpoints than this share of the rules' goes as the whole rules:
#: merging it and writing out the merged rules costs the agent more than decoding them whole.
DELTA_MAX_SHARE: Final = 0.25


class WireError(Exception):
    """A line from the agent that is not a message the reconciler accepts."""


@dataclass(frozen=True, slots=True)
class DesiredSet:
    """A node's complete desired state: what one ``sync`` carries besides its generation.

    Compared by value, so pushing an unchanged set is recognised and not re-sent.
    """

    pods: tuple[Pod, ...] = ()
    config_maps: tuple[ConfigMap, ...] = ()
    # Never in repr: a DesiredSet may end up in a log line or an exception message.
    secrets: tuple[Secret, ...] = field(default=(), repr=False)
    services: tuple[ServiceRule, ...] = ()
    ingresses: tuple[Ingress, ...] = ()
    #: The wire JSON of each pod, in order and packed (``_packed.POD_JSON``), when the
    #: computing side had it cached (``desired.PodWireCache``): a sync then encodes its pods
    #: by joining them unpacked.
    pod_json: tuple[bytes, ...] | None = field(default=None, compare=False, repr=False)
    #: The wire JSON of ``services``, comma-joined in order, when the computing side had it:
    #: every node gets the same rules, so they are serialized once per change, not per node.
    services_json: str | None = field(default=None, compare=False, repr=False)


def encode_hello(node: str) -> bytes:
    """The control plane's hello: the wire features it reads (an agent sends status deltas,
    and leaves an unchanged node status out, only to a peer that lists them)."""
    return encode_message(
        Hello(
            role="reconciler",
            node_name=node,
            capabilities=[FEATURE_STATUS_DELTAS, FEATURE_NODE_UNCHANGED],
        )
    )


def agent_features(hello: Hello | None) -> frozenset[str]:
    """The wire features an agent's hello lists (none before its hello)."""
    return frozenset(hello.capabilities) if hello is not None else frozenset()


def _older_form(features: frozenset[str]) -> dict[str, Any]:
    """What to leave out of a sync for an agent that lacks some of ``WIRE_FEATURES``."""
    exclude: dict[str, Any] = {}
    if FEATURE_SERVICES_UNCHANGED not in features:
        exclude["services_unchanged"] = True
    if FEATURE_PODS_UNCHANGED not in features:
        exclude["pods_unchanged"] = True
    if FEATURE_SERVICE_DELTAS not in features:
        exclude.update(services_base=True, services_changed=True, services_removed=True)
    if FEATURE_INGRESSES not in features:
        exclude["ingresses"] = True
    rule: dict[str, Any] = {}
    if FEATURE_ENDPOINT_HOSTNAMES not in features:
        rule["ports"] = {"__all__": {"endpoints": {"__all__": {"hostname"}}}}
    if FEATURE_EXTERNAL_TRAFFIC_POLICY not in features:
        rule["external_traffic_policy"] = True
    if rule:
        exclude["services"] = {"__all__": rule}
    return exclude


def encode_sync(
    generation: int,
    desired: DesiredSet,
    *,
    term: int = 0,
    services_unchanged: bool = False,
    pods_unchanged: bool = False,
    services_base: tuple[int, Sequence[ServiceRule]] | None = None,
    features: frozenset[str] = frozenset(WIRE_FEATURES),
) -> bytes:
    """One sync line for an agent that understands ``features``; ``services_unchanged`` and
    ``pods_unchanged`` (each only with its feature) leave the Service rules or the pods out
    (the agent keeps those of the sync it applied last on this connection). Without a
    feature, its fields are left out: an agent of an older release gets no Ingresses, no
    per-pod names of headless Services, and Service rules without ``externalTrafficPolicy``
    (it serves them as ``Cluster``).

    ``services_base``: the generation and the rules of the sync the agent applied last on
    this connection; an agent that lists ``serviceDeltas`` then gets only the rules changed
    since (``Sync.servicesBase``), in place of them all, unless the delta lists more than
    ``DELTA_MAX_SHARE`` of the rules' endpoints.

    With ``desired.pod_json`` / ``services_json`` the pods and rules are not serialized
    again: their cached JSON is spliced into the message (every model serializes the same
    alone as nested), in place of the fields.
    """
    if FEATURE_SERVICES_UNCHANGED not in features:
        services_unchanged = False
    if FEATURE_PODS_UNCHANGED not in features:
        pods_unchanged = False
    exclude = _older_form(features)
    delta = None
    if (
        not services_unchanged
        and services_base is not None
        and FEATURE_SERVICE_DELTAS in features
        and "services" not in exclude  # an older agent's rules are encoded field by field
    ):
        if len(_RULE_DELTAS) > _MEMO_SLACK * max(1, len(desired.services)):
            _prune_rule_deltas(desired.services)
        delta = service_rules_delta(services_base[1], desired.services, memo=_RULE_DELTAS)
        if delta is not None and _endpoints_in(delta) > DELTA_MAX_SHARE * _endpoints_of(
            desired.services
        ):
            delta = None
    if delta is None:
        exclude.update(services_changed=True, services_removed=True)
    spliced: list[bytes] = []
    if (
        not pods_unchanged
        and desired.pods
        and desired.pod_json is not None
        and len(desired.pod_json) == len(desired.pods)
    ):
        exclude["pods"] = True
        spliced.append(b'"pods":[' + b",".join(map(POD_JSON.unpack, desired.pod_json)) + b"]")
    if (
        not services_unchanged
        and delta is None
        and desired.services
        and desired.services_json is not None
        and "services" not in exclude  # an older agent's rules are encoded field by field
    ):
        exclude["services"] = True
        spliced.append(b'"services":[' + desired.services_json.encode() + b"]")
    line = encode_message(
        Sync(
            id=f"{_SYNC_ID_PREFIX}{generation}",
            generation=generation,
            term=term,
            pods=[] if pods_unchanged else list(desired.pods),
            pods_unchanged=pods_unchanged,
            config_maps=list(desired.config_maps),
            secrets=list(desired.secrets),
            services=(
                []
                if services_unchanged
                else delta.services
                if delta is not None
                else list(desired.services)
            ),
            services_unchanged=services_unchanged,
            services_base=services_base[0] if delta is not None and services_base else None,
            services_changed=delta.changed if delta is not None else [],
            services_removed=delta.removed if delta is not None else [],
            ingresses=list(desired.ingresses),
        ),
        exclude=exclude or None,
    )
    if not spliced:
        return line
    head = line.rstrip(b"\n")
    assert head.endswith(b"}")
    return head[:-1] + b"," + b",".join(spliced) + b"}\n"


def _prune_rule_deltas(current: Sequence[ServiceRule]) -> None:
    """Drop the memo's pairs whose newer rule is not one of ``current``: no sync diffs
    against them again, and each holds a superseded rule with all its endpoints."""
    live = {id(rule) for rule in current}
    with _RULE_DELTAS_LOCK:
        for key, (_, newer, _) in list(_RULE_DELTAS.items()):
            if id(newer) not in live:
                _RULE_DELTAS.pop(key, None)


def _endpoints_of(rules: Sequence[ServiceRule]) -> int:
    return sum(len(port.endpoints) for rule in rules for port in rule.ports)


def _endpoints_in(delta: ServiceRulesDelta) -> int:
    """The endpoints a delta lists: those of its whole rules, and those added and removed."""
    changed = sum(len(p.added) + len(p.removed) for rule in delta.changed for p in rule.ports)
    return _endpoints_of(delta.services) + changed


def decode(line: bytes) -> AgentMessage:
    try:
        message = decode_message(line.rstrip(b"\r\n"))
    except ProtocolError as exc:
        raise WireError(f"{exc.code}: {exc}") from None
    if isinstance(message, Hello | Ack | Status | LogsChunk | ErrorMessage):
        return message
    raise WireError(f"the agent sent a {message.type!r} message, which only a reconciler sends")


def describe_hello(hello: Hello) -> str:
    return f"{hello.node_name or '?'} {hello.agent_version or ''} protocol {hello.versions}".strip()


def reported_generation(message: AgentMessage) -> int | None:
    """The generation the agent says it has applied, if this message says so."""
    if isinstance(message, Status):
        return message.generation
    if isinstance(message, Ack) and message.applied:
        return message.generation
    return None


def refused_generation(message: AgentMessage) -> int | None:
    """The generation of our sync that this error answers, if it answers one."""
    if isinstance(message, ErrorMessage) and message.in_reply_to:
        suffix = message.in_reply_to.removeprefix(_SYNC_ID_PREFIX)
        if suffix != message.in_reply_to and suffix.isdigit():
            return int(suffix)
    return None
