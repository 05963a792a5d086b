"""``capstan rollback`` end to end: real store, real controllers and scheduler, hollow nodes,
a real Git repository and the real sync loop.

v1 → v2 → ``capstan rollback --steps 1`` → the revert commit syncs → the Deployment
controller reuses v1's ReplicaSet (same pod-template hash, no new ReplicaSet) and v1's pods
come back. Then ``capstan history`` shows what each commit produced.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from plan_testdata import NAMESPACE, GitRepo, deployment

from reconciler.api import Api, ManualClock
from reconciler.cli import cli
from reconciler.controllers.deployment import DeploymentController
from reconciler.controllers.manager import ControllerManager
from reconciler.controllers.replicaset import ReplicaSetController
from reconciler.scheduler import Scheduler
from reconciler.source.git import GitSource
from reconciler.source.watch import BranchWatch
from reconciler.sync import SyncLoop, SyncOptions
from reconciler.workloads.deployment import REVISION_ANNOTATION
from schemas import Pod, ReplicaSet
from tests.fixtures.hollow import HollowCluster, temp_api
from tests.fixtures.waiting import wait_until


@dataclass
class Cluster:
    api: Api
    hollow: HollowCluster
    loop: SyncLoop
    repo: GitRepo
    url: str

    def sync(self) -> None:
        self.loop.trigger()
        result = self.loop.step(timeout=1.0)
        assert result is not None
        assert result.succeeded, result

    def replicasets(self) -> dict[str, ReplicaSet]:
        return {rs.name: rs for rs in self.api.list(ReplicaSet, namespace="shop").items}

    def running(self, rs: str) -> list[Pod]:
        return [
            p
            for p in self.hollow.running_pods()
            if any(ref.name == rs for ref in p.metadata.owner_references)
        ]

    def settled(self, rs: str, replicas: int) -> bool:
        sets = self.replicasets()
        others_down = all(r.spec.replicas == 0 for name, r in sets.items() if name != rs)
        alive = [
            p
            for p in self.api.list(Pod, namespace="shop").items
            if p.metadata.deletion_timestamp is None
        ]
        return (
            rs in sets
            and sets[rs].spec.replicas == replicas
            and others_down
            and len(self.running(rs)) == replicas
            and len(alive) == replicas
        )


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
        components = [DeploymentController, ReplicaSetController, Scheduler]
        with (
            HollowCluster(api, clock=clock, start_delay_s=0.0) as hollow,
            ControllerManager(api, clock=clock, components=components),
        ):
            hollow.add_nodes(2, cpu="4", memory="8Gi", pods=20)
            yield Cluster(api, hollow, loop, repo, f"sqlite:///{tmp_path / 'state.db'}")


def test_rollback_reuses_the_old_replicaset_and_brings_its_pods_back(cluster: Cluster) -> None:
    cluster.repo.write("web.yaml", deployment(image="capstan.local/busybox:1"))
    cluster.repo.commit("v1")
    cluster.sync()
    wait_until(lambda: len(cluster.replicasets()) == 1, what="v1 replica set")
    [v1_rs] = cluster.replicasets()
    wait_until(lambda: cluster.settled(v1_rs, 2), what="v1 pods running")
    v1_pods = {p.name for p in cluster.running(v1_rs)}

    cluster.repo.write("web.yaml", deployment(image="capstan.local/busybox:2"))
    cluster.repo.commit("v2: new image")
    cluster.sync()
    wait_until(lambda: len(cluster.replicasets()) == 2, what="v2 replica set")
    [v2_rs] = set(cluster.replicasets()) - {v1_rs}
    wait_until(lambda: cluster.settled(v2_rs, 2), what="v2 rolled out", timeout=30)

    result = CliRunner().invoke(
        cli,
        [
            "rollback",
            str(cluster.repo.path),
            "--steps",
            "1",
            "--yes",
            "--reason",
            "v2 breaks checkout",
            "--store",
            cluster.url,
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"reuses ReplicaSet {v1_rs} (revision 1" in result.output
    head_message = cluster.repo.git("log", "-1", "--format=%B")
    assert head_message.startswith("Roll back to ")
    assert "Reverts 1 commit(s):" in head_message
    assert "v2: new image" in head_message
    assert "Why: v2 breaks checkout" in head_message
    assert cluster.repo.status() == ""

    cluster.sync()
    wait_until(lambda: cluster.settled(v1_rs, 2), what="v1 back", timeout=30)
    sets = cluster.replicasets()
    assert set(sets) == {v1_rs, v2_rs}  # reused: no third ReplicaSet, no new hash
    assert sets[v1_rs].metadata.annotations[REVISION_ANNOTATION] == "3"
    back = cluster.running(v1_rs)
    assert {p.spec.containers[0].image for p in back} == {"capstan.local/busybox:1"}
    assert not v1_pods & {p.name for p in back}  # new pods of the old template

    history = CliRunner().invoke(cli, ["history", "--store", cluster.url, "-o", "json"])
    assert history.exit_code == 0, history.output
    records = json.loads(history.output)
    subjects = [r["message"].splitlines()[0] for r in records]
    assert subjects[1:] == ["v2: new image", "v1"]
    assert subjects[0].startswith("Roll back to ")
    assert [r["revisions"][0]["revision"] for r in records] == [3, 2, 3]
    table = CliRunner().invoke(cli, ["history", "--store", cluster.url, "--limit", "2"])
    assert "shop/web@3" in table.output
    assert "shop/web@2" in table.output
    assert len(table.output.splitlines()) == 3
