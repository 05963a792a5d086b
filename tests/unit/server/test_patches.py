"""PATCH bodies: strategic merge patch with Kubernetes' list merge keys and directives, JSON
patch (RFC 6902), merge patch; pure functions, then through the server."""

from __future__ import annotations

import pytest

from reconciler.api.server._patch import json_patch, parse_patch, strategic_merge
from reconciler.api.server._status import HttpError

POD_SPEC = "k8s.io.api.core.v1.PodSpec"
DEPLOYMENT = "k8s.io.api.apps.v1.Deployment"


def test_containers_merge_by_name_and_env_by_name():
    current = {
        "containers": [
            {"name": "web", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "side", "image": "s:1"},
        ]
    }
    patch = {"containers": [{"name": "web", "image": "a:2", "env": [{"name": "Y", "value": "2"}]}]}
    merged = strategic_merge(current, patch, POD_SPEC)
    assert merged["containers"] == [
        {
            "name": "web",
            "image": "a:2",
            "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
        },
        {"name": "side", "image": "s:1"},
    ]
    assert current["containers"][0]["image"] == "a:1"  # the input is not changed


def test_directives_delete_replace_retain_keys_and_primitive_lists():
    current = {
        "metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}},
        "spec": {
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {
                "spec": {
                    "containers": [{"name": "a"}, {"name": "b"}],
                    "volumes": [{"name": "v", "emptyDir": {}}],
                }
            },
        },
    }
    patch = {
        "metadata": {
            "finalizers": ["c"],
            "labels": {"x": None},
            "$deleteFromPrimitiveList/finalizers": ["a"],
        },
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "b"}],
                    "containers": [{"name": "a", "$patch": "delete"}],
                    "volumes": [
                        {
                            "name": "v",
                            "configMap": {"name": "c"},
                            "$retainKeys": ["configMap", "name"],
                        }
                    ],
                }
            },
        },
    }
    merged = strategic_merge(current, patch, DEPLOYMENT)
    assert merged["metadata"] == {"finalizers": ["b", "c"], "labels": {"y": "2"}}
    assert merged["spec"]["strategy"] == {"type": "Recreate"}
    assert merged["spec"]["template"]["spec"]["containers"] == [{"name": "b"}]
    assert merged["spec"]["template"]["spec"]["volumes"] == [
        {"name": "v", "configMap": {"name": "c"}}
    ]
    replaced = strategic_merge(
        current,
        {"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only"}]}}}},
        DEPLOYMENT,
    )
    assert replaced["spec"]["template"]["spec"]["containers"] == [{"name": "only"}]


def test_lists_without_a_strategy_are_replaced():
    current = {"command": ["a", "b"], "args": ["x"]}
    merged = strategic_merge(current, {"command": ["c"]}, "k8s.io.api.core.v1.Container")
    assert merged == {"command": ["c"], "args": ["x"]}


def test_a_merge_list_item_without_its_key_is_refused():
    with pytest.raises(HttpError) as caught:
        strategic_merge({}, {"containers": [{"image": "x"}]}, POD_SPEC)
    assert caught.value.code == 422
    assert "'name'" in caught.value.message


def test_json_patch_operations():
    current = {
        "metadata": {"name": "a", "labels": {"x/y": "1"}},
        "data": {"k": "v"},
        "items": [1, 2],
    }
    patched = json_patch(
        current,
        [
            {"op": "add", "path": "/data/n", "value": "new"},
            {"op": "replace", "path": "/data/k", "value": "w"},
            {"op": "remove", "path": "/metadata/labels/x~1y"},
            {"op": "add", "path": "/items/-", "value": 3},
            {"op": "add", "path": "/items/0", "value": 0},
            {"op": "copy", "from": "/data/k", "path": "/data/copied"},
            {"op": "move", "from": "/data/n", "path": "/data/moved"},
            {"op": "test", "path": "/metadata/name", "value": "a"},
        ],
    )
    assert patched == {
        "metadata": {"name": "a", "labels": {}},
        "items": [0, 1, 2, 3],
        "data": {"k": "w", "copied": "w", "moved": "new"},
    }
    assert current["data"] == {"k": "v"}


@pytest.mark.parametrize(
    "operations",
    [
        [{"op": "test", "path": "/metadata/name", "value": "b"}],
        [{"op": "remove", "path": "/nope"}],
        [{"op": "replace", "path": "/data/missing", "value": 1}],
        [{"op": "add", "path": "/items/9", "value": 1}],
        [{"op": "frobnicate", "path": "/"}],
        [{"op": "add", "path": "no-slash", "value": 1}],
    ],
)
def test_json_patch_failures_are_422(operations):
    with pytest.raises(HttpError) as caught:
        json_patch({"metadata": {"name": "a"}, "data": {}, "items": []}, operations)
    assert caught.value.code == 422


def test_parse_patch_checks_the_body_shape():
    with pytest.raises(HttpError):
        parse_patch("application/json-patch+json", b'{"op": "add"}')
    with pytest.raises(HttpError):
        parse_patch("application/strategic-merge-patch+json", b"[]")
    assert parse_patch(
        "application/merge-patch+json", b'{"metadata": {"resourceVersion": "5"}}'
    ).pinned


def test_strategic_merge_patch_through_the_server(admin, api):
    created = admin.post(
        "/api/v1/namespaces/shop/pods",
        json={
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": "a", "image": "busybox:1", "env": [{"name": "X", "value": "1"}]},
                    {"name": "b", "image": "busybox:1"},
                ]
            },
        },
    )
    assert created.status_code == 201, created.text
    patched = admin.patch(
        "/api/v1/namespaces/shop/pods/p",
        content=(b'{"spec":{"containers":[{"name":"a","env":[{"name":"Y","value":"2"}]}]}}'),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    containers = patched.json()["spec"]["containers"]
    assert [c["name"] for c in containers] == ["a", "b"]
    assert containers[0]["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
    json_patched = admin.patch(
        "/api/v1/namespaces/shop/pods/p",
        content=(b'[{"op":"add","path":"/metadata/labels","value":{"t":"1"}}]'),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert json_patched.json()["metadata"]["labels"] == {"t": "1"}


def test_scale_subresource(admin, api):
    base = "/apis/apps/v1/namespaces/shop/deployments"
    created = admin.post(
        base,
        json={
            "metadata": {"name": "d"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
                },
            },
        },
    )
    assert created.status_code == 201, created.text
    scale = admin.get(f"{base}/d/scale").json()
    assert scale["kind"] == "Scale"
    assert scale["spec"] == {"replicas": 1}
    assert scale["status"]["selector"] == "app=d"
    patched = admin.patch(
        f"{base}/d/scale",
        json={"spec": {"replicas": 3}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.json()["spec"] == {"replicas": 3}
    assert admin.get(f"{base}/d").json()["spec"]["replicas"] == 3
    stale = dict(scale, spec={"replicas": 5})
    assert admin.put(f"{base}/d/scale", json=stale).status_code == 409  # old resourceVersion
    fresh = admin.get(f"{base}/d/scale").json()
    put = admin.put(f"{base}/d/scale", json=dict(fresh, spec={"replicas": 0}))
    assert put.status_code == 200, put.text
    assert admin.get(f"{base}/d").json()["spec"]["replicas"] == 0
    assert admin.put(f"{base}/d/scale", json={"spec": {"replicas": -1}}).status_code == 422
    assert admin.put(f"{base}/d/scale", json={"metadata": {}}).status_code == 422
    assert admin.get("/api/v1/namespaces/shop/configmaps/x/scale").status_code == 404
    resources = {r["name"]: r for r in admin.get("/apis/apps/v1").json()["resources"]}
    assert resources["deployments/scale"]["kind"] == "Scale"
    assert resources["replicasets/scale"]["verbs"] == ["get", "patch", "update"]
