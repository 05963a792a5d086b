"""Lines from the control plane into messages, validating only the parts of a sync that changed.

The agent server (:mod:`agent.server`) decodes every line it reads with one
:class:`SyncDecoder`. A node's consecutive syncs repeat most of their pods and Service rules
(a rollout changes a few pods at a time; endpoint churn changes a Service or two, and each
rule lists every endpoint of the fleet), so the decoder keeps the validated pods and rules of
the last sync keyed by their JSON text and hands the same frozen models back for the same
text: validation, and everything after it keyed by identity (the desired-state file's
encoding, the kubelet's pod specs, the proxy's rules), is then paid once per change. Any
other message, and every part that is new, goes through :func:`schemas.protocol.decode_object`
as before, so what a line may hold and how a bad one is refused do not change.
"""

from __future__ import annotations

import json
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from schemas.protocol import Endpoint as WireEndpoint
from schemas.protocol import Message, ServiceRule, Sync, decode_object, load_line

#: The list fields of a sync whose elements are kept between syncs (wire names).
_KEPT: Final = ("pods", "services")
#: Endpoint models kept (cleared when full): the backends of a large fleet, and more.
_MAX_ENDPOINTS: Final = 65536


class SyncDecoder:
    """Decodes lines like :func:`schemas.protocol.decode_message`, reusing a sync's unchanged
    pods and Service rules from the sync decoded before."""

    def __init__(self) -> None:
        self._known: dict[str, dict[str, BaseModel]] = {field: {} for field in _KEPT}
        self._texts: dict[int, tuple[BaseModel, str]] = {}
        # (address, port, hostname) of an endpoint in its plain form -> its model.
        self._endpoints: dict[tuple[str, int, str | None], WireEndpoint] = {}

    def decode(self, line: bytes | str) -> Message:
        """One line (without its newline) as a message, or :class:`ProtocolError`."""
        raw = load_line(line)
        if not isinstance(raw, dict) or raw.get("type") != "sync":
            return decode_object(raw)
        texts: dict[str, list[str]] = {}
        for field in _KEPT:
            items = raw.get(field)
            # Absent or empty (``podsUnchanged``, ``servicesUnchanged``): the kept ones stay.
            if not isinstance(items, list) or not items:
                continue
            known = self._known[field]
            keys = [json.dumps(item, sort_keys=True) for item in items]
            texts[field] = keys
            raw[field] = [known.get(key, item) for key, item in zip(keys, items, strict=True)]
        rules = raw.get("services")
        for rule in rules if isinstance(rules, list) else ():
            if isinstance(rule, dict):
                self._reuse_endpoints(rule)
        message = decode_object(raw)
        if isinstance(message, Sync):
            # Only this sync's parts are kept: the cache is as large as one desired set.
            for field, keys in texts.items():
                models: list[BaseModel] = getattr(message, field)
                self._known[field] = dict(zip(keys, models, strict=True))
            self._texts = {
                id(model): (model, key)
                for known in self._known.values()
                for key, model in known.items()
            }
        return message

    def _reuse_endpoints(self, rule: dict[str, Any]) -> None:
        """In a changed rule, the endpoints seen before as the models made of them.

        A rule lists every endpoint of its Service across the fleet and a change moves a few
        of them; the others are not validated again. Only the plain form is reused (a string
        address, an integer port, a string hostname or none, nothing else), so that a value
        the protocol refuses (``true`` for a port, an extra field) is always validated.
        """
        known = self._endpoints
        ports = rule.get("ports")
        for port in ports if isinstance(ports, list) else ():
            endpoints = port.get("endpoints") if isinstance(port, dict) else None
            if not isinstance(endpoints, list):
                continue
            for index, endpoint in enumerate(endpoints):
                # The plain form, checked inline (thousands per rule on a large fleet):
                # exact types, as a bool is an int to isinstance and strict validation
                # refuses it; the hostname, if any, a string; no other field.
                if type(endpoint) is not dict:
                    continue
                address, port_no = endpoint.get("address"), endpoint.get("port")
                if type(address) is not str or type(port_no) is not int:
                    continue
                if len(endpoint) == 2:
                    key: tuple[str, int, str | None] = (address, port_no, None)
                else:
                    hostname = endpoint.get("hostname")
                    if type(hostname) is not str or len(endpoint) != 3:
                        continue
                    key = (address, port_no, hostname)
                model = known.get(key)
                if model is None:
                    try:
                        model = WireEndpoint.model_validate(endpoint)
                    except ValidationError:
                        continue  # left as it is: the whole message's validation says why
                    if len(self._endpoints) >= _MAX_ENDPOINTS:
                        self._endpoints.clear()
                    self._endpoints[key] = model
                endpoints[index] = model

    def text(self, model: BaseModel) -> str | None:
        """The JSON a kept pod or rule was decoded from (keys sorted), or None.

        What the desired-state file writes for it instead of encoding the model again:
        decoding that text gives an equal model, as the line did.
        """
        kept = self._texts.get(id(model))
        return kept[1] if kept is not None and kept[0] is model else None


class MergedRuleTexts:
    """The wire JSON of Service rules merged from a delta (``servicesBase``), for the
    desired-state file, assembled from each endpoint's JSON.

    A merged rule is a new model the decoder never read, and a rule lists every endpoint of
    its Service across the fleet: serializing it whole on every delta would cost the agent
    more than the delta saved. Each endpoint's JSON is kept by its model (the merge keeps
    the base's models), so a rule costs its own fields, its ports' and its new endpoints'.
    """

    def __init__(self) -> None:
        self._endpoints: dict[int, tuple[WireEndpoint, str]] = {}
        self._rules: dict[int, tuple[ServiceRule, str]] = {}

    def note(self, rules: list[ServiceRule], merged: set[int]) -> None:
        """Keep the JSON of the rules in ``rules`` whose ids are in ``merged``, and of every
        endpoint they list (only these: the cache is as large as one set of rules)."""
        endpoints: dict[int, tuple[WireEndpoint, str]] = {}
        texts: dict[int, tuple[ServiceRule, str]] = {}
        for rule in rules:
            if id(rule) not in merged:
                continue
            ports = []
            for port in rule.ports:
                listed = []
                for endpoint in port.endpoints:
                    kept = self._endpoints.get(id(endpoint)) or endpoints.get(id(endpoint))
                    if kept is None or kept[0] is not endpoint:
                        kept = (endpoint, _json(endpoint))
                    endpoints[id(endpoint)] = kept
                    listed.append(kept[1])
                ports.append(_spliced(_json(port, exclude={"endpoints"}), "endpoints", listed))
            texts[id(rule)] = (rule, _spliced(_json(rule, exclude={"ports"}), "ports", ports))
        self._endpoints = endpoints
        self._rules = texts

    def text(self, model: BaseModel) -> str | None:
        """The JSON of a rule noted last, or None."""
        kept = self._rules.get(id(model))
        return kept[1] if kept is not None and kept[0] is model else None


def _json(model: BaseModel, *, exclude: set[str] | None = None) -> str:
    return model.model_dump_json(by_alias=True, exclude_none=True, exclude=exclude)


def _spliced(head: str, field: str, items: list[str]) -> str:
    """``head`` (a JSON object with at least one field) with ``field`` set to ``items``."""
    return f'{head.removesuffix("}")},"{field}":[{",".join(items)}]}}'
