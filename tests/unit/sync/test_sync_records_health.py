"""Sync records and switches through the API; per-object sync and health."""

from __future__ import annotations

from datetime import UTC, datetime

from sync_testdata import RepoWriter, app_files

from reconciler.api import Api
from reconciler.sync import (
    SyncRecord,
    app_health,
    list_managed,
    list_sync_records,
    object_health,
    read_sync_state,
    record_sync,
    set_suspended,
    sync_commit,
    update_sync_state,
)
from reconciler.sync.records import note_resync
from schemas import Condition, ConfigMap, Deployment, DeploymentStatus, Pod, PodStatus

_T = datetime(2026, 1, 1, tzinfo=UTC)


def _record(n: int) -> SyncRecord:
    return SyncRecord(
        id=0,
        commit=f"{n:040x}",
        author="a <a@x>",
        message=f"m{n}",
        commit_time=_T,
        started_at=_T,
        finished_at=_T,
        outcome="Succeeded",
        trigger="commit",
    )


def test_records_keep_the_last_n_newest_first(api: Api) -> None:
    for n in range(1, 6):
        stored = record_sync(api, _record(n), keep=3)
        assert stored.id == n
    records = list_sync_records(api)
    assert [r.message for r in records] == ["m5", "m4", "m3"]
    assert [r.id for r in list_sync_records(api, limit=2)] == [5, 4]
    # Records are not managed objects: a sync never prunes them.
    assert not any(o.kind == "ConfigMap" for o in list_managed(api))


def test_quiet_resyncs_count_those_of_one_commit_in_a_row(api: Api) -> None:
    first, second = "a" * 40, "b" * 40
    for _ in range(3):
        note_resync(api, commit=first, at=_T, changed=False)
    assert read_sync_state(api).quiet_resyncs == 3
    # A new commit's first quiet resync is the first in a row, not the fourth.
    state = note_resync(api, commit=second, at=_T, changed=False)
    assert (state.last_resync_commit, state.quiet_resyncs) == (second, 1)
    assert note_resync(api, commit=second, at=_T, changed=True).quiet_resyncs == 0
    assert note_resync(api, commit=second, at=_T, changed=False).quiet_resyncs == 1


def test_suspend_resume_and_pointers(api: Api) -> None:
    assert read_sync_state(api).suspended is False
    assert set_suspended(api, True).suspended
    update_sync_state(api, seen_commit="a" * 40, live_commit="b" * 40)
    state = read_sync_state(api)
    assert state.suspended
    assert state.seen_commit == "a" * 40
    assert state.live_commit == "b" * 40
    assert not set_suspended(api, False).suspended
    assert read_sync_state(api).live_commit == "b" * 40


def test_object_health_of_deployments_and_pods() -> None:
    def deployment(status: DeploymentStatus | None, generation: int = 1) -> Deployment:
        return Deployment.model_validate(
            {
                "metadata": {"name": "d", "namespace": "default", "generation": generation},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"a": "b"}},
                    "template": {
                        "metadata": {"labels": {"a": "b"}},
                        "spec": {"containers": [{"name": "c", "image": "i"}]},
                    },
                },
            }
        ).model_copy(update={"status": status})

    assert object_health(deployment(None))[0] == "Progressing"
    ready = DeploymentStatus(
        observed_generation=1,
        replicas=2,
        updated_replicas=2,
        ready_replicas=2,
        available_replicas=2,
    )
    assert object_health(deployment(ready))[0] == "Healthy"
    assert object_health(deployment(ready, generation=2))[0] == "Progressing"
    rolling = ready.model_copy(update={"updated_replicas": 1, "replicas": 3})
    assert object_health(deployment(rolling)) == ("Progressing", "1/2 replicas updated")
    stuck = rolling.model_copy(
        update={
            "conditions": [
                Condition(type="Progressing", status="False", reason="ProgressDeadlineExceeded")
            ]
        }
    )
    assert object_health(deployment(stuck))[0] == "Degraded"

    pod = Pod.model_validate(
        {
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        }
    )
    assert object_health(pod)[0] == "Progressing"
    running = PodStatus.model_validate(
        {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    )
    assert object_health(pod.model_copy(update={"status": running}))[0] == "Healthy"
    crashing = PodStatus.model_validate(
        {
            "phase": "Running",
            "containerStatuses": [
                {"name": "c", "image": "i", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ],
        }
    )
    assert object_health(pod.model_copy(update={"status": crashing})) == (
        "Degraded",
        "c: CrashLoopBackOff",
    )
    failed = PodStatus.model_validate({"phase": "Failed", "message": "exit 1"})
    assert object_health(pod.model_copy(update={"status": failed}))[0] == "Degraded"


def test_app_health_synced_out_of_sync_and_missing(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load(app_files())
    objects = [loaded.obj for loaded in repo.objects]
    assert {s.health for s in app_health(api, objects)} == {"Missing"}
    sync_commit(api, repo, commit=commit)
    statuses = {str(s.key): s for s in app_health(api, objects)}
    assert all(s.sync == "Synced" for s in statuses.values())
    assert statuses["Deployment/shop/web"].health == "Progressing"
    assert statuses["ConfigMap/shop/settings"].health == "Healthy"
    live = api.get(ConfigMap, "settings", namespace="shop")
    api.update(live.model_copy(update={"data": {"mode": "drifted"}}))
    drifted = {str(s.key): s for s in app_health(api, objects)}["ConfigMap/shop/settings"]
    assert drifted.sync == "OutOfSync"
    assert [c.path for c in drifted.diff] == ["data.mode"]
