"""The Git-is-truth override (``X-Capstan-Override: drift`` / ``?force=true``) is a permission
of its own, the ``override`` verb on the resource, and every use of it is recorded."""

from __future__ import annotations

import logging

from reconciler.api.server import DRIFT_ANNOTATION, OVERRIDE_HEADER
from reconciler.client._client import OVERRIDE_HEADER as CLIENT_OVERRIDE_HEADER
from reconciler.diff import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from schemas import ConfigMap, ObjectMeta, PolicyRule, Role, RoleBinding, RoleRef, Subject
from tests.unit.server.conftest import assert_status, configmap

CM = "/api/v1/namespaces/shop/configmaps"
SA_USER = "system:serviceaccount:shop:ci"
DRIFT = {OVERRIDE_HEADER: "drift"}


def grant(api, name: str, verbs: list[str]) -> None:
    api.create(
        Role(
            metadata=ObjectMeta(name=name, namespace="shop"),
            rules=[PolicyRule(verbs=verbs, api_groups=[""], resources=["configmaps"])],
        )
    )
    api.create(
        RoleBinding(
            metadata=ObjectMeta(name=name, namespace="shop"),
            subjects=[Subject(kind="ServiceAccount", name="ci", namespace="shop")],
            role_ref=RoleRef(kind="Role", name=name),
        )
    )


def test_one_header_name_for_client_and_server():
    assert OVERRIDE_HEADER == CLIENT_OVERRIDE_HEADER == "X-Capstan-Override"


def test_the_write_verb_alone_does_not_override_git(make_client, sa_token, api, admin):
    grant(api, "editor", ["get", "update", "patch", "delete"])
    ci = make_client(token=sa_token("shop", "ci"))
    obj = admin.post(CM, json=configmap("from-git", **{MANAGED_BY_LABEL: MANAGED_BY_VALUE})).json()
    edited = dict(obj, data={"k": "hand-edit"})
    body = assert_status(ci.put(f"{CM}/from-git", json=edited, headers=DRIFT), 403, "Forbidden")
    assert body["message"] == (
        f'User "{SA_USER}" cannot override resource "configmaps" in API group "" in the '
        'namespace "shop": update of an object that comes from Git with \'X-Capstan-Override: '
        'drift\' (or ?force=true) needs the "override" verb on configmaps, which an admin '
        "grants in a Role or ClusterRole"
    )
    assert body["details"] == {"name": "from-git", "kind": "configmaps"}
    assert_status(
        ci.patch(f"{CM}/from-git", json={"data": {"x": "1"}}, params={"force": "true"}),
        403,
        "Forbidden",
    )
    assert_status(ci.delete(f"{CM}/from-git", headers=DRIFT), 403, "Forbidden")
    stored = api.get(ConfigMap, "from-git", namespace="shop")
    assert stored.data == {"k": "v"}
    assert DRIFT_ANNOTATION not in stored.metadata.annotations
    assert api.list_events(namespace="shop") == []
    # Objects not from Git need no override, so no override permission either.
    mine = admin.post(CM, json=configmap("by-hand")).json()
    assert (
        ci.put(f"{CM}/by-hand", json=dict(mine, data={"k": "2"}), headers=DRIFT).status_code == 200
    )


def test_with_the_override_verb_the_use_is_recorded(make_client, sa_token, api, admin, caplog):
    grant(api, "editor", ["get", "update", "patch", "delete"])
    grant(api, "breakglass", ["override"])
    ci = make_client(token=sa_token("shop", "ci"))
    obj = admin.post(CM, json=configmap("from-git", **{MANAGED_BY_LABEL: MANAGED_BY_VALUE})).json()
    with caplog.at_level(logging.WARNING, logger="reconciler.api.server"):
        updated = ci.put(f"{CM}/from-git", json=dict(obj, data={"k": "hand-edit"}), headers=DRIFT)
    assert updated.status_code == 200, updated.text
    note = updated.json()["metadata"]["annotations"][DRIFT_ANNOTATION]
    assert note.startswith(f"update by {SA_USER} at ")
    assert f"override: update ConfigMap shop/from-git by {SA_USER}" in caplog.text
    patched = ci.patch(f"{CM}/from-git", json={"data": {"k": "p"}}, params={"force": "true"})
    assert patched.status_code == 200, patched.text
    assert ci.delete(f"{CM}/from-git", headers=DRIFT).status_code == 200
    events = [e for e in api.list_events(namespace="shop") if e.involved_object.name == "from-git"]
    assert sorted(e.message.split(" ", 1)[0] for e in events) == ["delete", "patch", "update"]
    for event in events:
        assert event.reason == "OverrideDrift"
        assert event.type == "Warning"
        assert f'by user "{SA_USER}" with X-Capstan-Override: drift' in event.message
