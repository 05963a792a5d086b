"""sync_commit against a real API and store: create, idempotence, update, prune, refusals."""

from __future__ import annotations

from sync_testdata import CONFIGMAP, NAMESPACE, RepoWriter, app_files

from reconciler.api import Api
from reconciler.diff import COMMIT_ANNOTATION, MANAGED_BY_LABEL, SOURCE_ANNOTATION
from reconciler.sync import list_managed, list_sync_records, sync_commit
from schemas import ConfigMap, Deployment, DeploymentStatus, Namespace, Secret, Service

NAMESPACE_WITH_LABEL = NAMESPACE.replace(
    "  name: shop\n", "  name: shop\n  labels:\n    team: web\n"
)


def test_first_sync_creates_everything_marked_managed(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load(app_files())
    result = sync_commit(api, repo, commit=commit)
    assert result.succeeded
    assert result.changed
    assert [c.describe() for c in result.applied] == [
        "create Namespace/shop",
        "create Secret/shop/creds",
        "create ConfigMap/shop/settings",
        "create Service/shop/web",
        "create Deployment/shop/web",
    ]
    deployment = api.get(Deployment, "web", namespace="shop")
    assert deployment.metadata.labels[MANAGED_BY_LABEL] == "capstan"
    assert deployment.metadata.annotations[SOURCE_ANNOTATION] == "deployment.yaml:1:1"
    assert deployment.metadata.annotations[COMMIT_ANNOTATION] == commit.sha
    assert len(list_managed(api)) == 5
    record = list_sync_records(api)[0]
    assert record.commit == commit.sha
    assert record.outcome == "Succeeded"
    assert next(c.object for c in record.changes) == "Namespace/shop"


def test_second_sync_of_the_same_commit_changes_nothing(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load(app_files())
    sync_commit(api, repo, commit=commit)
    before = api.current_revision()
    again = sync_commit(api, repo, commit=commit)
    assert again.succeeded
    assert not again.changed
    assert again.plan.empty
    assert again.plan.unchanged == 5
    # Only the sync record was written.
    assert api.current_revision() == before + 1
    # A new commit with the same content changes nothing either (bookkeeping is ignored).
    same, commit2 = repos.load(app_files())
    assert sync_commit(api, same, commit=commit2).plan.empty


def test_one_changed_field_is_one_update_naming_that_field(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load(app_files())
    sync_commit(api, repo, commit=commit)
    changed, commit2 = repos.load(app_files(image="capstan.local/busybox:2"))
    result = sync_commit(api, changed, commit=commit2)
    assert [c.describe() for c in result.applied] == ["update Deployment/shop/web"]
    (field,) = result.applied[0].fields
    assert field.path == "spec.template.spec.containers[name=web].image"
    assert (field.before, field.after) == ("capstan.local/busybox:1", "capstan.local/busybox:2")
    live = api.get(Deployment, "web", namespace="shop")
    assert live.spec.template.spec.containers[0].image == "capstan.local/busybox:2"
    assert live.metadata.annotations[COMMIT_ANNOTATION] == commit2.sha
    assert live.metadata.generation == 2
    record = list_sync_records(api)[0]
    assert record.changes[0].fields == ["spec.template.spec.containers[name=web].image"]


def test_status_and_server_fields_never_count_as_changes(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load(app_files())
    sync_commit(api, repo, commit=commit)
    live = api.get(Deployment, "web", namespace="shop")
    api.update_status(
        live.model_copy(
            update={
                "status": DeploymentStatus(
                    observed_generation=1, replicas=2, ready_replicas=2, available_replicas=2
                )
            }
        )
    )
    service = api.get(Service, "web", namespace="shop")
    api.update(
        service.model_copy(
            update={"spec": service.spec.model_copy(update={"cluster_ip": "10.96.0.7"})}
        )
    )
    deployment = api.get(Deployment, "web", namespace="shop")
    meta = deployment.metadata.model_copy(
        update={
            "annotations": {
                **deployment.metadata.annotations,
                "deployment.kubernetes.io/revision": "3",
            }
        }
    )
    api.update(deployment.model_copy(update={"metadata": meta}))
    assert sync_commit(api, repo, commit=commit).plan.empty
    # An update for another reason keeps what the server and controllers set.
    changed, commit2 = repos.load(app_files(replicas=3))
    assert len(sync_commit(api, changed, commit=commit2).applied) == 1
    after = api.get(Deployment, "web", namespace="shop")
    assert after.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    assert after.status is not None
    assert after.status.ready_replicas == 2
    assert api.get(Service, "web", namespace="shop").spec.cluster_ip == "10.96.0.7"
    assert api.get(Namespace, "shop").metadata.finalizers  # the API's finalizer stays


def test_removed_manifest_is_pruned_unless_opted_out(api: Api, repos: RepoWriter) -> None:
    keep = CONFIGMAP.replace("name: settings", "name: keepme").replace(
        "  namespace: shop\n", '  namespace: shop\n  annotations:\n    capstan.io/prune: "false"\n'
    )
    repo, commit = repos.load({**app_files(), "keep.yaml": keep})
    sync_commit(api, repo, commit=commit)
    files = app_files()
    del files["service.yaml"]
    smaller, commit2 = repos.load(files)
    result = sync_commit(api, smaller, commit=commit2)
    assert [c.describe() for c in result.applied] == ["delete Service/shop/web"]
    assert [str(k) for k in result.plan.kept] == ["ConfigMap/shop/keepme"]
    assert {o.name for o in api.list(Service, namespace="shop").items} == set()
    assert api.get(ConfigMap, "keepme", namespace="shop").data == {"mode": "fast"}
    assert not sync_commit(api, smaller, commit=commit2, prune=False).changed


def test_prune_false_leaves_objects_that_left_git(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load(app_files())
    sync_commit(api, repo, commit=commit)
    files = app_files()
    del files["settings.yaml"]
    smaller, commit2 = repos.load(files)
    result = sync_commit(api, smaller, commit=commit2, prune=False)
    assert result.plan.empty
    assert api.get(ConfigMap, "settings", namespace="shop")


def test_deleting_every_managed_object_is_refused_unless_allowed(
    api: Api, repos: RepoWriter
) -> None:
    repo, commit = repos.load(app_files())
    sync_commit(api, repo, commit=commit)
    empty, commit2 = repos.load({"README.md": "nothing here\n"})
    refused = sync_commit(api, empty, commit=commit2)
    assert not refused.succeeded
    assert not refused.changed
    assert "every object" in refused.errors[0]
    assert len(list_managed(api)) == 5
    assert list_sync_records(api)[0].outcome == "Failed"
    allowed = sync_commit(api, empty, commit=commit2, allow_empty=True)
    assert allowed.succeeded
    assert allowed.plan.count("delete") == 5
    # Reverse apply order: the Deployment first, the Namespace last.
    assert allowed.applied[0].key.kind == "Deployment"
    assert allowed.applied[-1].key.kind == "Namespace"
    remaining = [o for o in list_managed(api) if o.metadata.deletion_timestamp is None]
    assert remaining == []


def test_dry_run_plans_and_writes_nothing(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load(app_files())
    before = api.current_revision()
    result = sync_commit(api, repo, commit=commit, dry_run=True)
    assert result.dry_run
    assert result.plan.count("create") == 5
    assert not result.applied
    assert api.current_revision() == before
    assert list_sync_records(api) == []


def test_secret_values_are_masked_in_diffs_and_records(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load(app_files(password="old-pass-1234"))
    first = sync_commit(api, repo, commit=commit)
    changed, commit2 = repos.load(app_files(password="new-pass-5678"))
    result = sync_commit(api, changed, commit=commit2)
    (change,) = result.applied
    assert change.key.kind == "Secret"
    (field,) = change.fields
    assert field.path == "stringData.password"
    assert (field.before, field.after) == ("***", "***")
    text = repr(result) + repr(first) + repr(list_sync_records(api))
    assert "old-pass-1234" not in text
    assert "new-pass-5678" not in text
    assert api.get(Secret, "creds", namespace="shop").string_data == {"password": "new-pass-5678"}


def test_api_side_edit_is_reverted_by_the_next_sync(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load(app_files())
    sync_commit(api, repo, commit=commit)
    live = api.get(ConfigMap, "settings", namespace="shop")
    api.update(live.model_copy(update={"data": {"mode": "hacked"}}))
    result = sync_commit(api, repo, commit=commit, trigger="resync")
    assert [c.describe() for c in result.applied] == ["update ConfigMap/shop/settings"]
    assert api.get(ConfigMap, "settings", namespace="shop").data == {"mode": "fast"}


def test_unmanaged_object_of_the_same_name_is_adopted(api: Api, repos: RepoWriter) -> None:
    api.create(
        ConfigMap.model_validate(
            {"metadata": {"name": "settings", "namespace": "default"}, "data": {"mode": "fast"}}
        )
    )
    repo, commit = repos.load(
        {"settings.yaml": CONFIGMAP.replace("namespace: shop", "namespace: default")}
    )
    result = sync_commit(api, repo, commit=commit)
    (change,) = result.applied
    assert change.action == "update"
    assert [f.path for f in change.fields] == ['metadata.labels["capstan.io/managed-by"]']


class RacingApi(Api):
    """A real API where someone else edits the object just before our first update."""

    raced = False

    def update(self, obj):  # type: ignore[no-untyped-def, override]
        if not self.raced and getattr(obj, "get", None) and obj["kind"] == "ConfigMap":
            self.raced = True
            live = self.get(ConfigMap, "settings", namespace="shop")
            super().update(live.model_copy(update={"data": {"mode": "other-writer"}}))
        return super().update(obj)


def test_conflicting_write_is_retried_on_a_fresh_read(tmp_path, repos: RepoWriter) -> None:
    from reconciler.api import ManualClock
    from reconciler.store import open_store

    with open_store(f"sqlite://{tmp_path}/race.db") as store:
        api = RacingApi(store, clock=ManualClock())
        repo, commit = repos.load(app_files())
        sync_commit(api, repo, commit=commit)
        changed_files = {**app_files(), "settings.yaml": CONFIGMAP.replace("fast", "slow")}
        changed, commit2 = repos.load(changed_files)
        result = sync_commit(api, changed, commit=commit2)
        assert api.raced
        assert result.succeeded
        assert api.get(ConfigMap, "settings", namespace="shop").data == {"mode": "slow"}


def test_namespace_update_keeps_the_api_finalizer(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load(app_files())
    sync_commit(api, repo, commit=commit)
    labelled = {**app_files(), "namespace.yaml": NAMESPACE_WITH_LABEL}
    changed, commit2 = repos.load(labelled)
    result = sync_commit(api, changed, commit=commit2)
    assert [c.describe() for c in result.applied] == ["update Namespace/shop"]
    namespace = api.get(Namespace, "shop")
    assert namespace.metadata.labels["team"] == "web"
    assert namespace.metadata.finalizers == ["capstan.io/namespace"]


def test_objects_owned_by_a_controller_are_never_pruned(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load(app_files())
    sync_commit(api, repo, commit=commit)
    owner = api.get(Deployment, "web", namespace="shop")
    # A controller-made object that copied the managed-by label from its owner.
    api.create(
        ConfigMap.model_validate(
            {
                "metadata": {
                    "name": "made-by-controller",
                    "namespace": "shop",
                    "labels": {MANAGED_BY_LABEL: "capstan"},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": "web",
                            "uid": owner.metadata.uid,
                            "controller": True,
                        }
                    ],
                },
            }
        )
    )
    result = sync_commit(api, repo, commit=commit)
    assert result.plan.empty
    assert api.get(ConfigMap, "made-by-controller", namespace="shop")
