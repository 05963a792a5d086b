"""The sync log stays readable and bounded: resyncs that change nothing leave one "last
resync" trace, identical repairs fold into one record, old records are pruned.

Through the real sync loop on a real repository and store, and ``capstan history``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git
from click.testing import CliRunner
from gitops_testdata import NAMESPACE, commit_files, configmap

from reconciler.api import Api
from reconciler.cli import cli
from reconciler.controllers.node import UNREACHABLE_TAINT
from reconciler.source.git import GitSource
from reconciler.source.watch import BranchWatch
from reconciler.sync import (
    HistoryLimits,
    SyncLoop,
    SyncOptions,
    SyncRecord,
    list_sync_records,
    read_sync_state,
    record_sync,
)
from reconciler.sync.loop import QUIET_NOTE_RESYNCS
from reconciler.sync.records import STATE_NAME, SYSTEM_NAMESPACE, prune_sync_records
from schemas import ConfigMap, Node

NODE = """\
apiVersion: v1
kind: Node
metadata:
  name: far-away
spec:
  address: 127.0.0.9
"""


def _loop(api: Api, upstream: git.Repo, cache_dir: Path) -> SyncLoop:
    source = GitSource(upstream.working_tree_dir or "", cache_dir=cache_dir)
    # resync_s=0: every step is a resync once the head is applied.
    return SyncLoop(
        api, source, watch=BranchWatch(source, watch_local=False), options=SyncOptions(resync_s=0.0)
    )


def _clocked_loop(
    api: Api, upstream: git.Repo, cache_dir: Path, *, resync_s: float
) -> tuple[SyncLoop, list[float]]:
    """A loop on a clock the test moves: ``now[0]`` is its time."""
    now = [0.0]
    source = GitSource(upstream.working_tree_dir or "", cache_dir=cache_dir)
    loop = SyncLoop(
        api,
        source,
        watch=BranchWatch(source, watch_local=False),
        options=SyncOptions(resync_s=resync_s),
        clock=lambda: now[0],
    )
    return loop, now


def _history(api_url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["history", "--store", api_url, *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_resyncs_with_a_node_away_add_no_records_and_repairs_fold(
    upstream: git.Repo, cache_dir: Path, api: Api, tmp_path: Path
) -> None:
    head = commit_files(
        upstream,
        {"ns.yaml": NAMESPACE, "node.yaml": NODE, "a.yaml": configmap("a", "v1")},
        message="v1",
    )
    loop = _loop(api, upstream, cache_dir)
    first = loop.step()
    assert first is not None
    assert first.record is not None

    # The node is partitioned away: the node controller taints it unreachable. The resync
    # must leave the controller's taint alone (not fight it), and record nothing.
    node = api.get(Node, "far-away")
    api.update(
        node.model_copy(
            update={"spec": node.spec.model_copy(update={"taints": [UNREACHABLE_TAINT]})}
        )
    )
    for _ in range(5):
        result = loop.step()
        assert result is not None
        assert not result.changed
    assert api.get(Node, "far-away").spec.taints == [UNREACHABLE_TAINT]
    assert [r.trigger for r in list_sync_records(api)] == ["commit"]
    state = read_sync_state(api)
    assert (state.last_resync_commit, state.quiet_resyncs) == (head, 5)

    # Something keeps undoing Git: each resync repairs the same drift; one record says so.
    for _ in range(3):
        live = api.get(ConfigMap, "a", namespace="shop")
        api.update(live.model_copy(update={"data": {"key": "edited-by-hand"}}))
        result = loop.step()
        assert result is not None
        assert result.changed
    records = list_sync_records(api)
    assert [(r.trigger, r.repeats) for r in records] == [("resync", 3), ("commit", 1)]
    assert records[0].changes[0].object == "ConfigMap/shop/a"
    assert read_sync_state(api).quiet_resyncs == 0
    loop.step()  # quiet again

    url = f"sqlite://{tmp_path}/state.db"
    table = _history(url)
    assert "resync x3" in table
    assert table.count("\n") == 4  # header, two records, the last-resync line
    assert f"of {head[:12]}: nothing to change (1 in a row)" in table
    listed = json.loads(_history(url, "-o", "json"))
    assert [r["repeats"] for r in listed] == [3, 1]


def _record(n: int, at: datetime) -> SyncRecord:
    return SyncRecord(
        id=0,
        commit=f"{n:040x}",
        author="a <a@x>",
        message=f"m{n}",
        commit_time=at,
        started_at=at,
        finished_at=at,
        outcome="Succeeded",
        trigger="commit",
    )


def test_history_is_bounded_by_count_and_age(api: Api) -> None:
    limits = HistoryLimits(keep=20, max_age=timedelta(days=30), min_keep=3)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(25):
        record_sync(api, _record(n, start + timedelta(hours=n)), limits=limits)
    assert [r.message for r in list_sync_records(api)][-1] == "m5"  # the newest 20
    assert len(list_sync_records(api)) == 20

    # Two months on with nothing new: all but the newest min_keep age out.
    later = start + timedelta(days=60)
    assert prune_sync_records(api, limits=limits, now=later) == 17
    assert [r.message for r in list_sync_records(api)] == ["m24", "m23", "m22"]
    # A new record prunes by age as well, keeping the newest min_keep.
    record_sync(api, _record(99, later), limits=limits)
    assert [r.message for r in list_sync_records(api)] == ["m99", "m24", "m23"]
    assert HistoryLimits().keep == 100


def test_the_loop_prunes_aged_records_even_when_it_records_nothing(
    upstream: git.Repo, cache_dir: Path, api: Api
) -> None:
    commit_files(upstream, {"ns.yaml": NAMESPACE, "a.yaml": configmap("a", "v1")})
    loop, now = _clocked_loop(api, upstream, cache_dir, resync_s=0.0)
    assert loop.step() is not None  # the commit's record
    old = datetime(2025, 1, 1, tzinfo=UTC)
    for n in range(12):  # a year old, e.g. from before a long quiet spell
        record_sync(api, _record(n, old + timedelta(hours=n)))
    assert len(list_sync_records(api)) == 13
    now[0] += 3601.0  # an hour on: a quiet resync prunes
    result = loop.step()
    assert result is not None
    assert result.record is None
    records = list_sync_records(api)
    assert len(records) == 11  # the newest 10, and the commit's (younger than 30 days)
    assert records[-1].trigger == "commit"


def test_quiet_resyncs_are_noted_in_groups_and_a_repair_at_once(
    upstream: git.Repo, cache_dir: Path, api: Api
) -> None:
    head = commit_files(upstream, {"ns.yaml": NAMESPACE, "a.yaml": configmap("a", "v1")})
    loop, now = _clocked_loop(api, upstream, cache_dir, resync_s=5.0)
    assert loop.step() is not None  # the commit

    def state_version() -> str | None:
        stored = api.get(ConfigMap, STATE_NAME, namespace=SYSTEM_NAMESPACE)
        return stored.metadata.resource_version

    def resync() -> None:
        now[0] += 5.0
        assert loop.step() is not None

    resync()  # the first quiet resync is written at once
    assert read_sync_state(api).quiet_resyncs == 1
    written = state_version()
    for _ in range(QUIET_NOTE_RESYNCS - 1):  # the next ones are kept back...
        resync()
        assert state_version() == written
    resync()  # ...until a note is QUIET_NOTE_RESYNCS periods old: then all of them at once
    state = read_sync_state(api)
    assert (state.quiet_resyncs, state.last_resync_commit) == (QUIET_NOTE_RESYNCS + 1, head)
    assert state_version() != written

    # A repair is written at once, and resets the count.
    resync()
    live = api.get(ConfigMap, "a", namespace="shop")
    api.update(live.model_copy(update={"data": {"key": "edited-by-hand"}}))
    written = state_version()
    resync()
    assert read_sync_state(api).quiet_resyncs == 0
    assert state_version() != written

    # Quiet resyncs kept back are written when the loop stops.
    resync()
    resync()
    assert read_sync_state(api).quiet_resyncs == 0
    loop.stop()
    assert read_sync_state(api).quiet_resyncs == 2
