"""``capstan node cordon|uncordon|drain`` on a real temp store with hollow nodes: a drain cordons,
evicts through the API's Eviction, and a PodDisruptionBudget holds pods back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.api import Api, ManualClock, NotFound
from reconciler.cli import cli
from schemas import Node, Pod
from schemas.apps import ReplicaSet, ReplicaSetSpec
from schemas.meta import LabelSelector, ObjectMeta, OwnerReference
from schemas.pod import Container, PodSpec, PodTemplateSpec
from schemas.policy import PodDisruptionBudget, PodDisruptionBudgetSpec
from tests.fixtures.hollow import HollowCluster, temp_api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with temp_api(tmp_path, ManualClock()) as api:
        yield api


@pytest.fixture
def hollow(api: Api) -> Iterator[HollowCluster]:
    with HollowCluster(api, clock=api.clock, start_delay_s=3600) as cluster:
        cluster.add_node("n1")
        cluster.add_node("n2")
        yield cluster


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def running(
    api: Api, hollow: HollowCluster, name: str, node: str, *, owner: str | None = "ReplicaSet"
) -> None:
    refs = (
        [
            OwnerReference(
                api_version="apps/v1", kind=owner, name="x", uid=f"uid-{owner}", controller=True
            )
        ]
        if owner
        else []
    )
    api.create(
        Pod(
            metadata=ObjectMeta(
                name=name, namespace="default", labels={"app": "web"}, owner_references=refs
            ),
            spec=PodSpec(
                containers=[Container(name="app", image="capstan.local/busybox:1")],
                node_name=node,
            ),
        )
    )
    hollow.set_pod_ready(name, ready=True)


def budget(api: Api, **bounds: int | str) -> None:
    api.create(
        PodDisruptionBudget(
            metadata=ObjectMeta(name="web", namespace="default"),
            spec=PodDisruptionBudgetSpec(
                selector=LabelSelector(match_labels={"app": "web"}), **bounds
            ),
        )
    )


def run(store_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["node", *args, "--store", store_url])


def exists(api: Api, name: str) -> bool:
    try:
        api.get(Pod, name, namespace="default")
    except NotFound:
        return False
    return True


def assert_drained(api: Api, *, gone: list[str], kept: list[str]) -> None:
    assert [name for name in gone if exists(api, name)] == []
    assert [name for name in kept if not exists(api, name)] == []
    assert api.get(Node, "n1").spec.unschedulable


def test_drain_evicts_what_the_budget_allows_and_leaves_daemons(
    api: Api, hollow: HollowCluster, store_url: str
) -> None:
    running(api, hollow, "web-1", "n1")
    running(api, hollow, "web-2", "n2")
    running(api, hollow, "agent-n1", "n1", owner="DaemonSet")
    budget(api, min_available=1)
    result = run(store_url, "drain", "n1", "--timeout", "10")
    assert result.exit_code == 0, result.output
    assert "node/n1 cordoned" in result.output
    assert "evicting pod default/web-1" in result.output
    assert "ignoring DaemonSet-managed pod default/agent-n1" in result.output
    assert result.output.rstrip().endswith("node/n1 drained")
    assert_drained(api, gone=["web-1"], kept=["web-2", "agent-n1"])


def test_drain_keeps_pods_a_budget_protects_and_says_so(
    api: Api, hollow: HollowCluster, store_url: str
) -> None:
    api.create(
        ReplicaSet(
            metadata=ObjectMeta(name="x", namespace="default"),
            spec=ReplicaSetSpec(
                replicas=3,
                selector=LabelSelector(match_labels={"app": "web"}),
                template=PodTemplateSpec(
                    metadata=ObjectMeta(labels={"app": "web"}),
                    spec=PodSpec(
                        containers=[Container(name="app", image="capstan.local/busybox:1")]
                    ),
                ),
            ),
        )
    )
    running(api, hollow, "web-1", "n1")
    running(api, hollow, "web-2", "n1")
    running(api, hollow, "web-3", "n2")
    budget(api, max_unavailable=1)
    result = run(store_url, "drain", "n1", "--timeout", "1", "--retry-interval", "0.2")
    assert result.exit_code == 1, result.output
    # One of the two may go (3 healthy, 2 needed); the other is held back by the budget.
    assert "evicting pod default/web-1" in result.output
    assert "would violate the pod's disruption budget default/web" in result.output
    assert "drain of node n1 timed out" in result.output
    assert_drained(api, gone=["web-1"], kept=["web-2", "web-3"])


def test_drain_refuses_pods_without_a_controller_unless_forced(
    api: Api, hollow: HollowCluster, store_url: str
) -> None:
    running(api, hollow, "lonely", "n1", owner=None)
    result = run(store_url, "drain", "n1")
    assert result.exit_code == 1
    assert "use --force" in result.output
    assert exists(api, "lonely")
    forced = run(store_url, "drain", "n1", "--force")
    assert forced.exit_code == 0, forced.output
    assert not exists(api, "lonely")


def test_cordon_and_uncordon(api: Api, hollow: HollowCluster, store_url: str) -> None:
    assert "node/n2 cordoned" in run(store_url, "cordon", "n2").output
    assert api.get(Node, "n2").spec.unschedulable
    assert "already cordoned" in run(store_url, "cordon", "n2").output
    assert "node/n2 uncordoned" in run(store_url, "uncordon", "n2").output
    assert not api.get(Node, "n2").spec.unschedulable
