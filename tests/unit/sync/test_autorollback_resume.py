"""An auto-rollback cut short by a crash is finished by whoever leads next, exactly once.

The leader "dies" (``Killed``, which nothing catches) before the Nth store write of
``_roll_back``, for every N, or between the local revert commit and its push; then a fresh
controller manager on the same store (another replica, with its own Git cache, or the same
one restarted) must leave one pin, one Event, one sync record and one pushed revert, and mark
the claim complete. A deposed leader that wakes mid-rollback is fenced. Real store (SQLite),
real Git repositories, real controller runtime.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from reconciler.api import Api, ApiError, ManualClock, now_utc
from reconciler.controllers.manager import ControllerManager
from reconciler.controllers.runtime import ControllerContext, InformerFactory
from reconciler.source.git import CommitSha, GitSource
from reconciler.store import (
    Compare,
    DeleteResult,
    LeaseID,
    Op,
    OpKind,
    PutResult,
    Store,
    StoreWrapper,
    TxnResult,
    open_store,
)
from reconciler.store.election import LEADER_KEY, FencedStore
from reconciler.sync.autorollback import (
    KILL_AFTER_ENV,
    AutoRollbackController,
    Rollout,
    reverted_by,
)
from reconciler.sync.pins import read_claims, read_pins
from reconciler.sync.records import list_sync_records
from reconciler.workloads.deployment import pod_template_hash
from schemas import Deployment, Namespace, ObjectMeta, parse_object
from tests.e2e.conftest import GitRepo
from tests.fixtures.waiting import wait_until

WHY = "pod web-x container main is in CrashLoopBackOff (1 restarts, last exit code 3)"
NAME = "Deployment/shop/web"
#: More than ``_roll_back`` writes with push access (``test_every_write_is_a_crash_point``).
CRASH_POINTS = 10


class Killed(BaseException):
    """The process died here (kill -9): nothing after this point runs, nothing catches it."""


class DyingStore(StoreWrapper):
    """``inner``, until ``arm(n)``: then the process dies before its (n+1)th write."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.budget: int | None = None
        self.writes = 0
        self.keys: list[str] = []

    def arm(self, budget: int | None) -> None:
        self.budget, self.writes, self.keys = budget, 0, []

    def _write(self, key: str) -> None:
        if self.budget is not None and self.writes >= self.budget:
            raise Killed(f"died before write {self.writes + 1} (to {key})")
        self.writes += 1
        self.keys.append(key)

    def put(self, key: str, value: bytes, *, lease: LeaseID | None = None) -> PutResult:
        self._write(key)
        return self._inner.put(key, value, lease=lease)

    def delete(self, key: str, *, prefix: bool = False) -> DeleteResult:
        self._write(key)
        return self._inner.delete(key, prefix=prefix)

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        if any(op.kind is not OpKind.RANGE for op in [*success, *failure]):
            self._write(success[0].key if success else failure[0].key)
        return self._inner.txn(compares, success, failure)

    def close(self) -> None:
        return None  # the inner store is shared with the next leader


class DiesBeforePush(GitSource):
    """A Git source whose process dies after the local revert commit, before the push."""

    def push(self) -> CommitSha:
        raise Killed("died before git push")


def web(image: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  annotations: {{capstan.io/auto-rollback: "true"}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: main, image: "{image}"}}]
"""


@dataclass
class World:
    """The store (with its dying view), the remote branch with v1 (good) and v2 (bad), the
    Deployment as v2 has it, and its rollout."""

    tmp: Path
    store: Store
    dying: DyingStore
    work: GitRepo
    remote: Path
    deployment: Deployment
    rollout: Rollout

    def api(self, store: Store | None = None) -> Api:
        return Api(store or self.store, clock=ManualClock())

    def source(self, cache: str, kind: type[GitSource] = GitSource) -> GitSource:
        return kind(self.remote, branch="main", cache_dir=self.tmp / cache)

    def remote_git(self, *args: str) -> str:
        return self.work.git("--git-dir", str(self.remote), *args)

    def reverts(self) -> list[str]:
        log = self.remote_git("log", "--format=%B%x00", "main")
        return [m for m in log.split("\x00") if reverted_by(m.strip()) == self.rollout.commit]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    work, remote = GitRepo(tmp_path / "work"), tmp_path / "remote.git"
    work.git("init", "-q", "--bare", "-b", "main", str(remote))
    commits = [
        work.commit(image, {"web.yaml": web(image)}) for image in ("busybox:1", "busybox:crash")
    ]
    work.git("push", "-q", str(remote), "main")
    d = parse_object(yaml.safe_load(web("busybox:crash")))
    assert isinstance(d, Deployment)
    rollout = Rollout(
        template=pod_template_hash(d.spec.template),
        commit=commits[1],
        message="busybox:crash",
        started_at=now_utc(ManualClock()),
        good_commit=commits[0],
    )
    with open_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        api = Api(store, clock=ManualClock())
        api.create(Namespace(metadata=ObjectMeta(name="shop")))
        stored = api.create(d)
        assert isinstance(stored, Deployment)
        yield World(tmp_path, store, DyingStore(store), work, remote, stored, rollout)


def controller(api: Api, source: GitSource) -> AutoRollbackController:
    """A controller as a leader's manager makes it, not started: ``_roll_back`` is called."""
    ctx = ControllerContext(api, InformerFactory(api), api.clock)
    return AutoRollbackController(ctx, git=source, push=True)


def take_over(world: World, api: Api, source: GitSource) -> None:
    """Another leader's manager, started on the store: it finishes the claimed rollback."""
    components = [functools.partial(AutoRollbackController, git=source, push=True)]
    with ControllerManager(api, clock=api.clock, components=components):
        wait_until(
            lambda: not read_claims(api)[world.rollout.commit].pending,
            what="the claimed rollback finished",
        )


def assert_rolled_back_once(world: World) -> None:
    api = world.api()
    bad, good = world.rollout.commit, world.rollout.good_commit
    claim = read_claims(api)[bad]
    assert claim.pending == ()
    pin = read_pins(api)[NAME]
    assert (pin.commit, pin.bad_commit, pin.bad_template) == (good, bad, world.rollout.template)
    records = [r for r in list_sync_records(api) if r.trigger == "rollback"]
    assert len(records) == 1, "the rollback was recorded more than once, or never"
    assert records[0].commit == good
    [revert] = world.reverts()  # exactly one revert on the branch
    assert claim.revert == world.remote_git("rev-parse", "main")
    assert revert
    events = [e for e in api.list_events(namespace="shop") if e.reason == "AutoRollback"]
    by_message = {e.message: e.count for e in events}
    assert by_message == {
        records[0].message: 1,
        f"committed and pushed revert {claim.revert[:12]} of {bad[:12]}": 1,
    }, "an Event was recorded twice, or one is missing"


def test_every_write_is_a_crash_point(world: World) -> None:
    api = world.api(world.dying)
    world.dying.arm(None)
    controller(api, world.source("a"))._roll_back(world.deployment, world.rollout, WHY)
    assert world.dying.writes < CRASH_POINTS, world.dying.keys
    assert_rolled_back_once(world)


@pytest.mark.parametrize("dies_before_write", range(CRASH_POINTS))
def test_a_leader_killed_anywhere_in_the_rollback_is_finished_once_by_the_next(
    world: World, dies_before_write: int
) -> None:
    api = world.api(world.dying)  # its namespaces exist: the first write is the claim
    world.dying.arm(dies_before_write)
    # Beyond the writes there are (``test_every_write_is_a_crash_point``) it lives.
    with contextlib.suppress(Killed):
        controller(api, world.source("a"))._roll_back(world.deployment, world.rollout, WHY)
    claims = read_claims(world.api())
    if dies_before_write == 0:
        assert claims == {}, "died before the claim: nothing was claimed"
        return  # the next leader judges the rollout afresh (decide), nothing to finish
    take_over(world, world.api(), world.source("b"))
    assert_rolled_back_once(world)


def test_killed_between_the_revert_commit_and_its_push_the_restarted_replica_pushes_one(
    world: World,
) -> None:
    with pytest.raises(Killed):
        controller(world.api(), world.source("a", DiesBeforePush))._roll_back(
            world.deployment, world.rollout, WHY
        )
    assert world.reverts() == [], "nothing was pushed"
    assert read_claims(world.api())[world.rollout.commit].pending == ("revert",)
    # The same replica restarted: its Git cache still holds the unpushed revert commit.
    take_over(world, world.api(), world.source("a"))
    assert_rolled_back_once(world)


def test_a_deposed_leader_waking_mid_rollback_writes_nothing(world: World) -> None:
    term_a = int(world.store.put(LEADER_KEY, b"a").revision)
    a_api = world.api(FencedStore(world.dying, term=term_a))
    world.dying.arm(2)  # the claim and the pin, then it stops (SIGSTOP, or a long pause)
    a = controller(a_api, world.source("a"))
    with pytest.raises(Killed):
        a._roll_back(world.deployment, world.rollout, WHY)
    stale = read_claims(world.api())[world.rollout.commit]
    assert stale.pending == ("pin", "event", "record", "revert")
    # Its lease ran out and b leads, on a new term. a wakes and carries on where it stopped:
    # the store refuses its writes.
    world.store.delete(LEADER_KEY)
    term_b = int(world.store.put(LEADER_KEY, b"b").revision)
    before = world.store.revision()
    world.dying.arm(None)
    with pytest.raises(ApiError, match="another replica leads"):
        a._finish(world.deployment, stale)
    assert world.store.revision() == before, "the deposed leader wrote something"
    b_api = world.api(FencedStore(world.store, term=term_b))
    take_over(world, b_api, world.source("b"))
    assert_rolled_back_once(world)
    # Woken once more, after b finished: it finds every step done and tries no write at all.
    before = world.store.revision()
    world.dying.arm(None)
    a._finish(world.deployment, stale)
    assert world.store.revision() == before
    assert world.dying.writes == 0
    assert_rolled_back_once(world)


def test_the_fault_suites_kill_point_must_name_a_step(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KILL_AFTER_ENV, "pinn")
    with pytest.raises(ValueError, match=r"CAPSTAN_FAULT_KILL_AFTER='pinn': not a step"):
        controller(world.api(), world.source("a"))
