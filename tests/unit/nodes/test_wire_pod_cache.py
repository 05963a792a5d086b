"""A node's sync encodes the same with the pod wire cache as without it.

The cache keeps each pod's wire form and packed JSON while its resourceVersion stays; a sync then
splices the cached JSON in. What the agent decodes must not change by a byte's meaning.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.nodes._packed import POD_JSON
from reconciler.nodes._wire import encode_sync
from reconciler.nodes.desired import PodWireCache, desired_set
from schemas import Pod
from schemas.protocol import (
    FEATURE_ENDPOINT_HOSTNAMES,
    WIRE_FEATURES,
    ServiceRule,
    Sync,
    decode_message,
)


def _pod(name: str, version: str, image: str = "busybox:1") -> Pod:
    return Pod.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": "default",
                "uid": f"uid-{name}",
                "resourceVersion": version,
                "labels": {"app": "web"},
            },
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "main", "image": image, "ports": [{"containerPort": 80}]}],
                "volumes": [],
            },
            "status": {"phase": "Running"},
        }
    )


def _sync(pods: list[Pod], cache: PodWireCache | None) -> dict[str, Any]:
    desired = desired_set(
        pods, config_map=lambda _n, _m: None, secret=lambda _n, _m: None, services=(), cache=cache
    )
    line = encode_sync(7, desired, term=2)
    message = decode_message(line.rstrip(b"\n"))  # the agent's own decoder accepts it
    assert isinstance(message, Sync)
    decoded: dict[str, Any] = json.loads(line)
    return decoded


def test_a_cached_sync_decodes_as_the_uncached_one() -> None:
    pods = [_pod("a", "10"), _pod("b", "11")]
    cache = PodWireCache()
    assert _sync(pods, cache) == _sync(pods, None)
    assert _sync(pods, cache) == _sync(pods, None)  # from the cache this time
    assert _sync([], cache) == _sync([], None)


def test_a_new_resource_version_is_serialized_again_and_retain_forgets() -> None:
    cache = PodWireCache()
    first = _sync([_pod("a", "10")], cache)
    changed = _sync([_pod("a", "12", image="busybox:2")], cache)
    assert first["pods"][0]["spec"]["containers"][0]["image"] == "busybox:1"
    assert changed["pods"][0]["spec"]["containers"][0]["image"] == "busybox:2"
    wired, _ = cache.wire(_pod("a", "12", image="busybox:2"))
    assert wired.status is None  # status never goes to the node
    assert wired.metadata.resource_version is None
    cache.retain(set())
    assert cache.wire(_pod("a", "12", image="busybox:3"))[0].spec.containers[0].image == (
        "busybox:3"
    )


def _rule(name: str, hostname: str | None = None) -> ServiceRule:
    endpoint: dict[str, Any] = {"address": "127.0.0.2", "port": 30000}
    if hostname is not None:
        endpoint["hostname"] = hostname
    return ServiceRule.model_validate(
        {"namespace": "default", "name": name, "ports": [{"port": 80, "endpoints": [endpoint]}]}
    )


def test_rules_spliced_from_their_json_decode_as_encoded_ones() -> None:
    rules = [_rule("a", "web-0"), _rule("b")]
    text = ",".join(r.model_dump_json(by_alias=True, exclude_none=True) for r in rules)
    pods = [_pod("p", "10")]

    def line(
        services_json: str | None, features: frozenset[str] = frozenset(WIRE_FEATURES)
    ) -> bytes:
        desired = desired_set(
            pods,
            config_map=lambda _n, _m: None,
            secret=lambda _n, _m: None,
            services=rules,
            services_json=services_json,
            cache=PodWireCache(),
        )
        return encode_sync(3, desired, features=features)

    spliced, encoded = line(text), line(None)
    assert json.loads(spliced) == json.loads(encoded)
    assert isinstance(decode_message(spliced.rstrip(b"\n")), Sync)
    # Each field once: the spliced ones replace the encoded ones, they do not repeat them.
    assert spliced.count(b'"services":') == 1
    assert spliced.count(b'"pods":') == 1
    # An agent without per-pod names gets the rules encoded without them, never the cache.
    older = json.loads(line(text, frozenset(WIRE_FEATURES) - {FEATURE_ENDPOINT_HOSTNAMES}))
    assert older["services"][0]["ports"][0]["endpoints"] == [
        {"address": "127.0.0.2", "port": 30000}
    ]
    # Rules given out of the wire's order cannot use their JSON.
    shuffled = desired_set(
        [],
        config_map=lambda _n, _m: None,
        secret=lambda _n, _m: None,
        services=list(reversed(rules)),
        services_json=text,
    )
    assert shuffled.services_json is None


def test_the_kept_json_unpacks_to_the_wire_form_of_the_pod() -> None:
    cache = PodWireCache()
    pod = _pod("a", "10")
    wired, packed = cache.wire(pod)
    text = POD_JSON.unpack(packed)
    assert text == wired.model_dump_json(by_alias=True, exclude_none=True).encode()
    assert Pod.model_validate_json(text) == wired
    assert len(packed) < len(text)
    assert cache.wire(pod) == (wired, packed)  # the kept pair, not packed again
