"""sync_commit reading the live side from a cache (the resync's informer caches): a copy
older than the store never makes a wrong write, and what the cache holds is what is read."""

from __future__ import annotations

from sync_testdata import CONFIGMAP, RepoWriter, app_files

from reconciler.api import Api
from reconciler.diff import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from reconciler.sync import list_managed, sync_commit
from schemas import ConfigMap, KubeObject, ObjectMeta, OwnerReference, Service


def _snapshot(api: Api) -> dict[type[KubeObject], list[KubeObject]]:
    """Every ConfigMap and Service as the API has them now: a cache that will go stale."""
    return {kind: list(api.list(kind).items) for kind in (ConfigMap, Service)}


def test_managed_objects_of_cached_kinds_come_from_the_cache(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load(app_files())
    sync_commit(api, repo, commit=commit)
    managed = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    only_cached = ConfigMap(
        metadata=ObjectMeta(name="only-cached", namespace="shop", labels=managed)
    )
    owned = ConfigMap(
        metadata=ObjectMeta(
            name="owned",
            namespace="shop",
            labels=managed,
            owner_references=[
                OwnerReference(
                    api_version="v1", kind="Service", name="web", uid="u1", controller=True
                )
            ],
        )
    )
    unmanaged = ConfigMap(metadata=ObjectMeta(name="plain", namespace="shop"))
    cache = {ConfigMap: [only_cached, owned, unmanaged]}
    keys = {str(o.key) for o in list_managed(api, cached=cache.get)}
    # ConfigMaps as the cache has them (managed, not owned by a controller); the other
    # kinds from the store.
    assert "ConfigMap/shop/only-cached" in keys
    assert "ConfigMap/shop/settings" not in keys
    assert not {"ConfigMap/shop/owned", "ConfigMap/shop/plain"} & keys
    assert {"Service/shop/web", "Deployment/shop/web", "Namespace/shop"} <= keys


def test_a_stale_cache_costs_no_write(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load(app_files())
    sync_commit(api, repo, commit=commit)
    live = api.get(ConfigMap, "settings", namespace="shop")
    drifted = api.update(live.model_copy(update={"data": {"mode": "hacked"}}))
    stale = _snapshot(api)  # sees the drift and the Service
    # Meanwhile the drift was undone and the Service deleted by someone else.
    api.update(drifted.model_copy(update={"data": {"mode": "fast"}}))
    files = app_files()
    del files["service.yaml"]
    smaller, commit2 = repos.load(files)
    api.delete(Service, "web", namespace="shop")
    result = sync_commit(api, smaller, commit=commit2, trigger="resync", cached=stale.get)
    # Planned from the cache (an update, a delete); each re-read the store and had nothing
    # left to do.
    assert {c.action for c in result.plan.changes} == {"update", "delete"}
    assert result.succeeded
    assert result.applied == ()
    assert api.get(ConfigMap, "settings", namespace="shop").data == {"mode": "fast"}


def test_drift_the_cache_shows_is_repaired(api: Api, repos: RepoWriter) -> None:
    repo, commit = repos.load({"settings.yaml": CONFIGMAP, **app_files()})
    sync_commit(api, repo, commit=commit)
    live = api.get(ConfigMap, "settings", namespace="shop")
    api.update(live.model_copy(update={"data": {"mode": "hacked"}}))
    result = sync_commit(api, repo, commit=commit, trigger="resync", cached=_snapshot(api).get)
    assert [c.describe() for c in result.applied] == ["update ConfigMap/shop/settings"]
    assert api.get(ConfigMap, "settings", namespace="shop").data == {"mode": "fast"}
