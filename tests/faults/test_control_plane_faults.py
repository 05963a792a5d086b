"""Faults injected for real into an HA control plane: 3 etcd members, 3 ``capstan up``.

Each test starts from v1 rolled out by the replicas (one leads, two serve the API only),
injects its fault with signals to real processes, and checks the invariants that must hold
whatever the timing: a follower takes over, the work completes, no pod beyond maxSurge, no
commit applied twice, a deposed leader writes nothing and exits, etcd quorum loss answers
503 while the pods keep running, and everything recovers when the fault ends.
"""

from __future__ import annotations

import random
import signal

import pytest

from reconciler.api import ApiError
from reconciler.cli.up import LOST_LEADERSHIP_EXIT
from reconciler.client import Client
from reconciler.sync import read_sync_state
from schemas import ConfigMap
from schemas.meta import ObjectMeta
from tests.faults.harness import PodCensus, Replica, monotonic_wait
from tests.faults.scenario import (
    MAX_SURGE,
    REPLICAS,
    FaultRig,
    double_applied,
    fault_kills,
    rolled_out,
    version_files,
)
from tests.fixtures.waiting import wait_until

ROLLOUT_TIMEOUT = 240


def _wait_v1(rig: FaultRig) -> None:
    wait_until(
        lambda: rolled_out(rig.plane.api, "v1"),
        timeout=ROLLOUT_TIMEOUT,
        what="v1 rolled out by the replicas",
    )


@pytest.mark.timeout(1800)
def test_leader_killed_at_random_points_of_rollouts(rig: FaultRig) -> None:
    _wait_v1(rig)
    census = PodCensus(rig.plane.api, app="web")
    rng = random.Random()
    takeovers = []
    try:
        for i in range(fault_kills()):
            version = f"v{i + 2}"
            rig.repo.commit(version, version_files(version))
            monotonic_wait(rng.uniform(0.5, 6.0))  # a random point of the rollout
            _, takeover = rig.kill_leader()
            takeovers.append(takeover)
        final = f"v{fault_kills() + 1}"
        wait_until(
            lambda: rolled_out(rig.plane.api, final),
            timeout=ROLLOUT_TIMEOUT,
            what=f"{final} rolled out after the kills",
        )
        wait_until(
            lambda: read_sync_state(rig.plane.api).live_commit == rig.repo.head(),
            timeout=60,
            what="the last commit live",
        )
    finally:
        census.close()
    print(f"takeovers after kill -9: {[round(t, 2) for t in takeovers]}")
    assert census.max_live <= REPLICAS + MAX_SURGE, "more pods than replicas + maxSurge"
    assert double_applied(rig.plane.api) == {}
    wait_until(
        lambda: len(rig.app_containers()) == REPLICAS,
        timeout=60,
        what="exactly the final pods' containers running",
    )


@pytest.mark.timeout(600)
def test_leader_paused_past_its_lease_is_fenced_and_exits(rig: FaultRig) -> None:
    _wait_v1(rig)
    plane = rig.plane
    census = PodCensus(plane.api, app="web")
    leader = plane.wait_leader()
    term = plane.term()
    plane.hold(leader)
    leader.kill(signal.SIGSTOP)
    try:
        wait_until(
            lambda: plane.term() not in (None, term) and plane.leader() is not None,
            timeout=120,
            what="a follower taking over from the paused leader",
        )
        # Work the paused leader's informers will see when it wakes.
        rig.repo.commit("v2", version_files("v2"))
        wait_until(
            lambda: rolled_out(plane.api, "v2"),
            timeout=ROLLOUT_TIMEOUT,
            what="v2 rolled out by the new leader",
        )
    finally:
        leader.kill(signal.SIGCONT)
    assert leader.proc is not None
    code = leader.proc.wait(timeout=120)
    assert code == LOST_LEADERSHIP_EXIT, leader.log()[-3000:]
    assert "lost leadership" in leader.log()
    plane.release(leader)
    census.close()
    assert rolled_out(plane.api, "v2"), "the deposed leader undid nothing"
    assert census.max_live <= REPLICAS + MAX_SURGE
    assert double_applied(rig.plane.api) == {}


def _follower_client(rig: FaultRig) -> tuple[Replica, Client]:
    plane = rig.plane
    leader = plane.wait_leader()
    follower = next(r for r in plane.replicas if r is not leader and r.running())
    config = follower.state_dir / "config"
    wait_until(config.exists, timeout=60, what="the follower's client config")
    return follower, Client.from_config(config)


def _note(name: str) -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name, namespace="default"), data={"k": name})


@pytest.mark.timeout(900)
def test_etcd_member_loss_and_quorum_loss(rig: FaultRig) -> None:
    _wait_v1(rig)
    plane = rig.plane
    before = rig.app_containers()
    _, client = _follower_client(rig)
    with client:
        # One member of three down: the cluster keeps quorum; writes still land.
        victim = rig.etcd.members[0]
        victim.kill()
        wait_until(
            lambda: _try_create(client, "one-down"),
            timeout=120,
            what="a write through a follower with one etcd member down",
        )
        rig.etcd.restart(victim)
        wait_until(victim.healthy, timeout=60, what="the member back")

        # Two of three down: no quorum. Writes answer 503; the pods keep running.
        for member in rig.etcd.members[1:]:
            member.kill()
        with pytest.raises(ApiError) as refused:
            client.create(_note("no-quorum"))
        assert refused.value.code == 503
        leader = plane.leader() or plane.replicas[0]
        # The leader cannot renew without quorum: it gives up (exit 3) — a sign the control
        # plane had its chance to act on the outage.
        wait_until(
            lambda: (
                any(code == LOST_LEADERSHIP_EXIT for r in plane.replicas for code in r.exits)
                or not leader.running()
            ),
            timeout=120,
            what="the leader stepping down without quorum",
        )
        assert rig.app_containers() == before, "pods kept running through the outage"

        for member in rig.etcd.members[1:]:
            rig.etcd.restart(member)
        wait_until(
            lambda: all(m.healthy() for m in rig.etcd.members), timeout=120, what="quorum back"
        )
        plane.wait_leader(timeout=120)
    _, client = _follower_client(rig)
    with client:
        wait_until(
            lambda: _try_create(client, "after-quorum"), timeout=120, what="writes accepted again"
        )
        assert client.get(ConfigMap, "one-down", namespace="default").data == {"k": "one-down"}
    rig.repo.commit("v2", version_files("v2"))
    wait_until(
        lambda: rolled_out(plane.api, "v2"),
        timeout=ROLLOUT_TIMEOUT,
        what="v2 rolled out after recovery",
    )


def _try_create(client: Client, name: str) -> bool:
    try:
        client.create(_note(name))
    except ApiError as exc:
        return exc.code == 409  # 409: an earlier attempt landed after all
    return True
