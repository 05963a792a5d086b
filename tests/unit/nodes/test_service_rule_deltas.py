"""Service rule deltas (``serviceDeltas``): what the control plane encodes for a node whose
agent has a base, and what the agent merges it into, must give back the whole rules.

Each case runs the whole path but the socket: ``_wire.encode_sync`` with a base, the line
decoded by ``schemas.protocol.decode_message`` as the agent does, then
``merge_service_rules`` into the base; the result must equal the current rules exactly.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from reconciler.nodes import _wire
from reconciler.nodes._wire import DesiredSet, encode_sync
from schemas.protocol import (
    FEATURE_SERVICE_DELTAS,
    WIRE_FEATURES,
    Endpoint,
    ProtocolError,
    ServiceRule,
    Sync,
    decode_message,
    merge_service_rules,
    service_rules_delta,
)


def _rule(
    name: str, endpoints: list[tuple[str, int]], *, node_port: int | None = None, **fields: Any
) -> ServiceRule:
    port: dict[str, Any] = {
        "port": 80,
        "endpoints": [{"address": a, "port": p} for a, p in sorted(endpoints)],
    }
    if node_port is not None:
        port["nodePort"] = node_port
    return ServiceRule.model_validate(
        {"namespace": "default", "name": name, "ports": [port], **fields}
    )


def _sent(base: list[ServiceRule], current: list[ServiceRule]) -> tuple[bytes, Sync]:
    line = encode_sync(7, DesiredSet(services=tuple(current)), services_base=(6, base))
    sync = decode_message(line.rstrip(b"\n"))
    assert isinstance(sync, Sync)
    return line, sync


def _merged(base: list[ServiceRule], sync: Sync) -> list[ServiceRule]:
    return merge_service_rules(
        base,
        services=sync.services,
        changed=sync.services_changed,
        removed=sync.services_removed,
    )


def _random_rules(rng: random.Random, names: list[str]) -> list[ServiceRule]:
    rules = []
    for name in sorted(rng.sample(names, rng.randint(0, len(names)))):
        endpoints = {(f"127.0.{rng.randint(0, 3)}.{rng.randint(1, 9)}", 30000 + rng.randint(0, 9))}
        endpoints |= {
            (f"127.0.{rng.randint(0, 3)}.{rng.randint(1, 9)}", 30000 + rng.randint(0, 9))
            for _ in range(rng.randint(0, 12))
        }
        node_port = rng.choice([None, 30080])
        rules.append(_rule(name, sorted(endpoints), node_port=node_port))
    return rules


@pytest.mark.parametrize("seed", range(200))
def test_a_merged_delta_equals_the_whole_rules(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wire, "DELTA_MAX_SHARE", float("inf"))  # every change as a delta
    rng = random.Random(seed)
    names = [f"svc-{i}" for i in range(6)]
    base = _random_rules(rng, names)
    current = _random_rules(rng, names)
    # Some rules the same objects as the base's, as the dispatcher keeps an unchanged rule.
    by_name = {rule.name: rule for rule in base}
    current = [by_name.get(r.name, r) if rng.random() < 0.3 else r for r in current]
    _, sync = _sent(base, current)
    assert sync.services_base == 6
    assert _merged(base, sync) == current


def test_a_few_endpoints_changed_travel_as_a_few_endpoints() -> None:
    endpoints = [(f"127.0.{i // 250}.{i % 250 + 1}", 31000) for i in range(500)]
    base = [_rule(f"svc-{i}", endpoints) for i in range(10)]
    current = [_rule(f"svc-{i}", [*endpoints[2:], ("127.0.9.1", 31000)]) for i in range(10)]
    line, sync = _sent(base, current)
    whole = encode_sync(7, DesiredSet(services=tuple(current)))
    assert sync.services == []
    assert [len(d.ports[0].added) for d in sync.services_changed] == [1] * 10
    assert [len(d.ports[0].removed) for d in sync.services_changed] == [2] * 10
    assert len(line) * 50 < len(whole)
    assert _merged(base, sync) == current


def test_a_delta_listing_more_than_a_share_of_the_endpoints_goes_as_the_whole_rules() -> None:
    endpoints = [(f"127.0.0.{i + 2}", 31000) for i in range(100)]
    base = [_rule("a", endpoints)]
    small = [_rule("a", [*endpoints[12:], *((f"127.0.1.{i + 2}", 31000) for i in range(12))])]
    large = [_rule("a", [*endpoints[13:], *((f"127.0.1.{i + 2}", 31000) for i in range(13))])]
    assert _wire.DELTA_MAX_SHARE == 0.25
    _, sync = _sent(base, small)  # 24 of 100 endpoints
    assert sync.services_base == 6
    assert _merged(base, sync) == small
    line = encode_sync(7, DesiredSet(services=tuple(large)), services_base=(6, base))
    raw = json.loads(line)  # 26 of 100: the whole rules
    assert "servicesBase" not in raw
    assert ServiceRule.model_validate(raw["services"][0]) == large[0]


def test_rules_that_changed_in_more_than_endpoints_go_whole_and_gone_ones_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_wire, "DELTA_MAX_SHARE", float("inf"))
    base = [_rule("a", [("127.0.0.2", 1)]), _rule("b", [("127.0.0.2", 1)]), _rule("c", [])]
    current = [
        _rule("a", [("127.0.0.2", 1)], node_port=30080, type="NodePort"),
        _rule("b", [("127.0.0.3", 1)]),
        _rule("d", [("127.0.0.4", 1)]),
    ]
    _, sync = _sent(base, current)
    assert [r.name for r in sync.services] == ["a", "d"]
    assert [d.name for d in sync.services_changed] == ["b"]
    assert [(k.namespace, k.name) for k in sync.services_removed] == [("default", "c")]
    assert _merged(base, sync) == current


def test_endpoints_not_in_order_make_the_rule_go_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wire, "DELTA_MAX_SHARE", float("inf"))
    base = [_rule("a", [("127.0.0.2", 1)])]
    unordered = ServiceRule.model_validate(
        {
            "namespace": "default",
            "name": "a",
            "ports": [
                {
                    "port": 80,
                    "endpoints": [
                        {"address": "127.0.0.3", "port": 1},
                        {"address": "127.0.0.2", "port": 1},
                    ],
                }
            ],
        }
    )
    _, sync = _sent(base, [unordered])
    assert sync.services == [unordered]
    assert _merged(base, sync) == [unordered]


def test_a_changed_hostname_is_removed_then_added(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wire, "DELTA_MAX_SHARE", float("inf"))

    def headless(hostname: str) -> ServiceRule:
        return ServiceRule.model_validate(
            {
                "namespace": "default",
                "name": "web",
                "ports": [
                    {
                        "port": 80,
                        "endpoints": [{"address": "127.0.0.2", "port": 1, "hostname": hostname}],
                    }
                ],
            }
        )

    base, current = [headless("web-0")], [headless("web-1")]
    _, sync = _sent(base, current)
    port = sync.services_changed[0].ports[0]
    assert [e.hostname for e in port.removed] == ["web-0"]
    assert [e.hostname for e in port.added] == ["web-1"]
    assert _merged(base, sync) == current


def test_an_agent_without_the_feature_gets_the_whole_rules() -> None:
    base = [_rule("a", [("127.0.0.2", 1)])]
    current = [_rule("a", [("127.0.0.3", 1)])]
    features = frozenset(WIRE_FEATURES) - {FEATURE_SERVICE_DELTAS}
    line = encode_sync(
        7, DesiredSet(services=tuple(current)), services_base=(6, base), features=features
    )
    raw = json.loads(line)
    assert not {"servicesBase", "servicesChanged", "servicesRemoved"} & set(raw)
    assert raw["services"][0]["ports"][0]["endpoints"] == [{"address": "127.0.0.3", "port": 1}]


@pytest.mark.parametrize(
    ("delta", "message"),
    [
        ({"servicesRemoved": [{"namespace": "default", "name": "zz"}]}, "is not in the base"),
        (
            {"servicesChanged": [{"namespace": "default", "name": "zz", "ports": []}]},
            "servicesChanged: Service default/zz is not in the base",
        ),
        (
            {
                "servicesChanged": [
                    {
                        "namespace": "default",
                        "name": "a",
                        "ports": [{"port": 80, "removed": [{"address": "127.0.0.9", "port": 1}]}],
                    }
                ]
            },
            "removed endpoint 127.0.0.9:1 is not in the base",
        ),
        (
            {
                "servicesChanged": [
                    {
                        "namespace": "default",
                        "name": "a",
                        "ports": [{"port": 80, "added": [{"address": "127.0.0.2", "port": 1}]}],
                    }
                ]
            },
            "added endpoint 127.0.0.2:1 is already there",
        ),
        (
            {"servicesChanged": [{"namespace": "default", "name": "a", "ports": [{"port": 81}]}]},
            "port 81/TCP: not in the base",
        ),
        (
            {
                "servicesRemoved": [{"namespace": "default", "name": "a"}],
                "services": [{"namespace": "default", "name": "a"}],
            },
            "services: Service default/a appears twice",
        ),
    ],
)
def test_a_delta_against_another_base_is_refused_naming_what_differs(
    delta: dict[str, Any], message: str
) -> None:
    base = [_rule("a", [("127.0.0.2", 1)])]
    line = json.dumps({"v": 1, "type": "sync", "generation": 2, "servicesBase": 1, **delta})
    sync = decode_message(line)
    assert isinstance(sync, Sync)
    with pytest.raises(ValueError, match=message):
        _merged(base, sync)


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"servicesRemoved": [{"namespace": "default", "name": "a"}]}, "servicesRemoved"),
        ({"servicesChanged": [{"namespace": "default", "name": "a"}]}, "servicesChanged"),
        ({"servicesBase": 1, "servicesUnchanged": True}, "servicesUnchanged"),
    ],
)
def test_delta_fields_outside_a_delta_are_refused_with_the_field(
    fields: dict[str, Any], where: str
) -> None:
    line = json.dumps({"v": 1, "type": "sync", "generation": 2, **fields})
    with pytest.raises(ProtocolError, match=where):
        decode_message(line)


def test_rules_out_of_the_wire_order_give_no_delta() -> None:
    rules = [_rule("b", []), _rule("a", [])]
    assert service_rules_delta([], rules) is None
    line = encode_sync(7, DesiredSet(services=tuple(rules)), services_base=(6, []))
    assert "servicesBase" not in json.loads(line)


def test_the_memo_gives_the_same_delta_for_the_same_rule_pair() -> None:
    old = _rule("a", [("127.0.0.2", 1)])
    new = _rule("a", [("127.0.0.3", 1)])
    memo: dict[Any, Any] = {}
    first = service_rules_delta([old], [new], memo=memo)
    second = service_rules_delta([old], [new], memo=memo)
    assert first is not None
    assert second is not None
    assert second.changed[0] is first.changed[0]
    assert second.changed[0].ports[0].added == [Endpoint(address="127.0.0.3", port=1)]


def test_the_shared_memo_keeps_no_superseded_rules_beyond_its_slack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deploy changes every rule every few hundred ms for minutes: the fleet-wide memo
    must not keep each superseded rule (with all its endpoints) alive."""
    monkeypatch.setattr(_wire, "_RULE_DELTAS", {})
    monkeypatch.setattr(_wire, "DELTA_MAX_SHARE", float("inf"))  # every change as a delta
    names = [f"svc-{i}" for i in range(3)]
    base = [_rule(name, [("127.0.0.2", 1)]) for name in names]
    previous = base
    for step in range(1, 201):
        current = [_rule(name, [("127.0.0.2", 1), ("127.0.1.1", step)]) for name in names]
        # Two nodes: one acked the first rules, one the previous step's.
        _sent(base, current)
        _, sync = _sent(previous, current)
        assert sync.services_base == 6
        assert _merged(previous, sync) == current
        previous = current
        assert len(_wire._RULE_DELTAS) <= 10 * len(names)  # the slack (8) and this step's
    live = {id(rule) for rule in previous}
    kept_newer = {id(newer) for _, newer, _ in _wire._RULE_DELTAS.values()}
    assert len(kept_newer - live) <= 8 * len(names)
