"""What kubectl and the official clients need from the HTTP server, through the real app:
aggregated discovery, /version, content negotiation, Table responses, protobuf bodies.
(The same against the real kubectl binary: tests/e2e/test_kubectl.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler.api.server._protobuf import decode_object
from reconciler.api.server._status import HttpError
from reconciler.api.server._table import table
from reconciler.cli import cli
from reconciler.client import ClientConfig, write_config
from reconciler.columns import human_duration
from schemas import ObjectMeta, PolicyRule, Role, RoleBinding, RoleRef, Subject
from tests.fixtures.waiting import wait_until

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def test_version_is_public_and_kubernetes_shaped(make_client):
    body = make_client(token=None).get("/version").json()
    assert body["major"] == "1"
    assert body["gitVersion"].startswith(f"v1.{body['minor']}.0+capstan.")


def test_aggregated_discovery_when_asked_legacy_otherwise(admin):
    response = admin.get("/apis", headers={"Accept": f"{AGGREGATED},application/json"})
    assert response.headers["content-type"] == AGGREGATED
    groups = {item["metadata"]["name"]: item for item in response.json()["items"]}
    deployments = next(
        r for r in groups["apps"]["versions"][0]["resources"] if r["resource"] == "deployments"
    )
    assert deployments["shortNames"] == ["deploy"]
    assert deployments["categories"] == ["all"]
    assert deployments["scope"] == "Namespaced"
    assert deployments["singularResource"] == "deployment"
    assert deployments["subresources"][0]["subresource"] == "status"
    core = admin.get("/api", headers={"Accept": AGGREGATED}).json()
    pods = next(r for r in core["items"][0]["versions"][0]["resources"] if r["resource"] == "pods")
    assert pods["shortNames"] == ["po"]
    assert admin.get("/apis").json()["kind"] == "APIGroupList"
    legacy = {r["name"]: r for r in admin.get("/api/v1").json()["resources"]}
    assert legacy["configmaps"]["shortNames"] == ["cm"]
    assert legacy["nodes"]["singularName"] == "node"


def test_negotiation(admin):
    listed = admin.get(
        "/api/v1/namespaces",
        headers={"Accept": "application/vnd.kubernetes.protobuf,application/json"},
    )
    assert listed.json()["kind"] == "NamespaceList"
    refused = admin.get(
        "/api/v1/namespaces", headers={"Accept": "application/vnd.kubernetes.protobuf"}
    )
    assert refused.status_code == 406
    assert refused.json()["reason"] == "NotAcceptable"
    tabled = admin.get("/api/v1/namespaces", headers={"Accept": f"{TABLE},application/json"})
    assert tabled.headers["content-type"] == TABLE
    document = tabled.json()
    assert document["kind"] == "Table"
    assert [c["name"] for c in document["columnDefinitions"]] == ["Name", "Status", "Age"]
    shop = next(r for r in document["rows"] if r["cells"][0] == "shop")
    assert shop["cells"][1] == "Active"
    assert shop["object"]["kind"] == "PartialObjectMetadata"
    one = admin.get(
        "/api/v1/namespaces/shop", headers={"Accept": TABLE}, params={"includeObject": "Object"}
    ).json()
    assert one["rows"][0]["object"]["kind"] == "Namespace"
    bad = admin.get(
        "/api/v1/namespaces", headers={"Accept": TABLE}, params={"includeObject": "Everything"}
    )
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60 * 20, "3h20m"),
        (30 * 3600, "30h"),
        (50 * 3600, "2d2h"),
        (10 * 86400, "10d"),
        (3 * 365 * 86400, "3y"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration_matches_kubernetes(seconds, text):
    assert human_duration(seconds) == text


def test_pod_row_shows_waiting_reason_restarts_and_terminating():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    created = (now - timedelta(minutes=5)).isoformat()
    pod = {
        "metadata": {"name": "web-1", "creationTimestamp": created},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.7",
            "containerStatuses": [
                {"name": "a", "ready": True, "restartCount": 0, "state": {"running": {}}},
                {
                    "name": "b",
                    "ready": False,
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {
                            "exitCode": 1,
                            "finishedAt": (now - timedelta(seconds=40)).isoformat(),
                        }
                    },
                },
            ],
        },
    }
    row = table([pod], kind="Pod", now=now, include="None")["rows"][0]
    assert row["cells"] == [
        "web-1",
        "1/2",
        "CrashLoopBackOff",
        "3 (40s ago)",
        "5m",
        "10.0.0.7",
        "n1",
        "<none>",
        "<none>",
    ]
    assert "object" not in row
    deleting = {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": created}}
    assert table([deleting], kind="Pod", now=now, include=None)["rows"][0]["cells"][2] == (
        "Terminating"
    )


# -- protobuf request bodies ---------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return b"k8s\x00" + _field(1, type_meta) + _field(2, raw)


def test_protobuf_configmap_and_zero_rules():
    metadata = _field(1, b"settings") + _field(2, b"")  # generateName "" means absent
    entry = _field(1, b"mode") + _field(2, b"fast")
    body = _envelope("v1", "ConfigMap", _field(1, metadata) + _field(2, entry))
    assert decode_object(body) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"mode": "fast"},
    }


def test_protobuf_pointer_zero_and_negative_numbers_survive():
    # DeploymentSpec.replicas is a pointer: 0 is kept.
    spec = _field(1, 0)
    document = decode_object(_envelope("apps/v1", "Deployment", _field(2, spec)))
    assert document["spec"] == {"replicas": 0}
    security = _field(4, -1) + _field(2, 0)  # runAsUser -1, privileged false (pointers)
    container = _field(1, b"c") + _field(15, security)
    pod_spec = _field(2, container)
    pod = decode_object(_envelope("v1", "Pod", _field(2, pod_spec)))
    assert pod["spec"]["containers"][0]["securityContext"] == {"runAsUser": -1, "privileged": False}


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"{}", 400, "k8s\\0"),
        (_envelope("batch/v1", "Job", b""), 415, "batch/v1/Job"),
        (_envelope("v1", "ConfigMap", _field(99, b"x")), 400, "field 99 of ConfigMap"),
        (_envelope("v1", "ConfigMap", b"\x0a\xff"), 400, "malformed"),
    ],
)
def test_protobuf_bad_bodies_are_clear_errors(body, code, words):
    with pytest.raises(HttpError) as caught:
        decode_object(body)
    assert caught.value.code == code
    assert words in caught.value.message


def test_protobuf_create_through_the_server(admin, api):
    metadata = _field(1, b"from-proto")
    entry = _field(1, b"k") + _field(2, b"v")
    body = _envelope("v1", "ConfigMap", _field(1, metadata) + _field(2, entry))
    created = admin.post(
        "/api/v1/namespaces/shop/configmaps",
        content=body,
        headers={
            "Content-Type": "application/vnd.kubernetes.protobuf",
            "Accept": "application/vnd.kubernetes.protobuf,application/json",
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["data"] == {"k": "v"}


# -- capstan kubeconfig --------------------------------------------------------------------


def test_kubeconfig_command_inlines_ca_and_token(tmp_path: Path):
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n")
    token = tmp_path / "admin-token"
    token.write_text("s3cret\n")
    write_config(
        tmp_path / "config",
        ClientConfig(server="https://127.0.0.1:6443", token_file=token, ca_file=ca),
    )
    result = CliRunner().invoke(cli, ["kubeconfig", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(result.output)
    assert document["apiVersion"] == "v1"
    assert document["kind"] == "Config"
    cluster = document["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert cluster["certificate-authority-data"] == (
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmFiYwotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg=="
    )
    assert document["users"][0]["user"] == {"token": "s3cret"}
    assert document["contexts"][0]["context"] == {
        "cluster": "capstan",
        "user": "capstan",
        "namespace": "default",
    }


def test_kubeconfig_command_without_a_server_says_how(tmp_path: Path):
    result = CliRunner().invoke(cli, ["kubeconfig", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "--listen" in result.output


# -- field selectors -----------------------------------------------------------------------


def test_field_selector_on_list_and_watch(admin, api):
    for name in ("a", "b"):
        assert (
            admin.post(
                "/api/v1/namespaces/shop/configmaps", json={"metadata": {"name": name}}
            ).status_code
            == 201
        )
    listed = admin.get(
        "/api/v1/namespaces/shop/configmaps", params={"fieldSelector": "metadata.name=b"}
    ).json()
    assert [i["metadata"]["name"] for i in listed["items"]] == ["b"]
    others = admin.get(
        "/api/v1/configmaps", params={"fieldSelector": "metadata.name!=b,metadata.namespace=shop"}
    )
    assert "b" not in [i["metadata"]["name"] for i in others.json()["items"]]
    assert "a" in [i["metadata"]["name"] for i in others.json()["items"]]
    with admin.stream(
        "GET",
        "/api/v1/namespaces/shop/configmaps",
        params={"watch": "true", "fieldSelector": "metadata.name=a", "timeoutSeconds": "1"},
    ) as s:
        names = [json.loads(line)["object"]["metadata"]["name"] for line in s.iter_lines() if line]
    assert names == ["a"]
    refused = admin.get("/api/v1/pods", params={"fieldSelector": "spec.containers=x"})
    assert refused.status_code == 400
    assert "field label not supported: spec.containers" in refused.json()["message"]
    assert (
        admin.get(
            "/api/v1/pods", params={"fieldSelector": "spec.nodeName=n1,status.phase!=Succeeded"}
        ).status_code
        == 200
    )


# -- SelfSubjectAccessReview ---------------------------------------------------------------

REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def _review(client, **attributes):
    kind = "nonResourceAttributes" if "path" in attributes else "resourceAttributes"
    response = client.post(
        REVIEWS,
        json={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {kind: attributes},
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["status"]["allowed"]


def test_self_subject_access_review(admin, make_client, sa_token, api):
    assert _review(admin, verb="delete", resource="pods", namespace="shop") is True
    account = make_client(sa_token("shop", "ci"))
    assert _review(account, verb="list", resource="pods", namespace="shop") is False
    assert _review(account, verb="get", path="/metrics") is False
    api.create(
        Role(
            metadata=ObjectMeta(name="pod-reader", namespace="shop"),
            rules=[PolicyRule(verbs=["get"], api_groups=[""], resources=["pods", "pods/status"])],
        )
    )
    api.create(
        RoleBinding(
            metadata=ObjectMeta(name="ci-reads", namespace="shop"),
            subjects=[Subject(kind="ServiceAccount", name="ci", namespace="shop")],
            role_ref=RoleRef(kind="Role", name="pod-reader"),
        )
    )
    assert wait_until(
        lambda: _review(
            account, verb="get", resource="pods", namespace="shop", subresource="status"
        ),
        what="the binding to apply",
    )
    assert _review(account, verb="get", resource="pods", namespace="other") is False
    both = account.post(REVIEWS, json={"spec": {}})
    assert both.status_code == 422
    assert (
        account.post(
            REVIEWS,
            json={"spec": {"resourceAttributes": {"verb": "get"}}},
            headers={"Impersonate-User": "alice"},
        ).status_code
        == 403
    )
    assert "selfsubjectaccessreviews" in [
        r["name"] for r in admin.get("/apis/authorization.k8s.io/v1").json()["resources"]
    ]


# -- pagination ----------------------------------------------------------------------------


def test_limit_and_continue_page_one_snapshot(admin):
    base = "/api/v1/namespaces/shop/configmaps"
    for name in ("c1", "c2", "c3", "c4", "c5"):
        assert (
            admin.post(
                base,
                json={
                    "metadata": {
                        "name": name,
                        "labels": {"odd": str(name in ("c1", "c3", "c5")).lower()},
                    }
                },
            ).status_code
            == 201
        )
    first = admin.get(base, params={"limit": "2"}).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["c1", "c2"]
    assert first["metadata"]["remainingItemCount"] == 3
    admin.post(base, json={"metadata": {"name": "c6"}})  # after the snapshot: not listed
    admin.delete(f"{base}/c5")  # deleted after the snapshot: still listed
    names = []
    token = first["metadata"]["continue"]
    while token:
        page = admin.get(base, params={"limit": "2", "continue": token}).json()
        names += [i["metadata"]["name"] for i in page["items"]]
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        token = page["metadata"].get("continue")
    assert names == ["c3", "c4", "c5"]
    odd = admin.get(base, params={"limit": "1", "labelSelector": "odd=true"}).json()
    assert [i["metadata"]["name"] for i in odd["items"]] == ["c1"]
    assert odd["metadata"]["remainingItemCount"] == 1  # c3 (c5 is gone now)
    assert admin.get(base, params={"continue": "garbage"}).status_code == 400
    other = admin.get(
        "/api/v1/namespaces/shop/secrets", params={"continue": first["metadata"]["continue"]}
    )
    assert other.status_code == 400
    assert admin.get(base, params={"limit": "-1"}).status_code == 400
    whole = admin.get(base, params={"limit": "500"}).json()
    assert "continue" not in whole["metadata"]
