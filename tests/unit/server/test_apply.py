"""Server-side apply and managedFields: the FieldsV1 paths (pure), then through the server:
create on apply, a second apply that writes nothing, conflicts between managers and
``force``, fields a manager stops applying, ownership moved by ordinary writes, and the
Git-is-truth refusal."""

from __future__ import annotations

import json

import httpx
import pytest

from reconciler.api.server._apply import field_paths, fields_v1, path_string, paths_from_fields_v1
from tests.unit.server.conftest import assert_status

APPLY = {"Content-Type": "application/apply-patch+yaml"}
CM = "/api/v1/namespaces/shop/configmaps"
DEPLOYMENTS = "/apis/apps/v1/namespaces/shop/deployments"


def apply(client: httpx.Client, path: str, body: dict | str, manager: str | None, **query: str):
    params = dict(query)
    if manager is not None:
        params["fieldManager"] = manager
    content = body if isinstance(body, str) else json.dumps(body)
    return client.patch(path, content=content, headers=APPLY, params=params)


def cm(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def deployment(image: str, *, env: list[dict] | None = None) -> dict:
    container: dict = {"name": "web", "image": image}
    if env is not None:
        container["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "labels": {"app": "d"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [container]},
            },
        },
    }


def managers(obj: dict) -> dict[tuple[str, str], dict]:
    return {
        (entry["manager"], entry["operation"]): entry["fieldsV1"]
        for entry in obj["metadata"].get("managedFields", [])
    }


# -- FieldsV1 ------------------------------------------------------------------------------


def test_fields_v1_of_a_deployment_uses_kubernetes_path_elements():
    paths = field_paths(deployment("busybox:1", env=[{"name": "X", "value": "1"}]))
    tree = fields_v1(paths)
    assert tree == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},  # a LabelSelector is atomic, as in Kubernetes
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"web"}': {
                            ".": {},
                            "f:env": {
                                'k:{"name":"X"}': {".": {}, "f:name": {}, "f:value": {}},
                            },
                            "f:image": {},
                            "f:name": {},
                        }
                    }
                },
            },
        },
    }
    assert paths_from_fields_v1(tree) == set(paths)
    path = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"web"}', "f:image")
    assert path_string(path) == '.spec.template.spec.containers[name="web"].image'


def test_sets_of_scalars_are_owned_per_value_and_server_fields_by_nobody():
    paths = field_paths(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x", "uid": "u", "finalizers": ["a/b"], "resourceVersion": "3"},
            "data": {"k": "v"},
            "status": {"phase": "Active"},
        }
    )
    assert set(paths) == {("f:metadata", "f:finalizers", 'v:"a/b"'), ("f:data", "f:k")}


# -- through the server --------------------------------------------------------------------


def test_apply_creates_then_the_same_apply_writes_nothing(admin):
    created = apply(admin, f"{CM}/one", cm("one", a="1"), "alice")
    assert created.status_code == 201, created.text  # Created, as Kubernetes answers
    body = created.json()
    assert body["data"] == {"a": "1"}
    assert managers(body) == {("alice", "Apply"): {"f:data": {"f:a": {}}}}
    again = apply(admin, f"{CM}/one", cm("one", a="1"), "alice")
    assert again.status_code == 200, again.text
    assert again.json()["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]
    assert again.json()["metadata"]["managedFields"] == body["metadata"]["managedFields"]


def test_yaml_body_and_a_missing_field_manager(admin):
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  a: '1'\n"
    assert apply(admin, f"{CM}/y", text, "alice").json()["data"] == {"a": "1"}
    missing = apply(admin, f"{CM}/y", text, None)
    assert "fieldManager" in assert_status(missing, 422, "Invalid")["message"]
    wrong_kind = apply(admin, f"{CM}/y", {"apiVersion": "v1", "kind": "Secret"}, "alice")
    assert_status(wrong_kind, 400, "BadRequest")


def test_conflicting_managers_get_a_409_naming_fields_and_manager_then_force(admin):
    assert apply(admin, f"{CM}/two", cm("two", a="1", b="1"), "alice").status_code == 201
    # Same value: shared ownership, no conflict.
    shared = apply(admin, f"{CM}/two", cm("two", b="1"), "bob")
    assert shared.status_code == 200, shared.text
    conflict = apply(admin, f"{CM}/two", cm("two", a="2", b="2"), "bob")
    body = assert_status(conflict, 409, "Conflict")
    assert body["message"].startswith("Apply failed with 2 conflicts: ")
    assert body["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "field": ".data.a",
            "message": 'conflict with "alice" using v1',
        },
        {
            "reason": "FieldManagerConflict",
            "field": ".data.b",
            "message": 'conflict with "alice" using v1',
        },
    ]
    assert admin.get(f"{CM}/two").json()["data"] == {"a": "1", "b": "1"}  # nothing changed
    forced = apply(admin, f"{CM}/two", cm("two", a="2", b="2"), "bob", force="true")
    assert forced.status_code == 200, forced.text
    assert forced.json()["data"] == {"a": "2", "b": "2"}
    assert managers(forced.json()) == {("bob", "Apply"): {"f:data": {"f:a": {}, "f:b": {}}}}


def test_fields_a_manager_stops_applying_are_removed_unless_someone_else_owns_them(admin):
    apply(admin, f"{CM}/three", cm("three", a="1", b="1", c="1"), "alice")
    apply(admin, f"{CM}/three", cm("three", c="1"), "bob")
    after = apply(admin, f"{CM}/three", cm("three", a="1"), "alice")
    assert after.status_code == 200, after.text
    assert after.json()["data"] == {"a": "1", "c": "1"}  # b gone; c is also bob's


def test_list_items_merge_by_key_and_leave_with_their_manager(admin):
    first = apply(
        admin,
        f"{DEPLOYMENTS}/d",
        deployment("busybox:1", env=[{"name": "A", "value": "1"}]),
        "alice",
    )
    assert first.status_code == 201, first.text
    bob = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "web", "env": [{"name": "B", "value": "2"}]}]}
            }
        },
    }
    assert apply(admin, f"{DEPLOYMENTS}/d", bob, "bob").status_code == 200
    container = admin.get(f"{DEPLOYMENTS}/d").json()["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    again = apply(admin, f"{DEPLOYMENTS}/d", deployment("busybox:2"), "alice")
    assert again.status_code == 200, again.text
    container = again.json()["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "busybox:2"
    assert container["env"] == [{"name": "B", "value": "2"}]
    changed = apply(
        admin,
        f"{DEPLOYMENTS}/d",
        deployment("busybox:2", env=[{"name": "B", "value": "3"}]),
        "alice",
    )
    body = assert_status(changed, 409, "Conflict")
    assert body["details"]["causes"][0]["field"] == (
        '.spec.template.spec.containers[name="web"].env[name="B"].value'
    )


def test_ordinary_writes_take_over_the_fields_they_change(admin):
    created = admin.post(CM, json=cm("four", a="1"), headers={"User-Agent": "kubectl/v1.32.0"})
    assert created.status_code == 201, created.text
    assert managers(created.json()) == {("kubectl", "Update"): {"f:data": {"f:a": {}}}}
    conflict = apply(admin, f"{CM}/four", cm("four", a="2"), "alice")
    assert assert_status(conflict, 409, "Conflict")["details"]["causes"][0]["message"] == (
        'conflict with "kubectl" using v1'
    )
    apply(admin, f"{CM}/four", cm("four", a="1", b="1"), "alice")
    patched = admin.patch(
        f"{CM}/four",
        params={"fieldManager": "editor"},
        json={"data": {"b": "2"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert managers(patched.json()) == {
        ("kubectl", "Update"): {"f:data": {"f:a": {}}},
        ("alice", "Apply"): {"f:data": {"f:a": {}}},
        ("editor", "Update"): {"f:data": {"f:b": {}}},
    }
    # A PUT of what was read keeps the entries it was sent and moves what it changes.
    current = patched.json()
    current["data"]["a"] = "9"
    put = admin.put(f"{CM}/four", json=current, params={"fieldManager": "replacer"})
    assert put.status_code == 200, put.text
    assert managers(put.json())[("replacer", "Update")] == {"f:data": {"f:a": {}}}
    assert ("alice", "Apply") not in managers(put.json())


def test_apply_to_an_object_from_git_is_refused(admin, api):
    body = cm("from-git", a="1")
    body["metadata"]["labels"] = {"capstan.io/managed-by": "capstan"}
    body["metadata"]["namespace"] = "shop"
    api.create(body)
    refused = apply(admin, f"{CM}/from-git", cm("from-git", a="2"), "alice", force="true")
    assert "comes from Git" in assert_status(refused, 409, "Forbidden")["message"]
    overridden = admin.patch(
        f"{CM}/from-git",
        content=json.dumps(cm("from-git", a="2")),
        headers={**APPLY, "X-Capstan-Override": "drift"},
        params={"fieldManager": "alice", "force": "true"},
    )
    assert overridden.status_code == 200, overridden.text
    assert overridden.json()["data"] == {"a": "2"}
    assert "capstan.io/drift" in overridden.json()["metadata"]["annotations"]


@pytest.mark.parametrize("body", ["- a\n- b\n", "{not yaml", "apiVersion: v1\n"])
def test_bad_apply_bodies_change_nothing(admin, body):
    response = apply(admin, f"{CM}/bad", body, "alice")
    assert response.status_code in (400, 422), response.text
    assert admin.get(f"{CM}/bad").status_code == 404


def test_applying_a_kind_without_merge_keys_twice_keeps_its_generation(admin):
    path = "/apis/apps/v1/namespaces/shop/daemonsets/ds"
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "ds"},
        "spec": {
            "selector": {"matchLabels": {"app": "ds"}},
            "template": {
                "metadata": {"labels": {"app": "ds"}},
                "spec": {"containers": [{"name": "main", "image": "busybox:1"}]},
            },
        },
    }
    first = apply(admin, path, body, "alice").json()
    again = apply(admin, path, body, "alice").json()
    assert again["metadata"]["generation"] == first["metadata"]["generation"] == 1
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


# -- what a write that creates answers -----------------------------------------------------

SERVICES = "/api/v1/namespaces/shop/services"
ROLES = "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles"


def service(name: str, port: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"selector": {"app": name}, "ports": [{"port": port}]},
    }


def role(name: str, *verbs: str) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": "shop"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": list(verbs)}],
    }


def test_a_put_of_a_missing_service_or_role_creates_it_with_201(admin):
    """Services and RBAC objects allow create on update in Kubernetes (``kubectl replace``
    of a missing one works); the answer is 201, the next PUT an update (200)."""
    created = admin.put(f"{SERVICES}/svc", json=service("svc", 80), params={"fieldManager": "ci"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["spec"]["ports"][0]["port"] == 80
    assert [(e["manager"], e["operation"]) for e in body["metadata"]["managedFields"]] == [
        ("ci", "Update")
    ]
    body["spec"]["ports"][0]["port"] = 81
    updated = admin.put(f"{SERVICES}/svc", json=body)
    assert updated.status_code == 200, updated.text
    assert updated.json()["metadata"]["uid"] == body["metadata"]["uid"]
    assert updated.json()["spec"]["ports"][0]["port"] == 81
    made = admin.put(f"{ROLES}/reader", json=role("reader", "get"))
    assert made.status_code == 201, made.text
    assert admin.get(f"{ROLES}/reader").json()["rules"][0]["verbs"] == ["get"]


def test_a_put_of_a_missing_configmap_is_404_and_creates_nothing(admin):
    body = cm("nope", a="1")
    body["metadata"]["resourceVersion"] = "1"
    missing = admin.put(f"{CM}/nope", json=body)
    assert_status(missing, 404, "NotFound")
    assert admin.get(f"{CM}/nope").status_code == 404


def test_a_put_that_would_create_needs_the_create_verb(make_client, sa_token, admin):
    """As in Kubernetes, a PUT that creates is authorized as a create too."""
    grant = role("svc-updater", "get", "update")
    grant["rules"][0]["resources"] = ["services"]
    assert admin.post(ROLES, json=grant).status_code == 201
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "svc-updater", "namespace": "shop"},
        "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "shop"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "svc-updater"},
    }
    assert admin.post(ROLES.replace("roles", "rolebindings"), json=binding).status_code == 201
    ci = make_client(token=sa_token("shop", "ci"))
    refused = ci.put(f"{SERVICES}/svc", json=service("svc", 80))
    body = assert_status(refused, 403, "Forbidden")
    assert 'cannot create resource "services"' in body["message"], body["message"]
    assert admin.get(f"{SERVICES}/svc").status_code == 404
    # The same user updates a Service that exists.
    current = admin.post(SERVICES, json=service("svc", 80)).json()
    current["spec"]["ports"][0]["port"] = 81
    assert ci.put(f"{SERVICES}/svc", json=current).status_code == 200
