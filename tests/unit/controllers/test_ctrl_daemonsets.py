"""The daemonset controller on a real store with hollow nodes (they report Ready and turn the
pods bound to them Running + Ready; the Docker version is tests/e2e/test_workloads.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from reconciler.api import Api, Conflict, ManualClock
from reconciler.controllers.daemonset import REVISION_LABEL, DaemonSetController
from schemas import Node, Pod, Taint
from schemas.apps import DaemonSet
from tests.fixtures.hollow import HollowCluster


@pytest.fixture
def hollow(api: Api, clock: ManualClock) -> Iterator[HollowCluster]:
    with HollowCluster(api, clock=clock, start_delay_s=0.0) as cluster:
        yield cluster


def daemonset(name: str = "agent", *, image: str = "agent:1", **pod_spec: object) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}], **pod_spec},
            },
        },
    }


def placement(api: Api, name: str = "agent") -> dict[str, str]:
    """node → image of the live (not terminating) daemon pods; fails on two pods per node."""
    found: dict[str, str] = {}
    for pod in api.list(Pod, label_selector={"app": name}).items:
        if pod.metadata.deletion_timestamp is not None:
            continue
        node = pod.spec.node_name or "<unbound>"
        assert node not in found, f"two pods on {node}"
        found[node] = pod.spec.containers[0].image
    return found


def edit(api: Api, kind: type, name: str, change, *, namespace: str | None = "default"):
    for _ in range(50):
        obj = api.get(kind, name, namespace=namespace)
        try:
            return api.update(change(obj))
        except Conflict:
            continue
    raise AssertionError("kept conflicting")


def test_one_pod_per_node_and_a_new_node_gets_one(
    api: Api, hollow: HollowCluster, start_manager, wait_for
) -> None:
    hollow.add_nodes(2)
    start_manager([DaemonSetController])
    api.create(daemonset())
    wait_for(lambda: set(placement(api)) == {"hollow-0", "hollow-1"}, what="one pod per node")
    pod = api.list(Pod).items[0]
    assert pod.metadata.owner_references[0].kind == "DaemonSet"
    assert REVISION_LABEL in pod.labels
    hollow.add_node("late")
    wait_for(lambda: set(placement(api)) == {"hollow-0", "hollow-1", "late"}, what="late node")

    def counts() -> tuple[int, ...] | None:
        s = api.get(DaemonSet, "agent").status
        return (
            (s.desired_number_scheduled, s.current_number_scheduled, s.number_available)
            if s
            else None
        )

    wait_for(lambda: counts() == (3, 3, 3), what="status counts")


def test_node_selector_and_taints_decide_the_nodes(
    api: Api, hollow: HollowCluster, start_manager, wait_for
) -> None:
    hollow.add_node("edge-a", labels={"role": "edge"})
    hollow.add_node(
        "edge-b",
        labels={"role": "edge"},
        taints=[Taint(key="dedicated", value="gpu", effect="NoSchedule")],
    )
    hollow.add_node("core", labels={"role": "core"})
    start_manager([DaemonSetController])
    api.create(daemonset(nodeSelector={"role": "edge"}))
    wait_for(lambda: set(placement(api)) == {"edge-a"}, what="only the untainted edge node")
    tolerated = daemonset(
        "tolerant",
        nodeSelector={"role": "edge"},
        tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    )
    api.create(tolerated)
    wait_for(lambda: set(placement(api, "tolerant")) == {"edge-a", "edge-b"})
    assert set(placement(api)) == {"edge-a"}  # the first set still stays off edge-b

    def relabel(node: Node) -> Node:
        meta = node.metadata.model_copy(update={"labels": {"role": "core"}})
        return node.model_copy(update={"metadata": meta})

    edit(api, Node, "edge-a", relabel, namespace=None)
    wait_for(lambda: placement(api) == {}, what="the pod of a node that stopped matching")
    wait_for(lambda: api.get(DaemonSet, "agent").status.desired_number_scheduled == 0)


def test_rolling_update_replaces_one_node_at_a_time(
    api: Api, hollow: HollowCluster, start_manager, wait_for
) -> None:
    hollow.add_nodes(4)
    start_manager([DaemonSetController])
    api.create(daemonset())
    wait_for(lambda: len(placement(api)) == 4)
    wait_for(lambda: (s := api.get(DaemonSet, "agent").status) and s.number_available == 4)

    # Follow every pod change and record the fewest nodes with a Ready daemon at any moment.
    listed = api.list(Pod)
    pods = {p.name: p for p in listed.items}
    fewest = [4]
    stream = api.watch(Pod, from_revision=listed.resource_version)

    def follow() -> None:
        for event in stream:
            if event.type == "DELETED":
                pods.pop(event.object.name, None)
            else:
                pods[event.object.name] = event.object
            ready = {
                p.spec.node_name
                for p in pods.values()
                if p.status and p.status.ready and p.metadata.deletion_timestamp is None
            }
            fewest[0] = min(fewest[0], len(ready))

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:

        def set_image(ds: DaemonSet) -> DaemonSet:
            container = ds.spec.template.spec.containers[0].model_copy(update={"image": "agent:2"})
            pod_spec = ds.spec.template.spec.model_copy(update={"containers": [container]})
            template = ds.spec.template.model_copy(update={"spec": pod_spec})
            return ds.model_copy(update={"spec": ds.spec.model_copy(update={"template": template})})

        edit(api, DaemonSet, "agent", set_image)
        wait_for(
            lambda: set(placement(api).values()) == {"agent:2"} and len(placement(api)) == 4,
            what="every node on agent:2",
        )
        wait_for(
            lambda: (s := api.get(DaemonSet, "agent").status) and s.updated_number_scheduled == 4
        )
    finally:
        stream.close()
        thread.join(timeout=5)
    assert fewest[0] == 3  # maxUnavailable 1 (the default): one node at a time, and it did roll


def test_schema_refuses_what_a_daemonset_cannot_mean() -> None:
    from pydantic import ValidationError

    from schemas import parse_object

    doc = daemonset()
    doc["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}
    with pytest.raises(ValidationError) as caught:
        parse_object(doc)
    assert caught.value.errors()[0]["loc"] == (
        "spec",
        "updateStrategy",
        "rollingUpdate",
        "maxSurge",
    )
    doc = daemonset(restartPolicy="Never")
    with pytest.raises(ValidationError) as caught:
        parse_object(doc)
    assert caught.value.errors()[0]["loc"] == ("spec", "template", "spec", "restartPolicy")
