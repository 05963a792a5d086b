"""Bearer tokens, RBAC allow/deny per verb, and the Git-is-truth write guard over HTTP."""

from __future__ import annotations

import pytest

from reconciler.api.server import DRIFT_ANNOTATION
from reconciler.diff import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from schemas import ClusterRoleBinding, ObjectMeta, PolicyRule, Role, RoleBinding, RoleRef, Subject
from tests.unit.server.conftest import assert_status, configmap

CM = "/api/v1/namespaces/shop/configmaps"
SA_USER = "system:serviceaccount:shop:ci"


def bind(
    api,
    *,
    role: str,
    kind: str = "ClusterRole",
    namespace: str = "shop",
    subject: Subject | None = None,
    name: str = "b",
) -> None:
    subject = subject or Subject(kind="ServiceAccount", name="ci", namespace="shop")
    api.create(
        RoleBinding(
            metadata=ObjectMeta(name=name, namespace=namespace),
            subjects=[subject],
            role_ref=RoleRef(kind=kind, name=role),
        )
    )


def test_tokens(make_client, sa_token, api):
    assert_status(make_client(token=None).get(CM), 401, "Unauthorized")
    bad = make_client(token="abcdefgh.not-the-right-secret-at-all-0123456789")
    body = assert_status(bad.get(CM), 401, "Unauthorized")
    assert "not-the-right" not in body["message"]
    assert bad.get(CM).headers["www-authenticate"].startswith("Bearer")
    assert_status(make_client(token="x" * 5000).get(CM), 401, "Unauthorized")
    assert make_client().get(CM).status_code == 200
    token = sa_token("shop", "ci")
    service_account = make_client(token=token)
    denied = assert_status(service_account.get(CM), 403, "Forbidden")
    assert SA_USER in denied["message"]
    # Deleting the account kills the token.
    from schemas import ServiceAccount

    api.delete(ServiceAccount, "ci", namespace="shop")
    assert_status(service_account.get(CM), 401, "Unauthorized")


def test_denial_says_who_what_where_in_kubernetes_words(make_client, sa_token):
    client = make_client(token=sa_token("shop", "ci"))
    body = assert_status(client.delete(f"{CM}/a"), 403, "Forbidden")
    assert body["message"] == (
        f'User "{SA_USER}" cannot delete resource "configmaps" in API '
        'group "" in the namespace "shop"'
    )
    assert body["details"] == {"name": "a", "kind": "configmaps"}
    body = assert_status(client.get("/api/v1/nodes"), 403, "Forbidden")
    assert body["message"] == (
        f'User "{SA_USER}" cannot list resource "nodes" in API group "" at the cluster scope'
    )
    body = assert_status(client.get("/metrics"), 403, "Forbidden")
    assert body["message"] == f'User "{SA_USER}" cannot get path "/metrics"'


@pytest.mark.parametrize(
    ("verbs", "allowed"),
    [
        (["get"], {"get"}),
        (["list"], {"list"}),
        (["watch"], {"watch"}),
        (["create"], {"create"}),
        (["update"], {"update"}),
        (["patch"], {"patch"}),
        (["delete"], {"delete"}),
        (["*"], {"get", "list", "watch", "create", "update", "patch", "delete"}),
    ],
)
def test_rbac_per_verb(make_client, sa_token, api, admin, verbs, allowed):
    api.create(
        Role(
            metadata=ObjectMeta(name="r", namespace="shop"),
            rules=[PolicyRule(verbs=verbs, api_groups=[""], resources=["configmaps"])],
        )
    )
    bind(api, role="r", kind="Role")
    client = make_client(token=sa_token("shop", "ci"))
    obj = admin.post(CM, json=configmap("a")).json()
    requests = {
        "get": lambda: client.get(f"{CM}/a"),
        "list": lambda: client.get(CM),
        "watch": lambda: client.get(CM, params={"watch": "true", "timeoutSeconds": "0"}),
        "create": lambda: client.post(CM, json=configmap("new")),
        "update": lambda: client.put(f"{CM}/a", json=obj),
        "patch": lambda: client.patch(f"{CM}/a", json={"data": {"p": "1"}}),
        "delete": lambda: client.delete(f"{CM}/a"),
    }
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        response = requests[verb]()
        if verb in allowed:
            assert response.status_code < 300, (verb, response.text)
        else:
            body = assert_status(response, 403, "Forbidden")
            assert f"cannot {verb} resource" in body["message"]
    # A Role in "shop" grants nothing in another namespace.
    assert_status(client.get("/api/v1/namespaces/default/configmaps"), 403, "Forbidden")


def test_builtin_roles(make_client, sa_token, api, admin):
    client = make_client(token=sa_token("shop", "ci"))
    admin.post(CM, json=configmap("a"))
    bind(api, role="view", name="view")
    assert client.get(CM).status_code == 200
    assert client.get("/api/v1/namespaces/shop/pods").status_code == 200
    assert_status(client.get("/api/v1/namespaces/shop/secrets"), 403, "Forbidden")
    assert_status(client.post(CM, json=configmap("b")), 403, "Forbidden")
    assert_status(client.get("/api/v1/namespaces/default/configmaps"), 403, "Forbidden")
    bind(api, role="edit", name="edit")
    assert client.post(CM, json=configmap("b")).status_code == 201
    assert client.get("/api/v1/namespaces/shop/secrets").status_code == 200
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "x"},
        "rules": [],
    }
    roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles"
    assert_status(client.post(roles, json=role), 403, "Forbidden")
    bind(api, role="admin", name="admin")
    assert client.post(roles, json=role).status_code == 201
    assert_status(client.get("/api/v1/nodes"), 403, "Forbidden")
    api.create(
        ClusterRoleBinding(
            metadata=ObjectMeta(name="ci-cluster-admin"),
            subjects=[Subject(kind="ServiceAccount", name="ci", namespace="shop")],
            role_ref=RoleRef(kind="ClusterRole", name="cluster-admin"),
        )
    )
    assert client.get("/api/v1/nodes").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_subresources_resource_names_and_groups(make_client, sa_token, api, admin):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    created = admin.post("/api/v1/namespaces/shop/pods", json=pod).json()
    admin.post(CM, json=configmap("mine"))
    admin.post(CM, json=configmap("theirs"))
    api.create(
        Role(
            metadata=ObjectMeta(name="r", namespace="shop"),
            rules=[
                PolicyRule(verbs=["update"], api_groups=[""], resources=["pods/status"]),
                PolicyRule(
                    verbs=["get"],
                    api_groups=[""],
                    resources=["configmaps"],
                    resource_names=["mine"],
                ),
                PolicyRule(verbs=["list"], api_groups=["apps"], resources=["*"]),
            ],
        )
    )
    bind(api, role="r", kind="Role")
    client = make_client(token=sa_token("shop", "ci"))
    created["status"] = {"phase": "Running"}
    assert client.put("/api/v1/namespaces/shop/pods/p/status", json=created).status_code == 200
    body = assert_status(
        client.put("/api/v1/namespaces/shop/pods/p", json=created), 403, "Forbidden"
    )
    assert 'cannot update resource "pods" in API group ""' in body["message"]
    assert client.get(f"{CM}/mine").status_code == 200
    assert_status(client.get(f"{CM}/theirs"), 403, "Forbidden")
    assert_status(client.get(CM), 403, "Forbidden")  # resourceNames never grant a list
    assert client.get("/apis/apps/v1/namespaces/shop/deployments").status_code == 200
    assert_status(client.get("/apis/apps/v1/namespaces/shop/deployments/d"), 403, "Forbidden")


def test_group_and_user_subjects(make_client, sa_token, api):
    bind(api, role="view", subject=Subject(kind="Group", name="system:serviceaccounts:shop"))
    client = make_client(token=sa_token("shop", "ci"))
    assert client.get(CM).status_code == 200
    other = make_client(token=sa_token("default", "ci"))
    assert_status(other.get(CM), 403, "Forbidden")
    bind(
        api,
        role="view",
        name="u",
        subject=Subject(kind="User", name=("system:serviceaccount:default:ci")),
    )
    assert other.get(CM).status_code == 200


def test_git_managed_objects_refuse_writes_unless_overridden(admin, api):
    managed = configmap("from-git", **{MANAGED_BY_LABEL: MANAGED_BY_VALUE})
    obj = admin.post(CM, json=managed).json()
    edited = dict(obj, data={"k": "hand-edit"})
    # A 409 whose reason is not "Conflict": client-go retries those (kubectl scale would hang).
    body = assert_status(admin.put(f"{CM}/from-git", json=edited), 409, "Forbidden")
    assert "Git" in body["message"]
    assert "X-Capstan-Override: drift" in body["message"]
    assert_status(admin.patch(f"{CM}/from-git", json={"data": {"x": "1"}}), 409, "Forbidden")
    assert_status(admin.delete(f"{CM}/from-git"), 409, "Forbidden")
    assert_status(
        admin.put(f"{CM}/from-git", json=edited, headers={"X-Capstan-Override": "please"}),
        400,
        "BadRequest",
    )
    overridden = admin.put(f"{CM}/from-git", json=edited, headers={"X-Capstan-Override": "drift"})
    assert overridden.status_code == 200, overridden.text
    result = overridden.json()
    assert result["data"] == {"k": "hand-edit"}
    assert "capstan:admin" in result["metadata"]["annotations"][DRIFT_ANNOTATION]
    patched = admin.patch(f"{CM}/from-git", json={"data": {"x": "1"}}, params={"force": "true"})
    assert patched.status_code == 200, patched.text
    # Status is not Git's: status writes to managed objects are allowed.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": "shop",
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        },
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    created = admin.post("/api/v1/namespaces/shop/pods", json=pod).json()
    created["status"] = {"phase": "Running"}
    assert admin.put("/api/v1/namespaces/shop/pods/p/status", json=created).status_code == 200
    assert admin.delete(f"{CM}/from-git", params={"force": "true"}).status_code == 200
    # Unmanaged objects need no override.
    admin.post(CM, json=configmap("by-hand"))
    assert admin.delete(f"{CM}/by-hand").status_code == 200


def test_no_token_learns_nothing(make_client):
    anonymous = make_client(token=None)
    for path in ("/api/v1/namespaces/shop/configmaps/x", "/api/v1/widgets", "/apis/x/y/z"):
        assert_status(anonymous.get(path), 401, "Unauthorized")
    assert_status(anonymous.post(CM, json={}), 401, "Unauthorized")


def test_a_rolebinding_service_account_without_namespace_is_the_bindings_own(
    make_client, sa_token, api
):
    """As Kubernetes' authorizer reads it (kube-state-metrics' RoleBinding is written so)."""
    bind(api, role="view", subject=Subject(kind="ServiceAccount", name="ci"))
    assert make_client(token=sa_token("shop", "ci")).get(CM).status_code == 200
    other = make_client(token=sa_token("default", "ci"))
    assert_status(other.get(CM), 403, "Forbidden")
    assert other.get("/api/v1/namespaces/default/configmaps").status_code == 403
