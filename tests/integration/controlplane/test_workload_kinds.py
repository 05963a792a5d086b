"""DaemonSet and StatefulSet on the whole control plane: every controller and the real
scheduler from the controller manager, a real temp store, hollow nodes standing in for agents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.api import Api, SystemClock
from reconciler.controllers.manager import ControllerManager
from schemas import Pod
from schemas.storage import PersistentVolumeClaim
from tests.fixtures.hollow import HollowCluster, temp_api
from tests.fixtures.waiting import wait_until


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Api, HollowCluster]]:
    clock = SystemClock()
    with (
        temp_api(tmp_path, clock) as api,
        HollowCluster(api, clock=clock, start_delay_s=0.05) as hollow,
        ControllerManager(api, clock=clock),
    ):
        hollow.add_nodes(2)
        yield api, hollow


def pods(api: Api, app: str) -> dict[str, Pod]:
    return {
        p.name: p
        for p in api.list(Pod, label_selector={"app": app}).items
        if p.metadata.deletion_timestamp is None
    }


def template(app: str, **spec: object) -> dict:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": f"{app}:1", **spec}]},
    }


def test_daemonset_covers_a_two_node_fleet_and_a_node_added_later(
    cluster: tuple[Api, HollowCluster],
) -> None:
    api, hollow = cluster
    api.create(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "logs", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "logs"}}, "template": template("logs")},
        }
    )

    def nodes_ready() -> set[str]:
        return {
            p.spec.node_name or ""
            for p in pods(api, "logs").values()
            if p.status and p.status.ready
        }

    wait_until(lambda: nodes_ready() == {"hollow-0", "hollow-1"}, timeout=20, what="two nodes")
    hollow.add_node("hollow-late")
    wait_until(
        lambda: nodes_ready() == {"hollow-0", "hollow-1", "hollow-late"},
        timeout=20,
        what="the node added later",
    )
    assert len(pods(api, "logs")) == 3


def test_statefulset_pods_return_to_their_claims_node(
    cluster: tuple[Api, HollowCluster],
) -> None:
    api, hollow = cluster
    api.create(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {
                "replicas": 2,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": template("db", volumeMounts=[{"name": "data", "mountPath": "/d"}]),
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}],
            },
        }
    )
    wait_until(
        lambda: (
            sorted(n for n, p in pods(api, "db").items() if p.status and p.status.ready)
            == ["db-0", "db-1"]
        ),
        timeout=20,
        what="db-0, db-1 Ready",
    )
    wait_until(
        lambda: all(c.bound_node for c in api.list(PersistentVolumeClaim).items),
        timeout=10,
        what="claims bound",
    )
    homes = {c.name: c.bound_node for c in api.list(PersistentVolumeClaim).items}
    hollow.add_nodes(2)  # emptier nodes the scheduler would otherwise prefer
    for name in ("db-0", "db-1"):
        uid = pods(api, "db")[name].metadata.uid
        api.delete(Pod, name)
        wait_until(
            lambda n=name, u=uid: (
                n in pods(api, "db")
                and pods(api, "db")[n].metadata.uid != u
                and bool(pods(api, "db")[n].spec.node_name)
            ),
            timeout=20,
            what=name,
        )
        assert pods(api, "db")[name].spec.node_name == homes[f"data-{name}"]
