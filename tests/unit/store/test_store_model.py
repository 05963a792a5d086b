"""The embedded store against a plain-dict model of etcd's semantics (hypothesis, stateful)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from reconciler.store import (
    Compacted,
    Compare,
    DeleteResult,
    Event,
    EventType,
    LeaseNotFound,
    Op,
    PutResult,
    Revision,
)
from reconciler.store._sqlite import SqliteStore

KEYS = ["/h/a", "/h/ab", "/h/b", "/h/b/c", "/i/x"]
PREFIXES = ["/h/", "/h/a", "/h/b", "/", "/i/"]
values = st.binary(max_size=8)


@dataclass(frozen=True)
class ModelKV:
    value: bytes
    create: int
    mod: int
    version: int
    lease: int | None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class StoreModel(RuleBasedStateMachine):
    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="capstan-model-"))
        self.clock = FakeClock()
        self.store = self._open()
        self.revision = 1
        self.compacted = 0
        self.state: dict[str, ModelKV] = {}
        self.snapshots: dict[int, dict[str, ModelKV]] = {1: {}}
        # (revision, type, key, value): the history a watch must replay.
        self.events: list[tuple[int, EventType, str, bytes]] = []
        self.lease_deadline: dict[int, float] = {}

    def _open(self) -> SqliteStore:
        # No sweeper: leases expire only when a rule says so, so the model knows when.
        return SqliteStore(self.dir / "state.db", clock=self.clock, sweep_interval_s=3600)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- model helpers --------------------------------------------------------------------

    def _commit(self) -> None:
        self.snapshots[self.revision] = dict(self.state)

    def _model_put(self, key: str, value: bytes, lease: int | None) -> None:
        old = self.state.get(key)
        self.state[key] = ModelKV(
            value,
            old.create if old else self.revision,
            self.revision,
            (old.version + 1) if old else 1,
            lease,
        )
        self.events.append((self.revision, EventType.PUT, key, value))

    def _model_delete(self, keys: list[str]) -> None:
        for key in sorted(keys):
            del self.state[key]
            self.events.append((self.revision, EventType.DELETE, key, b""))

    def _matching(self, key: str, prefix: bool) -> list[str]:
        return sorted(k for k in self.state if (k.startswith(key) if prefix else k == key))

    def _live_lease(self, lease: int) -> bool:
        return lease in self.lease_deadline and self.lease_deadline[lease] > self.clock.now

    # -- rules ----------------------------------------------------------------------------

    @rule(key=st.sampled_from(KEYS), value=values)
    def put(self, key: str, value: bytes) -> None:
        old = self.state.get(key)
        result = self.store.put(key, value)
        self.revision += 1
        self._model_put(key, value, None)
        self._commit()
        assert result.revision == self.revision
        assert (result.prev_kv.value if result.prev_kv else None) == (old.value if old else None)

    @rule(key=st.sampled_from(KEYS + PREFIXES), prefix=st.booleans())
    def delete(self, key: str, prefix: bool) -> None:
        doomed = self._matching(key, prefix)
        result = self.store.delete(key, prefix=prefix)
        assert result.deleted == len(doomed)
        assert sorted(kv.key for kv in result.prev_kvs) == doomed
        if doomed:
            self.revision += 1
            self._model_delete(doomed)
            self._commit()
        assert result.revision == self.revision

    @rule(
        key=st.sampled_from(KEYS),
        stale=st.booleans(),
        puts=st.lists(
            st.tuples(st.sampled_from(KEYS), values), max_size=3, unique_by=lambda t: t[0]
        ),
        delete=st.sampled_from([None, *KEYS]),
    )
    def txn(self, key: str, stale: bool, puts: list[tuple[str, bytes]], delete: str | None) -> None:
        current = self.state.get(key)
        expected_mod = (current.mod if current else 0) + (1 if stale else 0)
        if delete is not None and any(k == delete for k, _ in puts):
            delete = None
        success = [Op.put(k, v) for k, v in puts] + ([Op.delete(delete)] if delete else [])
        result = self.store.txn(
            [Compare.mod_revision(key, "==", expected_mod)], success, [Op.range(key)]
        )
        assert result.succeeded == (not stale)
        if stale:
            assert result.revision == self.revision
            return
        wrote = bool(puts) or (delete is not None and delete in self.state)
        if wrote:
            self.revision += 1
            for k, v in puts:
                self._model_put(k, v, None)
            if delete is not None and delete in self.state:
                self._model_delete([delete])
            self._commit()
        assert result.revision == self.revision
        for response in result.responses:
            assert isinstance(response, PutResult | DeleteResult)
            assert response.revision == self.revision

    @rule(prefix=st.sampled_from(PREFIXES), limit=st.sampled_from([None, 1, 2]))
    def range_now(self, prefix: str, limit: int | None) -> None:
        result = self.store.range(prefix, prefix=True, limit=limit)
        expected = self._matching(prefix, True)
        assert result.count == len(expected)
        assert [kv.key for kv in result.kvs] == expected[:limit]
        assert result.revision == self.revision
        for kv in result.kvs:
            model = self.state[kv.key]
            assert (kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) == (
                model.value,
                model.create,
                model.mod,
                model.version,
                model.lease,
            )

    @rule(data=st.data(), prefix=st.sampled_from(PREFIXES))
    def range_at_revision(self, data: st.DataObject, prefix: str) -> None:
        at = data.draw(st.integers(min_value=1, max_value=self.revision))
        if at < self.compacted:
            with pytest.raises(Compacted):
                self.store.range(prefix, prefix=True, at_revision=Revision(at))
            return
        snapshot = self.snapshots[max(r for r in self.snapshots if r <= at)]
        result = self.store.range(prefix, prefix=True, at_revision=Revision(at))
        expected = sorted(k for k in snapshot if k.startswith(prefix))
        assert [kv.key for kv in result.kvs] == expected
        assert [kv.value for kv in result.kvs] == [snapshot[k].value for k in expected]
        assert [kv.mod_revision for kv in result.kvs] == [snapshot[k].mod for k in expected]

    @precondition(lambda self: self.revision > self.compacted)
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        at = data.draw(st.integers(min_value=self.compacted + 1, max_value=self.revision))
        self.store.compact(Revision(at))
        self.compacted = at

    @rule(data=st.data(), prefix=st.sampled_from(PREFIXES))
    def watch_replays_history(self, data: st.DataObject, prefix: str) -> None:
        start = data.draw(st.integers(min_value=0, max_value=self.revision))
        expected = [
            (rev, kind, key, value)
            for rev, kind, key, value in self.events
            if rev > start and key.startswith(prefix)
        ]
        with self.store.watch(prefix, prefix=True, from_revision=Revision(start)) as watch:
            if start + 1 < self.compacted:
                with pytest.raises(Compacted):
                    watch.poll(1.0)
                return
            got: list[Event] = []
            while len(got) < len(expected):
                batch = watch.poll(2.0)
                assert batch, f"watch stalled after {len(got)} of {len(expected)} events"
                got.extend(batch)
            assert watch.poll(0.0) == []
        # Within one revision etcd orders events by op order; the model orders a
        # revision's deletes by key, so compare revision by revision as sets.
        assert sorted((e.revision, e.type.value, e.kv.key, e.kv.value) for e in got) == sorted(
            (rev, kind.value, key, value) for rev, kind, key, value in expected
        )
        assert [e.revision for e in got] == sorted(e.revision for e in got)

    @rule(target=leases, ttl=st.integers(min_value=1, max_value=30))
    def grant(self, ttl: int) -> int:
        lease = self.store.grant(ttl)
        self.lease_deadline[lease] = self.clock.now + ttl
        return lease

    @rule(lease=leases, key=st.sampled_from(KEYS), value=values)
    def put_with_lease(self, lease: int, key: str, value: bytes) -> None:
        if not self._live_lease(lease):
            with pytest.raises(LeaseNotFound):
                self.store.put(key, value, lease=lease)  # type: ignore[arg-type]
            return
        self.store.put(key, value, lease=lease)  # type: ignore[arg-type]
        self.revision += 1
        self._model_put(key, value, lease)
        self._commit()

    @rule(lease=leases)
    def keepalive(self, lease: int) -> None:
        if not self._live_lease(lease):
            with pytest.raises(LeaseNotFound):
                self.store.keepalive(lease)  # type: ignore[arg-type]
            return
        ttl = self.store.keepalive(lease)  # type: ignore[arg-type]
        self.lease_deadline[lease] = self.clock.now + ttl

    @rule(lease=leases)
    def revoke(self, lease: int) -> None:
        if lease not in self.lease_deadline:
            with pytest.raises(LeaseNotFound):
                self.store.revoke(lease)  # type: ignore[arg-type]
            return
        self.store.revoke(lease)  # type: ignore[arg-type]
        self._end_lease(lease)

    @rule(seconds=st.integers(min_value=1, max_value=40))
    def time_passes(self, seconds: int) -> None:
        self.clock.now += seconds
        expired = self.store.expire_leases()
        due = sorted(
            (deadline, lease)
            for lease, deadline in self.lease_deadline.items()
            if deadline <= self.clock.now
        )
        assert expired == [lease for _, lease in due]
        for _, lease in due:
            self._end_lease(lease)

    def _end_lease(self, lease: int) -> None:
        del self.lease_deadline[lease]
        keys = [k for k, kv in self.state.items() if kv.lease == lease]
        if keys:
            self.revision += 1
            self._model_delete(keys)
            self._commit()

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self._open()

    @invariant()
    def revision_matches(self) -> None:
        assert self.store.revision() == self.revision


StoreModel.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreModel = StoreModel.TestCase
