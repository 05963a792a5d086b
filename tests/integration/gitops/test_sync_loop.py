"""SyncLoop end to end on real Git and a real store: commits, invalid commits, drift, suspend."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import git
from click.testing import CliRunner
from gitops_testdata import NAMESPACE, commit_files, configmap, manual_loop

from reconciler.api import Api, NotFound
from reconciler.cli import cli
from reconciler.controllers.runtime import InformerFactory
from reconciler.source.git import GitSource
from reconciler.source.watch import BranchWatch
from reconciler.sync import (
    SyncLoop,
    SyncOptions,
    SyncResult,
    list_sync_records,
    read_sync_state,
    set_suspended,
)
from schemas import ConfigMap, KubeObject, Namespace

BAD = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: broken
  namespace: shop
data:
  key: value
colour: blue
"""


def _value(api: Api, name: str) -> str | None:
    try:
        return api.get(ConfigMap, name, namespace="shop").data.get("key")
    except NotFound:
        return None


def _eventually(check: Callable[[], bool], *, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


class _StepCounter:
    """Counts the passes a running loop has finished (a spy on ``step``, which its thread
    calls), so a test waits for the loop's chances to act rather than for time."""

    def __init__(self, loop: SyncLoop) -> None:
        self.count = 0
        original = loop.step

        def step(*, timeout: float = 0.0) -> SyncResult | None:
            try:
                return original(timeout=timeout)
            finally:
                self.count += 1

        loop.step = step  # type: ignore[method-assign]


def test_each_new_head_is_applied_and_an_invalid_one_changes_nothing(
    upstream: git.Repo, cache_dir: Path, api: Api
) -> None:
    good = commit_files(
        upstream,
        {"ns.yaml": NAMESPACE, "a.yaml": configmap("a", "v1"), "b.yaml": configmap("b", "v1")},
        message="v1",
    )
    loop, watch = manual_loop(api, upstream, cache_dir)

    first = loop.step()
    assert first is not None
    assert first.succeeded
    assert first.plan.count("create") == 3
    assert loop.step() is None  # nothing new, no resync due
    state = read_sync_state(api)
    assert state.live_commit == good
    assert state.seen_commit == good

    bad = commit_files(
        upstream, {"a.yaml": configmap("a", "v2"), "bad.yaml": BAD}, message="broken"
    )
    watch.trigger()
    loop.step()
    record = list_sync_records(api)[0]
    assert record.commit == bad
    assert record.outcome == "Failed"
    assert any(e.startswith("bad.yaml:8") and "colour" in e for e in record.errors)
    assert _value(api, "a") == "v1"  # nothing of the bad commit was applied
    state = read_sync_state(api)
    assert (state.live_commit, state.last_attempt_commit, state.last_outcome) == (
        good,
        bad,
        "Failed",
    )
    assert loop.last_good is not None
    assert loop.last_good.sha == good

    fixed = commit_files(upstream, {"bad.yaml": None, "b.yaml": None}, message="fixed")
    watch.trigger()
    result = loop.step()
    assert result is not None
    assert result.succeeded
    assert sorted(c.describe() for c in result.applied) == [
        "delete ConfigMap/shop/b",
        "update ConfigMap/shop/a",
    ]
    assert _value(api, "a") == "v2"
    assert _value(api, "b") is None
    assert read_sync_state(api).live_commit == fixed
    assert [r.outcome for r in list_sync_records(api)] == ["Succeeded", "Failed", "Succeeded"]


def test_force_push_to_an_older_tree_is_applied(tmp_path: Path, cache_dir: Path, api: Api) -> None:
    from gitops_testdata import init_repo

    init_repo(tmp_path / "remote.git", bare=True).close()
    work = init_repo(tmp_path / "work")
    work.create_remote("origin", str(tmp_path / "remote.git"))
    base = commit_files(work, {"ns.yaml": NAMESPACE, "a.yaml": configmap("a", "v1")})
    commit_files(work, {"a.yaml": configmap("a", "v2")})
    work.git.push("origin", "main")
    source = GitSource(str(tmp_path / "remote.git"), cache_dir=cache_dir)
    watch = BranchWatch(source, poll_interval_s=3600, watch_local=False)
    loop = SyncLoop(api, source, watch=watch, options=SyncOptions(resync_s=3600))
    loop.step()
    assert _value(api, "a") == "v2"
    work.git.reset("--hard", base)
    rewritten = commit_files(work, {"a.yaml": configmap("a", "v3")}, message="rewritten")
    work.git.push("--force", "origin", "main")
    watch.trigger()
    loop.step()
    assert _value(api, "a") == "v3"
    assert read_sync_state(api).live_commit == rewritten
    work.close()


def test_running_loop_follows_commits_heals_drift_and_honours_suspend(
    upstream: git.Repo, cache_dir: Path, api: Api
) -> None:
    commit_files(upstream, {"ns.yaml": NAMESPACE, "a.yaml": configmap("a", "v1")})
    source = GitSource(upstream.working_tree_dir, cache_dir=cache_dir)
    loop = SyncLoop(api, source, options=SyncOptions(resync_s=0.5))
    steps = _StepCounter(loop)
    loop.start()
    try:
        assert _eventually(lambda: _value(api, "a") == "v1", within=10)

        commit_files(upstream, {"a.yaml": configmap("a", "v2")})
        assert _eventually(lambda: _value(api, "a") == "v2", within=10)

        live = api.get(ConfigMap, "a", namespace="shop")
        api.update(live.model_copy(update={"data": {"key": "edited-by-hand"}}))
        assert _eventually(lambda: _value(api, "a") == "v2", within=10)
        assert list_sync_records(api)[0].trigger == "resync"

        set_suspended(api, True)
        v3 = commit_files(upstream, {"a.yaml": configmap("a", "v3")})
        # Suspended still fetches: the loop sees v3 and records it as seen...
        assert _eventually(lambda: read_sync_state(api).seen_commit == v3, within=10)
        # ...and two whole passes after that (each would apply a new head) leave it unapplied.
        passes = steps.count
        assert _eventually(lambda: steps.count >= passes + 2, within=10)
        assert _value(api, "a") == "v2"
        set_suspended(api, False)
        assert _eventually(lambda: _value(api, "a") == "v3", within=10)
    finally:
        loop.stop()


def test_restart_on_an_invalid_head_keeps_healing_the_last_good_commit(
    upstream: git.Repo, cache_dir: Path, api: Api
) -> None:
    good = commit_files(upstream, {"ns.yaml": NAMESPACE, "a.yaml": configmap("a", "v1")})
    source = GitSource(upstream.working_tree_dir, cache_dir=cache_dir)
    first = SyncLoop(
        api,
        source,
        watch=BranchWatch(source, watch_local=False),
        options=SyncOptions(resync_s=3600),
    )
    first.step()
    commit_files(upstream, {"bad.yaml": BAD})
    live = api.get(ConfigMap, "a", namespace="shop")
    api.update(live.model_copy(update={"data": {"key": "drift"}}))

    restarted = SyncLoop(
        api,
        source,
        watch=BranchWatch(source, watch_local=False),
        options=SyncOptions(resync_s=3600),
    )
    restarted.step()
    assert restarted.last_good is not None
    assert restarted.last_good.sha == good
    assert restarted.live_repository is not None
    assert [o.obj.name for o in restarted.live_repository.objects] == ["shop", "a"]
    assert _value(api, "a") == "v1"


def test_a_namespace_used_but_not_defined_is_created_with_a_logged_warning(
    upstream: git.Repo, cache_dir: Path, api: Api, caplog
) -> None:
    commit_files(upstream, {"a.yaml": configmap("a", "v1")}, message="no Namespace manifest")
    source = GitSource(f"file://{upstream.working_tree_dir}", cache_dir=cache_dir)
    watch = BranchWatch(source, poll_interval_s=3600, watch_local=False)
    loop = SyncLoop(api, source, watch=watch, options=SyncOptions(resync_s=3600))
    with caplog.at_level("WARNING", logger="reconciler.sync.loop"):
        result = loop.step()
    assert result is not None
    assert result.succeeded
    assert _value(api, "a") == "v1"
    assert api.get(Namespace, "shop").name == "shop"
    warnings = [r.getMessage() for r in caplog.records if "namespace 'shop'" in r.getMessage()]
    assert len(warnings) == 1
    assert "add namespaces/shop.yaml" in warnings[0]


def _deployment(app: str) -> str:
    """A Deployment of no pods in the undefined namespace ``shop``; its selector is ``app``
    (immutable: a commit that changes it loads, and its sync fails on every pass)."""
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 0
  selector: {{matchLabels: {{app: {app}}}}}
  template:
    metadata: {{labels: {{app: {app}}}}}
    spec:
      containers: [{{name: web, image: busybox}}]
"""


def test_loader_warnings_are_said_once_per_commit(
    upstream: git.Repo, cache_dir: Path, api: Api, caplog
) -> None:
    """Passes over one commit say its warnings once (log, Event, status), also when its
    sync keeps failing and after a restart; a new commit that still has them says them
    again."""
    store = f"sqlite:///{Path(cache_dir).parent / 'state.db'}"
    first = commit_files(upstream, {"web.yaml": _deployment("a")}, message="no Namespace")
    loop, watch = manual_loop(api, upstream, cache_dir)

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if "namespace 'shop'" in r.getMessage()]

    def events() -> list[tuple[str, str, int]]:
        return sorted(
            (e.involved_object.kind, e.message.split(":", 1)[0], e.count)
            for e in api.list_events()
            if e.reason == "ManifestWarning"
        )

    with caplog.at_level("WARNING", logger="reconciler.sync.loop"):
        watch.trigger()
        result = loop.step()
        assert result is not None
        assert result.succeeded
        for _ in range(2):  # two resyncs of the same commit
            again = loop.converge(trigger="resync")
            assert again is not None
            assert again.succeeded
        assert len(said()) == 1
        assert said()[0].startswith(f"commit {first[:12]}: web.yaml:5:")

        # A new commit that still has the warning and whose sync fails on every pass.
        second = commit_files(upstream, {"web.yaml": _deployment("b")}, message="new selector")
        watch.trigger()
        failed = loop.step()
        assert failed is not None
        assert not failed.succeeded
        assert "immutable" in failed.errors[0]
        for _ in range(2):
            again = loop.converge(trigger="resync")
            assert again is not None
            assert not again.succeeded
        assert len(said()) == 2
        assert said()[1].startswith(f"commit {second[:12]}: web.yaml:5:")

        # A restarted loop (or a new leader) on the same head does not say them again.
        restarted, restarted_watch = manual_loop(api, upstream, cache_dir)
        restarted_watch.trigger()
        assert restarted.step() is not None
        assert len(said()) == 2

    assert events() == sorted(
        [("Namespace", f"commit {first[:12]}", 1), ("Namespace", f"commit {second[:12]}", 1)]
    )
    state = read_sync_state(api)
    assert state.warned_commit == second
    assert len(state.warnings) == 1
    assert "namespace 'shop' is not defined" in state.warnings[0]
    status = CliRunner().invoke(cli, ["status", "--store", store])
    assert status.exit_code == 0, status.output
    assert f"Warnings: commit {second[:12]}:\n  web.yaml:5:" in status.output
    assert status.output.count("namespace 'shop' is not defined") == 1


def test_resync_reads_the_informer_cache_and_a_new_head_the_store(
    upstream: git.Repo, cache_dir: Path, api: Api
) -> None:
    informers = InformerFactory(api)
    cms = informers.informer(ConfigMap)
    informers.start()
    asked: list[str] = []

    def cached(kind: type[KubeObject]) -> list[KubeObject] | None:
        asked.append(kind.__name__)
        return informers.cached(kind)

    commit_files(upstream, {"ns.yaml": NAMESPACE, "a.yaml": configmap("a", "v1")})
    source = GitSource(upstream.working_tree_dir or "", cache_dir=cache_dir)
    # resync_s=0: every step after the head is applied is a resync.
    loop = SyncLoop(
        api,
        source,
        watch=BranchWatch(source, watch_local=False),
        options=SyncOptions(resync_s=0.0),
        cached=cached,
    )
    try:
        assert informers.wait_synced(10)
        first = loop.step()
        assert first is not None
        assert first.changed
        assert asked == []  # a new head is compared with the store itself

        live = api.get(ConfigMap, "a", namespace="shop")
        edited = api.update(live.model_copy(update={"data": {"key": "edited-by-hand"}}))
        assert cms.wait_for_revision(int(edited.metadata.resource_version or 0), 10)
        repaired = loop.step()
        assert repaired is not None
        assert repaired.changed
        assert "ConfigMap" in asked
        assert [c.describe() for c in repaired.applied] == ["update ConfigMap/shop/a"]
        assert _value(api, "a") == "v1"
    finally:
        informers.stop()
