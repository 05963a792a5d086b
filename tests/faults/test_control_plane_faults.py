"""Faults injected for real into an HA control plane: 3 etcd members, 3 ``capstan up``.

Each test starts from v1 rolled out by the replicas (one leads, two serve the API only),
injects its fault with signals to real processes, and checks the invariants that must hold
whatever the timing: a follower takes over, the work completes, no pod beyond maxSurge, no
commit applied twice, a deposed leader writes nothing and exits, etcd quorum loss answers
503 while the pods keep running, and everything recovers when the fault ends.
"""

from __future__ import annotations

import json
import random
import re
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import pytest

from reconciler.api import ApiError
from reconciler.cli.up import LOST_LEADERSHIP_EXIT
from reconciler.client import Client
from reconciler.sync.autorollback import KILL_AFTER_ENV, reverted_by
from reconciler.sync.pins import read_claims, read_pins
from schemas import ConfigMap
from schemas.meta import ObjectMeta
from tests.faults.harness import PodCensus, Replica
from tests.faults.scenario import (
    CANARY,
    KILL_FILES,
    MAX_SURGE,
    MAX_UNAVAILABLE,
    REPLICAS,
    ROLLOUT_TIMEOUT_S,
    FaultRig,
    canary,
    canary_rolled_back,
    double_applied,
    fault_kills,
    fault_rig,
    fault_seed,
    kill_leaders,
    reverts_of,
    rollbacks_of,
    rolled_out,
    version_files,
)
from tests.fixtures.waiting import wait_until


def _wait_v1(rig: FaultRig) -> None:
    wait_until(
        lambda: rolled_out(rig.plane.api, "v1"),
        timeout=ROLLOUT_TIMEOUT_S,
        what="v1 rolled out by the replicas",
    )


@pytest.mark.timeout(900)
def test_leader_killed_at_random_points_of_rollouts(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    with fault_rig(docker_client, tmp_path, files=KILL_FILES) as rig:
        seed = fault_seed()
        print(f"kill points: CAPSTAN_FAULT_SEED={seed} replays them")
        run = kill_leaders(rig, fault_kills(), random.Random(seed))
        api = rig.plane.api
        print(f"takeovers after kill -9: {[round(t, 2) for _, t in run.takeovers]}")
        census = run.census
        assert census.changes > 0, "the census saw no pod change: it watched nothing"
        assert census.max_live <= REPLICAS + MAX_SURGE, "more pods than replicas + maxSurge"
        assert census.min_available is not None
        assert census.min_available >= REPLICAS - MAX_UNAVAILABLE, (
            f"a serving pod was lost: {census.low_point}"
        )
        assert census.restarts == {}, "containers died under their pods"
        assert double_applied(api, first_commit=run.first_commit) == {}
        assert rollbacks_of(api, run.bad_commit) == 1, "the bad commit was not rolled back once"
        assert read_claims(api)[run.bad_commit].pending == (), "the rollback was left unfinished"
        assert reverts_of(rig.repo, run.bad_commit) == 1, "the bad commit was not reverted once"
        wait_until(
            lambda: len(rig.app_containers("web")) == REPLICAS,
            timeout=60,
            what="exactly the final pods' containers running",
        )


@pytest.mark.timeout(600)
@pytest.mark.parametrize("step", ["claim", "pin"])
def test_leader_killed_inside_the_auto_rollback_right_after_its(
    docker_client: docker.DockerClient, tmp_path: Path, step: str
) -> None:
    """The leader is killed -9 right after it claimed the bad commit (before the pin) or
    right after the pin (before the Event, the sync record and the revert): the seam
    ``CAPSTAN_FAULT_KILL_AFTER`` makes it kill itself exactly there. The next leader finishes
    the rollback: the canary is back, one record, one Event, one revert, and nobody died twice
    (no step was done again)."""
    env = {KILL_AFTER_ENV: step}
    with fault_rig(docker_client, tmp_path, files=KILL_FILES, env=env) as rig:
        api, plane = rig.plane.api, rig.plane
        wait_until(
            lambda: rolled_out(api, "v1") and canary_rolled_back(api),
            timeout=ROLLOUT_TIMEOUT_S,
            what="v1 and the canary running",
        )
        bad = rig.repo.commit("canary crashing", {"canary.yaml": canary(crash=True)})

        def killed() -> list[Replica]:
            return [r for r in plane.replicas if -signal.SIGKILL in r.exits]

        wait_until(killed, timeout=ROLLOUT_TIMEOUT_S, what=f"the leader killed after the {step}")
        [victim] = killed()
        assert f"{KILL_AFTER_ENV}={step}: killing this process" in victim.log()
        wait_until(
            lambda: bad in read_claims(api) and not read_claims(api)[bad].pending,
            timeout=ROLLOUT_TIMEOUT_S,
            what="the next leader finishing the rollback",
        )
        wait_until(
            lambda: canary_rolled_back(api) and read_pins(api) == {},
            timeout=ROLLOUT_TIMEOUT_S,
            what="the canary back, and the pin lapsed on the revert",
        )
        claim = read_claims(api)[bad]
        assert rollbacks_of(api, bad) == 1, "the bad commit was not rolled back once"
        assert reverts_of(rig.repo, bad) == 1, "the bad commit was not reverted once"
        assert claim.revert is not None
        assert reverted_by(rig.repo.message(claim.revert)) == bad
        events = [
            e
            for e in api.list_events(namespace="default")
            if e.reason == "AutoRollback"
            and e.message.startswith(f"auto-rollback of Deployment default/{CANARY} ")
        ]
        assert [e.count for e in events] == [1], "the rollback's Event was not recorded once"
        assert killed() == [victim], "another leader died at the same step: it was done twice"
        assert double_applied(api) == {}


@pytest.mark.timeout(600)
def test_leader_paused_past_its_lease_is_fenced_and_exits(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    with fault_rig(docker_client, tmp_path, log_applies=True) as rig:
        _wait_v1(rig)
        plane = rig.plane
        census = PodCensus(plane.api, app="web")
        leader = plane.wait_leader()
        term = plane.term()
        assert term is not None
        _status_shows(leader, term, plane.replicas)
        plane.hold(leader)
        leader.kill(signal.SIGSTOP)
        try:
            wait_until(
                lambda: plane.term() not in (None, term) and plane.leader() is not None,
                timeout=120,
                what="a follower taking over from the paused leader",
            )
            taken_over_at = datetime.now(UTC)
            # Work the paused leader's informers and sync loop will see when it wakes.
            rig.repo.commit("v2", version_files("v2"))
            wait_until(
                lambda: rolled_out(plane.api, "v2"),
                timeout=ROLLOUT_TIMEOUT_S,
                what="v2 rolled out by the new leader",
            )
            # The paused replica renews nothing: its registration lapses with its lease.
            new_leader, new_term = plane.wait_leader(), plane.term()
            assert new_term is not None
            _status_shows(new_leader, new_term, [r for r in plane.replicas if r is not leader])
        finally:
            leader.kill(signal.SIGCONT)
        assert leader.proc is not None
        code = leader.proc.wait(timeout=120)
        log = leader.log()
        assert code == LOST_LEADERSHIP_EXIT, log[-3000:]
        assert "lost leadership" in log
        census.close()
        # The store's record (etcd's log of every write it applied, with its compares): once
        # another term began, every write to an API object was fenced; those fenced by the
        # old term are the deposed leader's attempts after it woke (they cannot succeed: the
        # leader key was created anew), and the deposed leader counted each one as refused.
        after = [w for w in rig.etcd.applied_writes() if w.at >= taken_over_at]
        unfenced = [w for w in after if w.term is None and _registry(w.keys)]
        assert unfenced == [], f"writes to API objects without the leader fence: {unfenced}"
        attempts = [w for w in after if w.term == term]
        refused = re.search(rf"the store refused (\d+) write\(s\) of term {term}\b", log)
        assert refused is not None, log[-3000:]
        assert attempts, "the deposed leader attempted no write: fencing was not exercised"
        assert int(refused.group(1)) == len(attempts), (refused.group(0), attempts)
        plane.release(leader)
        assert rolled_out(plane.api, "v2"), "the deposed leader undid nothing"
        assert census.max_live <= REPLICAS + MAX_SURGE
        assert double_applied(rig.plane.api) == {}


def _status_shows(leader: Replica, term: int, live: list[Replica]) -> None:
    """``capstan status`` on a follower's host names the lease holder, since when it leads,
    its term, and the ``live`` replicas (a replica that stopped renewing drops out)."""
    follower = next(r for r in live if r is not leader)
    config = follower.state_dir / "config"
    wait_until(config.exists, timeout=60, what="the follower's client config")
    identities = sorted(r.identity for r in live)

    def shown() -> dict[str, Any] | None:
        plane: dict[str, Any] = json.loads(follower.status("-o", "json"))["controlPlane"]
        listed = sorted(r["identity"] for r in plane["replicas"])
        return (
            plane
            if (plane["leader"], plane["term"], listed) == (leader.identity, term, identities)
            else None
        )

    plane = wait_until(
        shown, timeout=60, what=f"capstan status naming {leader.identity}, term {term}"
    )
    since = datetime.fromisoformat(plane["leaderSince"])
    assert since <= datetime.now(UTC)
    assert [r["identity"] for r in plane["replicas"] if r["leader"]] == [leader.identity]
    text = follower.status()
    assert f"Leader:   {leader.identity} since {plane['leaderSince']} (" in text, text
    assert f"), term {term}\n" in text, text
    assert f"Replicas: {len(live)}: " in text, text
    assert f"{leader.identity} (leader)" in text, text


def _registry(keys: tuple[str, ...]) -> bool:
    return any(key.startswith("/registry/") for key in keys)


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
        timeout=ROLLOUT_TIMEOUT_S,
        what="v2 rolled out after recovery",
    )


def _try_create(client: Client, name: str) -> bool:
    try:
        client.create(_note(name))
    except ApiError as exc:
        return exc.code == 409  # 409: an earlier attempt landed after all
    return True
