"""Leader election and fencing on the embedded store (the same code runs on etcd)."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.store import Compare, Op, Store, open_store
from reconciler.store.election import (
    LEADER_KEY,
    ElectionSettings,
    Fenced,
    FencedStore,
    LeaderElector,
    Leadership,
    read_control_plane,
)
from tests.fixtures.waiting import wait_until

FAST = ElectionSettings(lease_duration_s=2, renew_deadline_s=1.5, retry_period_s=0.05)


class Replica:
    """An elector with its start/stop callbacks recorded as events."""

    def __init__(
        self,
        store: Store,
        identity: str,
        *,
        monotonic: object = None,
        settings: ElectionSettings = FAST,
    ) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.terms: list[int] = []
        kwargs = {} if monotonic is None else {"monotonic": monotonic}
        self.elector = LeaderElector(
            store,
            identity=identity,
            settings=settings,
            on_started_leading=self._on_started,
            on_stopped_leading=self._on_stopped,
            **kwargs,  # type: ignore[arg-type]
        )

    def _on_started(self, leadership: Leadership) -> None:
        self.terms.append(leadership.term)
        self.started.set()

    def _on_stopped(self, leadership: Leadership) -> None:
        self.stopped.set()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        yield opened


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for replica in made:
        replica.elector.stop()


def test_one_replica_leads_and_another_takes_over_when_its_lease_ends(store, replicas):
    a, b = Replica(store, "a"), Replica(store, "b")
    replicas += [a, b]
    a.elector.start()
    assert a.started.is_set(), "the first replica leads as soon as start returns"
    b.elector.start()
    assert not b.started.is_set()
    view = read_control_plane(store)
    assert view.leader == "a"
    assert view.term == a.terms[0]
    assert [r.identity for r in view.replicas] == ["a", "b"]
    # The leader's lease ends (what etcd does when its holder stops renewing).
    lease = a.elector.leadership.lease
    store.revoke(lease)
    wait_until(b.started.is_set, timeout=10, what="b takes over")
    wait_until(a.stopped.is_set, timeout=10, what="a steps down")
    assert b.terms[0] > a.terms[0]
    assert read_control_plane(store).leader == "b"


def test_a_deposed_leaders_writes_are_fenced(store, replicas):
    a, b = Replica(store, "a"), Replica(store, "b")
    replicas += [a, b]
    a.elector.start()
    fenced_calls: list[int] = []
    writes = FencedStore(store, term=a.terms[0], on_fenced=lambda: fenced_calls.append(1))
    writes.put("/registry/x", b"1")
    conflict = writes.txn([Compare.version("/registry/x", "==", 0)], [Op.put("/registry/x", b"2")])
    assert not conflict.succeeded, "an ordinary conflict is a failed txn, not a fence"
    assert not fenced_calls
    assert writes.refused == 0
    b.elector.start()
    store.revoke(a.elector.leadership.lease)
    wait_until(b.started.is_set, timeout=10, what="b takes over")
    before = store.revision()
    with pytest.raises(Fenced):
        writes.put("/registry/x", b"3")
    with pytest.raises(Fenced):
        writes.delete("/registry/x")
    with pytest.raises(Fenced):
        writes.txn([Compare.version("/registry/x", "==", 1)], [Op.put("/registry/x", b"4")])
    assert store.revision() == before, "nothing a deposed leader sent was written"
    assert store.get("/registry/x").value == b"1"
    assert len(fenced_calls) == 3
    assert writes.refused == 3


def test_a_leader_paused_past_its_renew_deadline_steps_down(store, replicas):
    now = [0.0]
    a = Replica(store, "a", monotonic=lambda: now[0])
    replicas.append(a)
    a.elector.start()
    assert a.started.is_set()
    # The process was stopped (SIGSTOP) longer than the renew deadline: its own clock says
    # so when it wakes, even though nobody has taken the key yet.
    now[0] += FAST.renew_deadline_s + 1
    wait_until(a.stopped.is_set, timeout=10, what="a steps down")
    assert not a.elector.is_leader


def test_stop_releases_the_key_so_a_follower_need_not_wait_out_the_lease(store, replicas):
    slow = ElectionSettings(lease_duration_s=60, renew_deadline_s=40, retry_period_s=0.05)
    a, b = Replica(store, "a", settings=slow), Replica(store, "b", settings=slow)
    replicas += [a, b]
    a.elector.start()
    b.elector.start()
    a.elector.stop()
    assert a.stopped.is_set()
    wait_until(b.started.is_set, timeout=10, what="b takes over at once")


def test_a_dead_holder_on_this_host_is_replaced_without_waiting(store, replicas):
    dead = subprocess.Popen(["true"])
    dead.wait()
    lease = store.grant(60)
    holder = {
        "holderIdentity": f"{socket.gethostname()}_{dead.pid}",
        "acquireTime": "2026-01-01T00:00:00Z",
        "leaseDurationSeconds": 60,
    }
    store.put(LEADER_KEY, json.dumps(holder).encode(), lease=lease)
    a = Replica(store, f"{socket.gethostname()}_1")
    replicas.append(a)
    a.elector.start()
    assert a.started.is_set()


def test_settings_must_nest_retry_renew_and_lease():
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        ElectionSettings(lease_duration_s=5, renew_deadline_s=10, retry_period_s=2)
