"""``SelfSubjectRulesReview`` (``kubectl auth can-i --list``) and impersonation (``--as``,
``--as-group``) through the server, with RBAC objects in the real store."""

from __future__ import annotations

from reconciler.api.server._protobuf import decode_object
from schemas import (
    ClusterRole,
    ClusterRoleBinding,
    ObjectMeta,
    PolicyRule,
    Role,
    RoleBinding,
    RoleRef,
    Subject,
)
from tests.fixtures.waiting import wait_until
from tests.unit.server.conftest import assert_status

RULES = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
ACCESS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def rules(client, namespace: str, **headers: str) -> dict:
    response = client.post(
        RULES,
        json={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": namespace},
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "SelfSubjectRulesReview"
    return body["status"]


def bind_config_reader(api) -> None:
    api.create(
        Role(
            metadata=ObjectMeta(name="config-reader", namespace="shop"),
            rules=[
                PolicyRule(
                    verbs=["get", "list"],
                    api_groups=[""],
                    resources=["configmaps"],
                    resource_names=["settings"],
                )
            ],
        )
    )
    api.create(
        RoleBinding(
            metadata=ObjectMeta(name="ci-reads", namespace="shop"),
            subjects=[Subject(kind="ServiceAccount", name="ci", namespace="shop")],
            role_ref=RoleRef(kind="Role", name="config-reader"),
        )
    )


def test_rules_review_lists_the_callers_rules_in_the_namespace(admin, make_client, sa_token, api):
    everything = rules(admin, "shop")
    assert {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]} in everything["resourceRules"]
    assert {"verbs": ["*"], "nonResourceURLs": ["*"]} in everything["nonResourceRules"]
    account = make_client(sa_token("shop", "ci"))
    before = rules(account, "shop")
    assert all(r["apiGroups"] == ["authorization.k8s.io"] for r in before["resourceRules"])
    bind_config_reader(api)
    expected = {
        "verbs": ["get", "list"],
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["settings"],
    }
    assert wait_until(lambda: expected in rules(account, "shop")["resourceRules"])
    assert expected not in rules(account, "default")["resourceRules"]
    assert before["incomplete"] is False


def test_rules_review_decodes_kubectls_protobuf_body():
    # kubectl's body for `auth can-i --list -n shop` (k8s\0 envelope, typeMeta, raw object).
    raw = b"\x0a\x00\x12\x06\x0a\x04shop"
    type_meta = b"\x0a\x17authorization.k8s.io/v1\x12\x16SelfSubjectRulesReview"
    envelope = b"\x0a" + bytes([len(type_meta)]) + type_meta + b"\x12" + bytes([len(raw)]) + raw
    document = decode_object(b"k8s\x00" + envelope)
    assert document["kind"] == "SelfSubjectRulesReview"
    assert document["spec"] == {"namespace": "shop"}


def test_impersonation_needs_the_impersonate_verb(admin, make_client, sa_token, api):
    bind_config_reader(api)
    account = make_client(sa_token("shop", "ci"))
    # The admin (system:masters) may act as anyone; the answer is then the other user's.
    as_ci = rules(admin, "shop", **{"Impersonate-User": "system:serviceaccount:shop:ci"})
    assert any(r["resources"] == ["configmaps"] for r in as_ci["resourceRules"])
    review = admin.post(
        ACCESS,
        json={"spec": {"resourceAttributes": {"verb": "delete", "resource": "pods"}}},
        headers={"Impersonate-User": "alice"},
    )
    assert review.json()["status"]["allowed"] is False
    assert (
        admin.get(
            "/api/v1/namespaces/shop/configmaps", headers={"Impersonate-User": "alice"}
        ).status_code
        == 403
    )
    # A service account without the verb may not, whoever it names.
    refused = account.get(
        "/api/v1/namespaces/shop/pods", headers={"Impersonate-User": "capstan:admin"}
    )
    body = assert_status(refused, 403, "Forbidden")
    assert 'cannot impersonate resource "users"' in body["message"]
    grouped = account.get(
        "/api/v1/pods",
        headers={"Impersonate-User": "x", "Impersonate-Group": "system:masters"},
    )
    assert grouped.status_code == 403
    assert_status(admin.get("/api/v1/pods", headers={"Impersonate-Group": "g"}), 400, "BadRequest")
    # Granted the verb on one user, the account acts as that user and only that user.
    api.create(
        ClusterRole(
            metadata=ObjectMeta(name="become-bob"),
            rules=[
                PolicyRule(
                    verbs=["impersonate"],
                    api_groups=[""],
                    resources=["users"],
                    resource_names=["bob"],
                )
            ],
        )
    )
    api.create(
        ClusterRoleBinding(
            metadata=ObjectMeta(name="ci-becomes-bob"),
            subjects=[Subject(kind="ServiceAccount", name="ci", namespace="shop")],
            role_ref=RoleRef(kind="ClusterRole", name="become-bob"),
        )
    )
    api.create(
        ClusterRoleBinding(
            metadata=ObjectMeta(name="bob-views"),
            subjects=[Subject(kind="User", name="bob")],
            role_ref=RoleRef(kind="ClusterRole", name="view"),
        )
    )
    as_bob = {"Impersonate-User": "bob"}
    assert wait_until(
        lambda: account.get("/api/v1/namespaces/shop/pods", headers=as_bob).status_code == 200
    )
    assert account.get("/api/v1/namespaces/shop/secrets", headers=as_bob).status_code == 403
    assert account.get("/api/v1/pods", headers={"Impersonate-User": "carol"}).status_code == 403
