"""Auto-rollback end to end: a Deployment annotated ``capstan.io/auto-rollback: "true"`` gets a
crash-looping image; Capstan pins its last good commit (the sync loop applies it, the old
ReplicaSet is reused), records why, commits and pushes the revert, and the pin lapses once
Git holds the revert."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
from plan_testdata import NAMESPACE, GitRepo, deployment
from test_rollback_e2e import Cluster

from reconciler.api import ManualClock
from reconciler.controllers.deployment import DeploymentController
from reconciler.controllers.manager import ControllerManager
from reconciler.controllers.replicaset import ReplicaSetController
from reconciler.scheduler import Scheduler
from reconciler.source.git import GitSource
from reconciler.source.watch import BranchWatch
from reconciler.sync import SyncLoop, SyncOptions, list_sync_records
from reconciler.sync.autorollback import AutoRollbackController
from reconciler.sync.pins import read_pins
from schemas import Deployment, Pod
from schemas.meta import Condition
from schemas.pod import (
    ContainerState,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
)
from tests.fixtures.hollow import HollowCluster, temp_api
from tests.fixtures.waiting import wait_until

OPT_IN = '\n  annotations:\n    capstan.io/auto-rollback: "true"'


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    repo = GitRepo(tmp_path / "repo")
    repo.write("namespace.yaml", NAMESPACE)
    clock = ManualClock()
    with temp_api(tmp_path, clock) as api:
        source = GitSource(repo.path, branch="main", cache_dir=tmp_path / "cache")
        loop = SyncLoop(
            api,
            source,
            watch=BranchWatch(source, watch_local=False, debounce_s=0.0),
            options=SyncOptions(resync_s=0.0),
        )
        pusher = GitSource(repo.path, branch="main", cache_dir=tmp_path / "autorollback")
        components = [
            DeploymentController,
            ReplicaSetController,
            Scheduler,
            functools.partial(AutoRollbackController, git=pusher, push=True),
        ]
        with (
            HollowCluster(api, clock=clock, start_delay_s=0.0) as hollow,
            ControllerManager(api, clock=clock, components=components),
        ):
            hollow.add_nodes(2, cpu="4", memory="8Gi", pods=20)
            yield Cluster(api, hollow, loop, repo, f"sqlite:///{tmp_path / 'state.db'}")


def crash_loop(cluster: Cluster, pod: Pod) -> None:
    """What the kubelet reports for a container that keeps exiting."""
    assert pod.status is not None
    status = pod.status.model_copy(
        update={
            "conditions": [c for c in pod.status.conditions if c.type != "Ready"]
            + [Condition(type="Ready", status="False", reason="ContainersNotReady")],
            "container_statuses": [
                ContainerStatus(
                    name="main",
                    image="capstan.local/busybox:crash",
                    restart_count=1,
                    state=ContainerState(waiting=ContainerStateWaiting(reason="CrashLoopBackOff")),
                    last_state=ContainerState(
                        terminated=ContainerStateTerminated(exit_code=3, reason="Error")
                    ),
                )
            ],
        }
    )
    cluster.api.update_status(pod.model_copy(update={"status": status}))


def test_crash_looping_rollout_is_rolled_back_pinned_and_reverted(cluster: Cluster) -> None:
    cluster.repo.write("web.yaml", deployment(annotations=OPT_IN))
    good = cluster.repo.commit("v1")
    cluster.sync()
    wait_until(lambda: len(cluster.replicasets()) == 1, what="v1 replica set")
    [v1_rs] = cluster.replicasets()
    wait_until(lambda: cluster.settled(v1_rs, 2), what="v1 pods running")

    cluster.repo.write(
        "web.yaml", deployment(image="capstan.local/busybox:crash", annotations=OPT_IN)
    )
    bad = cluster.repo.commit("v2: an image that crashes")
    cluster.sync()
    wait_until(lambda: len(cluster.replicasets()) == 2, what="v2 replica set")
    [v2_rs] = set(cluster.replicasets()) - {v1_rs}
    wait_until(lambda: cluster.running(v2_rs), what="a v2 pod started")
    crash_loop(cluster, cluster.running(v2_rs)[0])

    wait_until(lambda: "Deployment/shop/web" in read_pins(cluster.api), what="the pin")
    pin = read_pins(cluster.api)["Deployment/shop/web"]
    assert (pin.commit, pin.bad_commit) == (good, bad)
    assert "CrashLoopBackOff" in pin.reason

    def events() -> list[str]:
        return [
            e.message
            for e in cluster.api.list_events(namespace="shop")
            if e.reason == "AutoRollback" and e.type == "Warning"
        ]

    wait_until(lambda: any("pushed revert" in m for m in events()), what="the events")
    assert any(m.startswith("auto-rollback of Deployment shop/web") for m in events())
    [record] = [r for r in list_sync_records(cluster.api) if r.trigger == "rollback"]
    assert record.commit == good
    assert "auto-rollback of Deployment shop/web" in record.message

    # The pinned commit's version is applied while the head still says v2.
    cluster.loop.converge()
    wait_until(lambda: cluster.settled(v1_rs, 2), what="v1 back", timeout=30)
    assert set(cluster.replicasets()) == {v1_rs, v2_rs}  # the old ReplicaSet, reused

    # The revert was committed and pushed: Git holds the truth again, and the pin lapses.
    wait_until(
        lambda: cluster.repo.git("log", "-1", "--format=%s").startswith(
            f"Revert {bad[:12]}: auto-rollback"
        ),
        what="the revert commit",
    )
    cluster.sync()
    assert read_pins(cluster.api) == {}
    live = cluster.api.get(Deployment, "web", namespace="shop")
    assert live.spec.template.spec.containers[0].image == "capstan.local/busybox:1"
    wait_until(lambda: cluster.settled(v1_rs, 2), what="v1 stays")
    assert set(cluster.replicasets()) == {v1_rs, v2_rs}


def test_progress_deadline_exceeded_pins_without_push(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("namespace.yaml", NAMESPACE)
    clock = ManualClock()
    with temp_api(tmp_path, clock) as api:
        source = GitSource(repo.path, branch="main", cache_dir=tmp_path / "cache")
        loop = SyncLoop(
            api,
            source,
            watch=BranchWatch(source, watch_local=False, debounce_s=0.0),
            options=SyncOptions(resync_s=0.0),
        )
        components = [DeploymentController, ReplicaSetController, Scheduler, AutoRollbackController]
        with (
            HollowCluster(api, clock=clock, start_delay_s=0.0) as hollow,
            ControllerManager(api, clock=clock, components=components),
        ):
            hollow.add_nodes(2, cpu="4", memory="8Gi", pods=20)
            cluster = Cluster(api, hollow, loop, repo, "")

            def manifest(image: str) -> str:
                return deployment(image=image, annotations=OPT_IN).replace(
                    "spec:\n  replicas: 2", "spec:\n  progressDeadlineSeconds: 30\n  replicas: 2"
                )

            repo.write("web.yaml", manifest("capstan.local/busybox:1"))
            good = repo.commit("v1")
            cluster.sync()
            wait_until(lambda: len(cluster.replicasets()) == 1, what="v1 replica set")
            [v1_rs] = cluster.replicasets()
            wait_until(lambda: cluster.settled(v1_rs, 2), what="v1 pods running")

            # From here on the nodes start nothing: v2's pods stay Pending, never ready.
            for node in list(hollow.nodes):
                hollow.kill(node)
            repo.write("web.yaml", manifest("capstan.local/busybox:never-ready"))
            repo.commit("v2: never ready")
            cluster.sync()
            wait_until(lambda: len(cluster.replicasets()) == 2, what="v2 replica set")

            def stalled() -> bool:
                status = api.get(Deployment, "web", namespace="shop").status
                return (
                    status is not None
                    and status.updated_replicas == 1
                    and status.replicas == 3
                    and status.ready_replicas == 2
                )

            # The stall must be what the controller last saw before time moves on.
            wait_until(stalled, what="the stalled rollout in the status")
            assert read_pins(api) == {}
            clock.advance(31.0)
            wait_until(lambda: "Deployment/shop/web" in read_pins(api), what="the pin")
            pin = read_pins(api)["Deployment/shop/web"]
            assert pin.commit == good
            assert pin.reason.startswith("progress deadline exceeded (30s")
            loop.converge()
            wait_until(lambda: cluster.settled(v1_rs, 2), what="v1 back", timeout=30)
            assert len(cluster.replicasets()) == 2  # v1's reused, v2's scaled to zero
            assert repo.git("log", "-1", "--format=%s") == "v2: never ready"  # no push access
            loop.converge()  # the head still says v2: the pin holds
            assert "Deployment/shop/web" in read_pins(api)
            live = api.get(Deployment, "web", namespace="shop")
            assert live.spec.template.spec.containers[0].image == "capstan.local/busybox:1"
