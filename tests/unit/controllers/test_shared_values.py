"""Equal parts of cached objects are one object, and nothing a reader sees changes."""

from __future__ import annotations

import gc
from typing import Any

from reconciler.api import Api
from reconciler.controllers.runtime import InformerFactory, share_values
from reconciler.controllers.runtime._compact import _Values
from schemas import Pod


def _pod(name: str, *, node: str = "n1", cpu: str = "100m", started: str | None = None) -> Pod:
    data: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"app": "web", "pod-template-hash": "5d8f"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f", "uid": "rs-1"}
            ],
        },
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["sleep", "9"],
                    "ports": [{"containerPort": 8080}],
                    "resources": {"requests": {"cpu": cpu, "memory": "16Mi"}},
                }
            ],
            "volumes": [{"name": "config", "configMap": {"name": "web"}}],
        },
    }
    if started is not None:
        data["status"] = {"phase": "Running", "startTime": started}
    return Pod.model_validate(data)


def _dumps(*pods: Pod) -> list[str]:
    return [pod.model_dump_json(by_alias=True, exclude_unset=True) for pod in pods]


def test_pods_of_one_template_share_their_parts_and_read_the_same() -> None:
    first, second = _pod("a"), _pod("b", node="n2")
    before, copies = _dumps(first, second), (first.model_copy(), second.model_copy())
    share_values(first)
    share_values(second)
    assert first.spec.containers is second.spec.containers
    assert first.spec.volumes is second.spec.volumes
    assert first.metadata.labels is second.metadata.labels
    assert first.metadata.owner_references is second.metadata.owner_references
    assert first.spec is not second.spec  # the node differs
    assert first.metadata is not second.metadata
    assert _dumps(first, second) == before
    assert (first, second) == copies
    # Equal models elsewhere in the tree are one too: the same pod decoded again.
    again = _pod("a")
    share_values(again)
    assert again.spec is first.spec


def test_values_equal_but_written_differently_are_not_merged() -> None:
    # Quantity("1") == Quantity("1000m"), but each prints as it was written.
    whole, milli = _pod("a", cpu="1"), _pod("b", cpu="1000m")
    before = _dumps(whole, milli)
    share_values(whole)
    share_values(milli)
    assert whole.spec.containers is not milli.spec.containers
    assert whole.spec.volumes is milli.spec.volumes
    assert _dumps(whole, milli) == before


def test_parts_holding_a_time_are_kept_as_they_are() -> None:
    first = _pod("a", started="2026-12-07T10:00:00Z")
    second = _pod("b", started="2026-12-07T10:00:00Z")
    share_values(first)
    share_values(second)
    assert first.status is not None
    assert second.status is not None
    assert first.status is not second.status
    assert first.status.phase is second.status.phase  # its strings are still one


def test_the_table_lets_go_of_what_no_object_holds_any_more() -> None:
    values = _Values()
    with values.lock:
        kept = [values.canonical(_pod(f"p{i}", node=f"n{i}").spec)[0] for i in range(3)]
        dropped = [values.canonical(_pod(f"q{i}", node=f"m{i}").spec)[0] for i in range(50)]
        # Both lists hold their specs' shared containers; their nodes set the specs apart.
        held = len(values)
        del dropped
        gc.collect()
        values._collect_at = 0
        values.collect_if_grown()
    # Left: the three kept specs and the parts they hold (one set of containers, volumes...).
    assert len(values) == held - 50
    assert [spec.node_name for spec in kept] == ["n0", "n1", "n2"]
    again = _pod("p1", node="n1").spec
    with values.lock:
        assert values.canonical(again)[0] is kept[1]


def test_an_informer_caches_one_containers_list_for_a_replicaset(api: Api, wait_for) -> None:
    factory = InformerFactory(api)
    informer = factory.informer(Pod)
    factory.start()
    try:
        assert factory.wait_synced(5)
        for index in range(3):
            api.create(_pod(f"web-{index}", node=f"n{index}"))
        wait_for(lambda: len(informer.list()) == 3)
        pods = informer.list()
        assert len({id(pod.spec.containers) for pod in pods}) == 1
        assert {pod.spec.node_name for pod in pods} == {"n0", "n1", "n2"}
    finally:
        factory.stop()
