"""Api.update_document: the HTTP server's update path keeps every rule of Api.update."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from reconciler.api import Api, Conflict, Invalid, NotFound
from reconciler.store import Store
from schemas import ConfigMap, Deployment, ObjectMeta


def _doc(obj: ConfigMap | Deployment, **changes: Any) -> dict[str, Any]:
    # A freshly parsed body, as the REST handler has it.
    return json.loads(json.dumps({**obj.to_dict(), **changes}))


def test_returns_what_the_store_holds_and_its_revision(api: Api, store: Store) -> None:
    created = api.create(ConfigMap(metadata=ObjectMeta(name="cfg"), data={"k": "1"}))
    written = api.update_document(_doc(created, data={"k": "2"}))
    kv = store.get("/registry/configmaps/default/cfg")
    assert kv is not None
    assert written.value == kv.value
    assert written.revision == kv.mod_revision > int(created.metadata.resource_version or 0)
    assert json.loads(written.value)["data"] == {"k": "2"}
    assert "resourceVersion" not in json.loads(written.value)["metadata"]
    assert written.obj.metadata.generation == 2
    # A no-op writes nothing and reports the revision the object is still at.
    again = api.update_document(
        _doc(
            created,
            data={"k": "2"},
            metadata={**created.to_dict()["metadata"], "resourceVersion": str(written.revision)},
        )
    )
    assert again.revision == written.revision
    assert again.value == written.value
    assert int(api.current_revision()) == written.revision


def test_check_current_sees_the_stored_object_and_may_refuse_or_edit(api: Api) -> None:
    created = api.create(ConfigMap(metadata=ObjectMeta(name="cfg", labels={"team": "a"})))
    seen: list[Mapping[str, Any]] = []

    def refuse(current: Mapping[str, Any]) -> None:
        seen.append(current)
        raise PermissionError("managed elsewhere")

    with pytest.raises(PermissionError):
        api.update_document(_doc(created, data={"k": "x"}), check_current=refuse)
    assert seen[0]["metadata"]["labels"] == {"team": "a"}
    assert api.get(ConfigMap, "cfg").data == {}

    document = _doc(created, data={"k": "y"})

    def annotate(current: Mapping[str, Any]) -> None:
        document["metadata"]["annotations"] = {"note": "edited by the check"}

    written = api.update_document(document, check_current=annotate)
    assert json.loads(written.value)["metadata"]["annotations"] == {"note": "edited by the check"}


def test_refusals_keep_their_order(api: Api) -> None:
    created = api.create(ConfigMap(metadata=ObjectMeta(name="cfg")))
    calls: list[str] = []
    missing = _doc(created)
    missing["metadata"] = {"name": "nope", "namespace": "default"}
    # No resourceVersion is a 422 even when the object does not exist.
    with pytest.raises(Invalid):
        api.update_document(missing, check_current=lambda current: calls.append("x"))
    missing["metadata"]["resourceVersion"] = "1"
    with pytest.raises(NotFound):
        api.update_document(missing, check_current=lambda current: calls.append("x"))
    assert calls == []  # nothing to check when there is no object
    api.update(created.model_copy(update={"data": {"k": "2"}}))
    with pytest.raises(Conflict):
        api.update_document(
            _doc(created, data={"k": "3"}), check_current=lambda current: calls.append("checked")
        )
    # The check runs before the stale resourceVersion is refused (a Git-managed object
    # says so even to a stale writer).
    assert calls == ["checked"]


def test_immutable_fields_and_validation_still_apply(api: Api) -> None:
    deployment = api.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        }
    )
    assert isinstance(deployment, Deployment)
    moved = _doc(deployment)
    moved["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    moved["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(Invalid) as immutable:
        api.update_document(moved)
    assert immutable.value.causes[0].field == "spec.selector"
    broken = _doc(deployment)
    broken["spec"]["replicas"] = "many"
    with pytest.raises(Invalid) as invalid:
        api.update_document(broken)
    assert invalid.value.causes[0].field.startswith("spec.replicas")


def test_a_recent_copy_stands_in_for_the_read_only_when_it_is_current(
    api: Api, store: Store
) -> None:
    created = api.create(ConfigMap(metadata=ObjectMeta(name="cfg"), data={"k": "1"}))
    key = "/registry/configmaps/default/cfg"
    old = store.get(key)
    assert old is not None
    written = api.update_document(_doc(created, data={"k": "2"}), recent=old)
    assert json.loads(written.value)["data"] == {"k": "2"}
    assert store.get(key).mod_revision == written.revision
    # The copy is at the resourceVersion the writer sent, but the store moved on: the
    # compare-and-swap refuses it and the answer is the store's (a stale resourceVersion),
    # even for a body that would also be invalid.
    with pytest.raises(Conflict, match="stale"):
        api.update_document(_doc(created, data={"k": "3"}), recent=old)
    with pytest.raises(Conflict, match="stale"):
        api.update_document(_doc(created, data={"k": 3}), recent=old)
    # A no-op judged on a copy is only a no-op if the store agrees.
    with pytest.raises(Conflict, match="stale"):
        api.update_document(_doc(created, data={"k": "1"}), recent=old)
    # Deleted meanwhile: not found, as a store read says.
    fresh = store.get(key)
    assert fresh is not None
    api.delete(ConfigMap, "cfg")
    current = _doc(created, data={"k": "4"})
    current["metadata"]["resourceVersion"] = str(fresh.mod_revision)
    with pytest.raises(NotFound):
        api.update_document(current, recent=fresh)
    # A copy of another object, or at another revision, is ignored.
    other = api.create(ConfigMap(metadata=ObjectMeta(name="other"), data={"k": "1"}))
    other_kv = store.get("/registry/configmaps/default/other")
    again = api.create(ConfigMap(metadata=ObjectMeta(name="cfg"), data={"k": "1"}))
    written = api.update_document(_doc(again, data={"k": "5"}), recent=other_kv)
    assert json.loads(written.value)["data"] == {"k": "5"}
    assert other.metadata.resource_version is not None


def test_update_takes_a_mapping_with_a_numeric_resource_version(api: Api) -> None:
    created = api.create(ConfigMap(metadata=ObjectMeta(name="cfg"), data={"k": "1"}))
    document = _doc(created, data={"k": "2"})
    document["metadata"]["resourceVersion"] = int(created.metadata.resource_version or 0)
    updated = api.update(document)
    assert updated.data == {"k": "2"}
    assert int(updated.metadata.resource_version or 0) > int(created.metadata.resource_version or 0)
