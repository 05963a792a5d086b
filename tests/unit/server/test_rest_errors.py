"""Every error shape the REST API returns is a Kubernetes Status with the right code/reason."""

from __future__ import annotations

from reconciler.api.server import Limits
from tests.unit.server.conftest import assert_status, configmap

CM = "/api/v1/namespaces/shop/configmaps"


def test_crud_round_trip_and_kubernetes_shapes(admin):
    created = admin.post(CM, json=configmap("a", app="web"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["metadata"]["resourceVersion"].isdigit()
    assert body["metadata"]["uid"]
    got = admin.get(f"{CM}/a").json()
    assert got == body
    listed = admin.get(CM).json()
    assert listed["kind"] == "ConfigMapList"
    assert listed["apiVersion"] == "v1"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    assert int(listed["metadata"]["resourceVersion"]) >= int(body["metadata"]["resourceVersion"])
    body["data"] = {"k": "changed"}
    updated = admin.put(f"{CM}/a", json=body)
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"] == {"k": "changed"}
    patched = admin.patch(
        f"{CM}/a",
        json={"data": {"extra": "1"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"] == {"k": "changed", "extra": "1"}
    deleted = admin.delete(f"{CM}/a")
    assert deleted.status_code == 200
    assert deleted.json()["metadata"]["name"] == "a"
    assert admin.get(CM).json()["items"] == []


def test_not_found(admin):
    body = assert_status(admin.get(f"{CM}/missing"), 404, "NotFound")
    assert body["details"] == {"name": "missing", "kind": "configmaps"}
    assert_status(admin.get("/api/v1/namespaces/shop/widgets"), 404, "NotFound")
    assert_status(admin.get("/no/such/path"), 404, "NotFound")
    assert_status(admin.get("/api/v1/namespaces/Bad_NS/configmaps/x"), 404, "NotFound")


def test_conflict_on_stale_resource_version(admin):
    first = admin.post(CM, json=configmap("a")).json()
    fresh = dict(first, data={"k": "1"})
    assert admin.put(f"{CM}/a", json=fresh).status_code == 200
    stale = dict(first, data={"k": "2"})
    body = assert_status(admin.put(f"{CM}/a", json=stale), 409, "Conflict")
    assert "stale" in body["message"]
    assert_status(admin.post(CM, json=configmap("a")), 409, "AlreadyExists")
    precondition = {"preconditions": {"resourceVersion": first["metadata"]["resourceVersion"]}}
    assert_status(admin.request("DELETE", f"{CM}/a", json=precondition), 409, "Conflict")


def test_invalid_lists_every_cause(admin):
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"containers": [{"name": "c"}], "restartPolicy": "Sometimes"},
    }
    body = assert_status(admin.post("/api/v1/namespaces/shop/pods", json=bad), 422, "Invalid")
    fields = {c["field"]: c for c in body["details"]["causes"]}
    assert "spec.containers[0].image" in fields
    assert fields["spec.containers[0].image"]["reason"] == "FieldValueRequired"
    assert "spec.restartPolicy" in fields
    for cause in body["details"]["causes"]:
        assert set(cause) == {"field", "reason", "message"}
    hostile = configmap("h")
    hostile["metadata"]["finalizers"] = 5
    assert_status(admin.post(CM, json=hostile), 422, "Invalid")
    assert_status(admin.post(CM, json={"metadata": ["not", "a", "map"]}), 422, "Invalid")


def test_bad_requests_are_400_never_500(admin):
    assert_status(
        admin.post(CM, content=b"{not json", headers={"Content-Type": "application/json"}),
        400,
        "BadRequest",
    )
    assert_status(admin.post(CM, json=[1, 2]), 400, "BadRequest")
    assert_status(admin.post(CM, json=dict(configmap("x"), kind="Secret")), 400, "BadRequest")
    assert_status(admin.post(CM, json=configmap("x", namespace="default")), 400, "BadRequest")
    assert_status(admin.put(f"{CM}/y", json=configmap("x")), 400, "BadRequest")
    assert_status(admin.get(CM, params={"labelSelector": "a in (b"}), 400, "BadRequest")
    assert_status(admin.get(CM, params={"labelSelector": "Bad Key!=x"}), 400, "BadRequest")
    assert_status(admin.get(CM, params={"watch": "maybe"}), 400, "BadRequest")
    assert_status(admin.get(CM, params={"fieldSelector": "data.x=y"}), 400, "BadRequest")
    assert_status(
        admin.get(CM, params={"watch": "true", "resourceVersion": "-1"}), 400, "BadRequest"
    )
    deep = b"[" * 100_000 + b"]" * 100_000
    assert_status(
        admin.post(CM, content=deep, headers={"Content-Type": "application/json"}),
        400,
        "BadRequest",
    )
    assert_status(
        admin.post(CM, content=b"\xff\xfe", headers={"Content-Type": "application/json"}),
        400,
        "BadRequest",
    )
    assert_status(
        admin.put(
            f"{CM}/x",
            json=dict(
                configmap("x"),
                metadata={"name": "x", "namespace": "shop", "resourceVersion": "9" * 40},
            ),
        ),
        422,
        "Invalid",
    )


def test_method_and_media_type(admin):
    assert_status(admin.post(f"{CM}/a", json=configmap("a")), 405, "MethodNotAllowed")
    assert_status(admin.delete(CM), 405, "MethodNotAllowed")
    assert_status(admin.post("/api/v1/pods", json={}), 405, "MethodNotAllowed")
    assert_status(
        admin.post(CM, content=b"a: b", headers={"Content-Type": "application/yaml"}),
        415,
        "UnsupportedMediaType",
    )


def test_request_size_limit(make_client):
    client = make_client(limits=Limits(max_body_bytes=1024))
    big = configmap("big")
    big["data"] = {"k": "x" * 4096}
    assert_status(client.post(CM, json=big), 413, "RequestEntityTooLarge")


def test_overload_is_429_with_retry_after(make_client):
    client = make_client(limits=Limits(max_in_flight=0, retry_after_s=3))
    response = client.get(CM)
    assert_status(response, 429, "TooManyRequests")
    assert response.headers["retry-after"] == "3"


def test_label_selectors(admin):
    for name, labels in (("a", {"app": "web", "tier": "1"}), ("b", {"app": "db"}), ("c", {})):
        assert admin.post(CM, json=configmap(name, **labels)).status_code == 201

    def names(selector: str) -> list[str]:
        response = admin.get(CM, params={"labelSelector": selector})
        assert response.status_code == 200, response.text
        return [i["metadata"]["name"] for i in response.json()["items"]]

    assert names("app=web") == ["a"]
    assert names("app==web") == ["a"]
    assert names("app!=web") == ["b", "c"]
    assert names("app in (web,db)") == ["a", "b"]
    assert names("app notin (web)") == ["b", "c"]
    assert names("tier") == ["a"]
    assert names("!app") == ["c"]
    assert names("app=web,tier=1") == ["a"]
    all_ns = admin.get("/api/v1/configmaps", params={"labelSelector": "app"}).json()
    assert [i["metadata"]["name"] for i in all_ns["items"]] == ["a", "b"]


def test_status_subresource(admin):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    created = admin.post("/api/v1/namespaces/shop/pods", json=pod).json()
    created["status"] = {"phase": "Running"}
    created["spec"]["containers"][0]["image"] = "ignored-by-status-put"
    updated = admin.put("/api/v1/namespaces/shop/pods/p/status", json=created)
    assert updated.status_code == 200, updated.text
    assert updated.json()["status"]["phase"] == "Running"
    assert updated.json()["spec"]["containers"][0]["image"] == "busybox"
    got = admin.get("/api/v1/namespaces/shop/pods/p/status").json()
    assert got["status"]["phase"] == "Running"
    assert_status(admin.get(f"{CM}/x/status"), 404, "NotFound")


def test_cluster_scoped_and_namespaces(admin):
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1"},
        "spec": {"address": "10.0.0.1"},
    }
    assert admin.post("/api/v1/nodes", json=node).status_code == 201
    assert admin.get("/api/v1/nodes/n1").json()["metadata"]["name"] == "n1"
    assert_status(admin.get("/api/v1/namespaces/shop/nodes/n1"), 404, "NotFound")
    names = [i["metadata"]["name"] for i in admin.get("/api/v1/namespaces").json()["items"]]
    assert "shop" in names
    assert "default" in names
    assert admin.get("/api/v1/namespaces/shop").json()["kind"] == "Namespace"
    assert_status(admin.delete("/api/v1/namespaces/default"), 403, "Forbidden")


def test_events_are_listed_read_only(admin, api):
    from schemas import ConfigMap

    obj = api.create(ConfigMap(metadata={"name": "e", "namespace": "shop"}))
    api.record_event(obj, reason="Tested", message="hello")
    listed = admin.get("/api/v1/namespaces/shop/events").json()
    assert listed["kind"] == "EventList"
    event = listed["items"][0]
    assert event["kind"] == "Event"
    assert event["reason"] == "Tested"
    assert event["involvedObject"]["name"] == "e"
    assert (
        admin.get(f"/api/v1/namespaces/shop/events/{event['metadata']['name']}").status_code == 200
    )
    assert_status(admin.post("/api/v1/namespaces/shop/events", json={}), 405, "MethodNotAllowed")


def test_health_openapi_and_metrics(admin, make_client):
    anonymous = make_client(token=None)
    assert anonymous.get("/healthz").text == "ok"
    assert anonymous.get("/readyz").text == "ok"
    document = anonymous.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert "/api/v1/namespaces/{namespace}/pods/{name}/status" in document["paths"]
    assert "/apis/rbac.authorization.k8s.io/v1/clusterroles" in document["paths"]
    # /openapi/v3 is Kubernetes' index of per-group-version documents (for kubectl).
    index = anonymous.get("/openapi/v3").json()["paths"]
    rbac = anonymous.get(index["apis/rbac.authorization.k8s.io/v1"]["serverRelativeURL"]).json()
    assert "/apis/rbac.authorization.k8s.io/v1/clusterroles" in rbac["paths"]
    assert "/api/v1/namespaces/{namespace}/pods" not in rbac["paths"]
    assert anonymous.get("/openapi/v3/apis/nope/v1").status_code == 404
    assert_status(anonymous.get("/metrics"), 401, "Unauthorized")
    admin.get(CM)
    text = admin.get("/metrics").text
    assert "# TYPE capstan_http_requests_total counter" in text
    assert 'capstan_http_requests_total{verb="list",resource="configmaps",code="200"}' in text
    assert "capstan_store_revision " in text
    assert "capstan_http_request_duration_seconds_bucket" in text


def test_capstan_routes_and_hooks(make_client):
    from reconciler.api.server import ServerHooks

    plain = make_client()
    assert plain.get("/capstan/v1/syncs").json()["items"] == []
    assert_status(plain.get("/capstan/v1/plan"), 503, "ServiceUnavailable")
    assert_status(plain.post("/hooks/git", json={}), 404, "NotFound")
    seen: list[tuple[dict, bytes]] = []

    def webhook(headers, body):
        seen.append((dict(headers), body))
        return headers.get("x-gitlab-token") == "s3cret"

    hooked = make_client(
        hooks=ServerHooks(
            on_git_webhook=webhook,
            syncs=lambda: [{"commit": "abc", "result": "applied"}],
            plan=lambda ref: {"ref": ref, "changes": []},
        )
    )
    assert hooked.get("/capstan/v1/syncs").json()["items"] == [
        {"commit": "abc", "result": "applied"}
    ]
    assert hooked.get("/capstan/v1/plan", params={"ref": "main"}).json() == {
        "ref": "main",
        "changes": [],
    }
    accepted = hooked.post("/hooks/git", json={"ref": "x"}, headers={"X-Gitlab-Token": "s3cret"})
    assert accepted.status_code == 202
    assert seen[-1][1] == b'{"ref":"x"}' or seen[-1][1] == b'{"ref": "x"}'
    assert_status(
        hooked.post("/hooks/git", json={}, headers={"X-Gitlab-Token": "no"}), 401, "Unauthorized"
    )


def test_discovery(admin, make_client):
    assert admin.get("/api").json()["versions"] == ["v1"]
    groups = {g["name"] for g in admin.get("/apis").json()["groups"]}
    assert groups == {
        "apps",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "networking.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "scheduling.k8s.io",
    }
    core = admin.get("/api/v1").json()
    assert core["kind"] == "APIResourceList"
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["pods"]["namespaced"] is True
    assert by_name["nodes"]["namespaced"] is False
    assert by_name["pods/status"]["verbs"] == ["get", "update"]
    assert by_name["events"]["verbs"] == ["get", "list"]
    apps = admin.get("/apis/apps/v1").json()
    assert {r["name"] for r in apps["resources"]} >= {"deployments", "replicasets"}
    assert_status(admin.get("/apis/apps/v2"), 404, "NotFound")
    assert_status(make_client(token=None).get("/api/v1"), 401, "Unauthorized")
