"""The statefulset controller with the real scheduler and garbage collector on a real store;
hollow nodes turn bound pods Running + Ready (the Docker version is tests/e2e/test_workloads.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from reconciler.api import Api, Conflict, ManualClock, NotFound
from reconciler.controllers.gc import GarbageCollector
from reconciler.controllers.statefulset import StatefulSetController
from reconciler.scheduler import Scheduler
from schemas import Pod
from schemas.apps import StatefulSet
from schemas.storage import PersistentVolumeClaim
from tests.fixtures.hollow import HollowCluster

COMPONENTS = [StatefulSetController, Scheduler, GarbageCollector]


@pytest.fixture
def hollow(api: Api, clock: ManualClock) -> Iterator[HollowCluster]:
    with HollowCluster(api, clock=clock, start_delay_s=0.0) as cluster:
        yield cluster


def statefulset(replicas: int = 3, **spec: object) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "db:1",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ]
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
            **spec,
        },
    }


def live_pods(api: Api) -> dict[str, Pod]:
    return {
        p.name: p
        for p in api.list(Pod, label_selector={"app": "web"}).items
        if p.metadata.deletion_timestamp is None
    }


def ready(api: Api) -> list[str]:
    return sorted(n for n, p in live_pods(api).items() if p.status and p.status.ready)


def claim(api: Api, name: str) -> PersistentVolumeClaim:
    return api.get(PersistentVolumeClaim, name)


class Timeline:
    """Every pod creation and deletion, in store order, with the Ready pods at that moment."""

    def __init__(self, api: Api) -> None:
        listed = api.list(Pod)
        self.pods = {p.name: p for p in listed.items}
        self.events: list[tuple[str, str, tuple[str, ...]]] = []
        self._stream = api.watch(Pod, from_revision=listed.resource_version)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for event in self._stream:
            name = event.object.name
            before = tuple(sorted(n for n, p in self.pods.items() if p.status and p.status.ready))
            if event.type == "DELETED":
                self.pods.pop(name, None)
            else:
                self.pods[name] = event.object
            if event.type in ("ADDED", "DELETED"):
                self.events.append((event.type, name, before))

    def names(self, kind: str) -> list[str]:
        """The pods of the ``kind`` events (ADDED, DELETED) this watch has delivered so far:
        a test waits on these, not on the store, which the watch may trail."""
        return [name for k, name, _ in list(self.events) if k == kind]

    def stop(self) -> None:
        self._stream.close()
        self._thread.join(timeout=5)


def test_ordered_start_stable_names_and_claims_pinned_to_their_node(
    api: Api, hollow: HollowCluster, start_manager, wait_for
) -> None:
    hollow.add_nodes(2)
    start_manager(COMPONENTS)
    timeline = Timeline(api)
    try:
        api.create(statefulset())
        wait_for(
            lambda: ready(api) == ["web-0", "web-1", "web-2"] and len(timeline.names("ADDED")) == 3,
            what="three pods Ready, their creations seen",
        )
    finally:
        timeline.stop()
    added = [(name, before) for kind, name, before in timeline.events if kind == "ADDED"]
    # OrderedReady: each pod is created only once every pod below it is Ready.
    assert added == [("web-0", ()), ("web-1", ("web-0",)), ("web-2", ("web-0", "web-1"))]
    # The scheduler records a claim's node right after the bind it makes for the claim's pod,
    # then its status (two writes: wait for the second).
    wait_for(
        lambda: all(
            (c := claim(api, f"data-web-{i}")).bound_node
            and c.status is not None
            and c.status.phase == "Bound"
            for i in range(3)
        ),
        what="claims bound",
    )
    pods = live_pods(api)
    for ordinal in range(3):
        pod = pods[f"web-{ordinal}"]
        assert pod.spec.hostname == f"web-{ordinal}"
        (volume,) = pod.spec.volumes
        assert volume.persistent_volume_claim is not None
        assert volume.persistent_volume_claim.claim_name == f"data-web-{ordinal}"
        bound = claim(api, f"data-web-{ordinal}")
        assert bound.bound_node == pod.spec.node_name
        assert bound.status is not None
        assert bound.status.phase == "Bound"

    # web-1 again: new empty nodes are the scheduler's favourites, but its data is on its node.
    home = pods["web-1"].spec.node_name
    hollow.add_nodes(3)
    api.delete(Pod, "web-1")
    wait_for(
        lambda: (
            "web-1" in ready(api)
            and live_pods(api)["web-1"].metadata.uid != pods["web-1"].metadata.uid
        ),
        what="web-1 made again",
    )
    assert live_pods(api)["web-1"].spec.node_name == home


def test_scale_down_from_the_top_and_claims_outlive_the_set(
    api: Api, hollow: HollowCluster, start_manager, wait_for
) -> None:
    hollow.add_nodes(2)
    start_manager(COMPONENTS)
    api.create(statefulset())
    wait_for(lambda: ready(api) == ["web-0", "web-1", "web-2"])
    timeline = Timeline(api)
    try:
        for _ in range(50):
            sts = api.get(StatefulSet, "web")
            try:
                api.update(
                    sts.model_copy(update={"spec": sts.spec.model_copy(update={"replicas": 1})})
                )
                break
            except Conflict:
                continue
        # A deleted pod leaves the live set as soon as it is marked, and its DELETED event
        # comes after: wait for the events themselves.
        wait_for(
            lambda: sorted(live_pods(api)) == ["web-0"] and len(timeline.names("DELETED")) >= 2,
            what="scaled to one, the deletions seen",
        )
    finally:
        timeline.stop()
    assert timeline.names("DELETED") == ["web-2", "web-1"]
    # Retain (the default): the claims of the removed pods stay, for a scale back up.
    assert claim(api, "data-web-2").bound_node is not None

    api.delete(StatefulSet, "web")
    wait_for(lambda: live_pods(api) == {}, what="the set's pods collected")
    for ordinal in range(3):
        assert claim(api, f"data-web-{ordinal}").metadata.owner_references == []


def test_parallel_and_delete_retention_policy(
    api: Api, hollow: HollowCluster, start_manager, wait_for
) -> None:
    hollow.add_nodes(2)
    start_manager(COMPONENTS)
    api.create(
        statefulset(
            podManagementPolicy="Parallel",
            persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete"},
        )
    )
    wait_for(lambda: ready(api) == ["web-0", "web-1", "web-2"])
    api.delete(StatefulSet, "web")

    def claims_gone() -> bool:
        for ordinal in range(3):
            try:
                claim(api, f"data-web-{ordinal}")
            except NotFound:
                continue
            return False
        return True

    wait_for(claims_gone, what="claims deleted with the set (whenDeleted: Delete)")


def test_rolling_update_from_the_highest_ordinal(
    api: Api, hollow: HollowCluster, start_manager, wait_for
) -> None:
    hollow.add_nodes(2)
    start_manager(COMPONENTS)
    api.create(statefulset())
    wait_for(lambda: ready(api) == ["web-0", "web-1", "web-2"])
    timeline = Timeline(api)
    try:
        for _ in range(50):
            sts = api.get(StatefulSet, "web")
            container = sts.spec.template.spec.containers[0].model_copy(update={"image": "db:2"})
            pod_spec = sts.spec.template.spec.model_copy(update={"containers": [container]})
            template = sts.spec.template.model_copy(update={"spec": pod_spec})
            try:
                api.update(
                    sts.model_copy(
                        update={"spec": sts.spec.model_copy(update={"template": template})}
                    )
                )
                break
            except Conflict:
                continue
        wait_for(
            lambda: (
                ready(api) == ["web-0", "web-1", "web-2"]
                and {p.spec.containers[0].image for p in live_pods(api).values()} == {"db:2"}
                and len(timeline.names("DELETED")) >= 3
            ),
            what="all on db:2, the deletions seen",
        )
    finally:
        timeline.stop()
    assert timeline.names("DELETED") == ["web-2", "web-1", "web-0"]


def test_a_claim_template_replaces_the_template_volume_of_its_name(
    api: Api, hollow: HollowCluster, start_manager, wait_for
) -> None:
    """Kubernetes' rule (cockroachdb's example declares ``datadir`` both ways)."""
    hollow.add_nodes(1)
    start_manager(COMPONENTS)
    sts = statefulset(replicas=1)
    sts["spec"]["template"]["spec"]["volumes"] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    sts["spec"]["volumeClaimTemplates"][0]["apiVersion"] = "v1"
    sts["spec"]["volumeClaimTemplates"][0]["kind"] = "PersistentVolumeClaim"
    api.create(sts)
    wait_for(lambda: "web-0" in live_pods(api), what="web-0 made")
    volumes = {v.name: v for v in live_pods(api)["web-0"].spec.volumes}
    assert sorted(volumes) == ["data", "scratch"]
    data = volumes["data"].persistent_volume_claim
    assert data is not None
    assert data.claim_name == "data-web-0"
