"""A node's sync encodes the same with the pod wire cache as without it.

The cache keeps each pod's wire form and JSON while its resourceVersion stays; a sync then
splices the cached JSON in. What the agent decodes must not change by a byte's meaning.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.nodes._wire import encode_sync
from reconciler.nodes.desired import PodWireCache, desired_set
from schemas import Pod
from schemas.protocol import Sync, decode_message


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
