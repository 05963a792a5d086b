"""The hollow nodes' start delay (``tests.fixtures.hollow``), which the scheduler, endpoints and
rollout tests drive with a manual clock: it runs from the pod's bind on the API's clock, so a
watch that delivers the pod after the test advanced the clock cannot strand it."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.api import ManualClock
from schemas import Pod
from schemas.meta import ObjectMeta
from schemas.pod import Container, PodSpec
from tests.fixtures.hollow import HollowCluster, temp_api
from tests.fixtures.waiting import wait_until


def _pod(name: str, *, node: str | None = None) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace="default"),
        spec=PodSpec(
            node_name=node, containers=[Container(name="app", image="capstan.local/busybox:1")]
        ),
    )


def _phase(cluster: HollowCluster, name: str) -> str | None:
    status = cluster.api.get(Pod, name, namespace="default").status
    return status.phase if status is not None else None


def test_a_pod_the_watch_delivers_after_the_advance_starts_on_the_next_tick(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    with temp_api(tmp_path, clock) as api:
        # Not started yet: its watch sees nothing until start(), which comes after the advance
        # (the race a trailing watch makes, made certain).
        cluster = HollowCluster(api, clock=clock, start_delay_s=1.0, background=False)
        try:
            cluster.add_node("n1")
            api.bind(api.create(_pod("bound-by-the-scheduler")), "n1")
            api.create(_pod("created-bound", node="n1"))  # as a DaemonSet makes its pods
            clock.advance(0.5)
            cluster.start()
            for name in ("bound-by-the-scheduler", "created-bound"):
                wait_until(lambda n=name: cluster.seen(n), what=f"the watch to deliver {name}")
            assert cluster.tick() == 0  # half the delay: not yet
            assert _phase(cluster, "bound-by-the-scheduler") != "Running"
            clock.advance(0.5)
            assert cluster.tick() == 2
            assert _phase(cluster, "bound-by-the-scheduler") == "Running"
            assert _phase(cluster, "created-bound") == "Running"
        finally:
            cluster.stop()


def test_a_pod_bound_before_its_node_registered_counts_from_its_bind(tmp_path: Path) -> None:
    clock = ManualClock()
    with (
        temp_api(tmp_path, clock) as api,
        HollowCluster(api, clock=clock, start_delay_s=1.0, background=False) as cluster,
    ):
        api.create(_pod("early", node="n1"))
        clock.advance(1.0)
        # The watch has the pod before its node is added: add_node takes it over from the cache.
        wait_until(lambda: cluster.pods_on("n1"), what="the watch to deliver the pod")
        cluster.add_node("n1")
        cluster.tick()
        assert _phase(cluster, "early") == "Running"


def test_the_cluster_runs_on_its_apis_clock(tmp_path: Path) -> None:
    with temp_api(tmp_path, ManualClock()) as api, pytest.raises(ValueError, match="API's clock"):
        HollowCluster(api, clock=ManualClock())
