"""RBAC privilege escalation over HTTP: a role grants only what its writer holds (or the writer
has ``escalate``), a binding only a role whose permissions its writer holds (or ``bind``)."""

from __future__ import annotations

import pytest

from reconciler.api.server._rbac import uncovered_rules
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
from tests.unit.server.conftest import assert_status

RBAC = "/apis/rbac.authorization.k8s.io/v1"
ROLES = f"{RBAC}/namespaces/shop/roles"
BINDINGS = f"{RBAC}/namespaces/shop/rolebindings"
SA_USER = "system:serviceaccount:shop:ci"
CI = Subject(kind="ServiceAccount", name="ci", namespace="shop")
GROUPS = '["system:serviceaccounts" "system:serviceaccounts:shop" "system:authenticated"]'


def rule(
    verbs: list[str], resources: list[str], group: str = "", names: list[str] | None = None
) -> PolicyRule:
    return PolicyRule(
        verbs=verbs, api_groups=[group], resources=resources, resource_names=names or []
    )


def grant(api, name: str, *rules: PolicyRule, cluster: bool = False) -> None:
    """Give the ``shop/ci`` service account ``rules``: in namespace shop, or cluster-wide."""
    if cluster:
        api.create(ClusterRole(metadata=ObjectMeta(name=name), rules=list(rules)))
        api.create(
            ClusterRoleBinding(
                metadata=ObjectMeta(name=name),
                subjects=[CI],
                role_ref=RoleRef(kind="ClusterRole", name=name),
            )
        )
        return
    api.create(Role(metadata=ObjectMeta(name=name, namespace="shop"), rules=list(rules)))
    api.create(
        RoleBinding(
            metadata=ObjectMeta(name=name, namespace="shop"),
            subjects=[CI],
            role_ref=RoleRef(kind="Role", name=name),
        )
    )


def binding(name: str, kind: str, role: str, *, cluster: bool = False) -> dict:
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding" if cluster else "RoleBinding",
        "metadata": {"name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "shop"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
    }
    return body


def role(name: str, *rules: dict) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name},
        "rules": list(rules),
    }


ALL = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}


@pytest.fixture
def ci(make_client, sa_token):
    return make_client(token=sa_token("shop", "ci"))


def test_create_rolebindings_alone_cannot_bind_cluster_admin_or_write_a_star_role(api, ci):
    grant(api, "binder", rule(["create"], ["rolebindings", "roles"], "rbac.authorization.k8s.io"))
    body = assert_status(
        ci.post(BINDINGS, json=binding("me-admin", "ClusterRole", "cluster-admin")),
        403,
        "Forbidden",
    )
    assert body["message"] == (
        f'rolebindings.rbac.authorization.k8s.io "me-admin" is forbidden: user "{SA_USER}" '
        f"(groups={GROUPS}) is attempting to grant RBAC permissions not currently held:\n"
        '{APIGroups:["*"], Resources:["*"], Verbs:["*"]}\n'
        '{NonResourceURLs:["*"], Verbs:["*"]}'
    )
    assert body["details"]["kind"] == "rolebindings"
    body = assert_status(ci.post(ROLES, json=role("star", ALL)), 403, "Forbidden")
    assert body["message"].startswith(
        'roles.rbac.authorization.k8s.io "star" is forbidden: user "system:serviceaccount:shop:ci"'
    )
    assert body["message"].endswith('{APIGroups:["*"], Resources:["*"], Verbs:["*"]}')
    assert [b.name for b in api.list(RoleBinding, namespace="shop").items] == ["binder"]
    assert [r.name for r in api.list(Role, namespace="shop").items] == ["binder"]
    # Nothing gained: still no right to read Secrets.
    assert_status(ci.get("/api/v1/namespaces/shop/secrets"), 403, "Forbidden")


def test_a_role_may_grant_what_its_writer_holds_and_no_more(api, ci):
    grant(
        api,
        "writer",
        rule(["create", "update"], ["roles"], "rbac.authorization.k8s.io"),
        rule(["get", "list"], ["configmaps"]),
        rule(["get"], ["pods/status"]),
        rule(["get"], ["secrets"], names=["mine"]),
    )
    held = role(
        "ok",
        {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]},
        {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["mine"]},
    )
    created = ci.post(ROLES, json=held)
    assert created.status_code == 201, created.text
    more = role(
        "more",
        {
            "verbs": ["get", "delete", "watch"],
            "apiGroups": [""],
            "resources": ["configmaps", "pods/status"],
        },
        {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]},
    )
    body = assert_status(ci.post(ROLES, json=more), 403, "Forbidden")
    missing = body["message"].split("not currently held:\n", 1)[1].split("\n")
    assert missing == [
        '{APIGroups:[""], Resources:["configmaps"], Verbs:["delete" "watch"]}',
        '{APIGroups:[""], Resources:["pods/status"], Verbs:["delete" "watch"]}',
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}',
    ]
    # Updating the held role to grant more is the same escalation, by PUT or by PATCH.
    current = created.json()
    current["rules"].append({"verbs": ["delete"], "apiGroups": [""], "resources": ["configmaps"]})
    assert_status(ci.put(f"{ROLES}/ok", json=current), 403, "Forbidden")
    assert_status(ci.patch(f"{ROLES}/ok", json={"rules": [ALL]}), 403, "Forbidden")
    assert api.get(Role, "ok", namespace="shop").rules[0].verbs == ["get"]
    # Permissions held in another namespace do not count.
    other = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles"
    assert_status(ci.post(other, json=role("x")), 403, "Forbidden")


def test_escalate_verb_lets_a_role_grant_anything_in_its_scope(api, ci):
    grant(api, "escalator", rule(["create", "escalate"], ["roles"], "rbac.authorization.k8s.io"))
    created = ci.post(ROLES, json=role("star", ALL))
    assert created.status_code == 201, created.text
    # `escalate` on roles in shop says nothing about ClusterRoles.
    cluster_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "star"},
        "rules": [ALL],
    }
    grant(
        api,
        "cr-writer",
        rule(["create"], ["clusterroles"], "rbac.authorization.k8s.io"),
        cluster=True,
    )
    assert_status(ci.post(f"{RBAC}/clusterroles", json=cluster_role), 403, "Forbidden")


def test_bind_verb_honours_resource_names(api, ci):
    grant(
        api,
        "binder",
        rule(["create"], ["rolebindings"], "rbac.authorization.k8s.io"),
        rule(["bind"], ["clusterroles"], "rbac.authorization.k8s.io", names=["edit"]),
    )
    allowed = ci.post(BINDINGS, json=binding("me-edit", "ClusterRole", "edit"))
    assert allowed.status_code == 201, allowed.text
    assert (
        ci.post(
            "/api/v1/namespaces/shop/configmaps", json={"metadata": {"name": "c"}, "data": {}}
        ).status_code
        == 201
    )
    body = assert_status(
        ci.post(BINDINGS, json=binding("me-admin", "ClusterRole", "cluster-admin")),
        403,
        "Forbidden",
    )
    assert "is attempting to grant RBAC permissions not currently held" in body["message"]


def test_a_binding_may_grant_a_role_whose_permissions_the_writer_holds(api, ci, admin):
    grant(
        api,
        "binder",
        rule(["create", "update"], ["rolebindings"], "rbac.authorization.k8s.io"),
        rule(["get", "list", "watch"], ["*"]),
        rule(["get", "list", "watch"], ["*"], "apps"),
    )
    # The built-in `view` is all reads: held, so it may be bound.
    created = ci.post(BINDINGS, json=binding("me-view", "ClusterRole", "view"))
    assert created.status_code == 201, created.text
    # `edit` writes: not held.
    assert_status(
        ci.post(BINDINGS, json=binding("me-edit", "ClusterRole", "edit")), 403, "Forbidden"
    )
    # A Role that does not exist cannot be checked, so it cannot be bound without `bind`.
    body = assert_status(
        ci.post(BINDINGS, json=binding("ghost", "Role", "ghost")), 403, "Forbidden"
    )
    assert body["message"] == (
        'rolebindings.rbac.authorization.k8s.io "ghost" is forbidden: '
        'roles.rbac.authorization.k8s.io "ghost" not found'
    )
    # Adding oneself to an existing binding of cluster-admin is binding cluster-admin.
    api.create(
        RoleBinding(
            metadata=ObjectMeta(name="admins", namespace="shop"),
            subjects=[Subject(kind="User", name="alice")],
            role_ref=RoleRef(kind="ClusterRole", name="cluster-admin"),
        )
    )
    admins = admin.get(f"{BINDINGS}/admins").json()
    admins["subjects"].append({"kind": "ServiceAccount", "name": "ci", "namespace": "shop"})
    assert_status(ci.put(f"{BINDINGS}/admins", json=admins), 403, "Forbidden")
    assert [s.name for s in api.get(RoleBinding, "admins", namespace="shop").subjects] == ["alice"]
    # Changing only finalizers (what garbage collection does) is not a grant.
    admins = admin.get(f"{BINDINGS}/admins").json()
    admins["metadata"]["finalizers"] = ["example.com/hold"]
    assert ci.put(f"{BINDINGS}/admins", json=admins).status_code == 200


def test_cluster_role_binding_needs_cluster_wide_permissions(api, ci):
    grant(
        api,
        "crb-writer",
        rule(["create"], ["clusterrolebindings"], "rbac.authorization.k8s.io"),
        cluster=True,
    )
    # cluster-admin inside namespace shop only: not enough for a cluster-wide grant.
    api.create(
        RoleBinding(
            metadata=ObjectMeta(name="ns-admin", namespace="shop"),
            subjects=[CI],
            role_ref=RoleRef(kind="ClusterRole", name="cluster-admin"),
        )
    )
    crbs = f"{RBAC}/clusterrolebindings"
    assert_status(
        ci.post(crbs, json=binding("me", "ClusterRole", "cluster-admin", cluster=True)),
        403,
        "Forbidden",
    )
    api.create(
        ClusterRoleBinding(
            metadata=ObjectMeta(name="bind-all"),
            subjects=[CI],
            role_ref=RoleRef(kind="ClusterRole", name="bind-all"),
        )
    )
    api.create(
        ClusterRole(
            metadata=ObjectMeta(name="bind-all"),
            rules=[rule(["bind"], ["clusterroles"], "rbac.authorization.k8s.io")],
        )
    )
    created = ci.post(crbs, json=binding("me", "ClusterRole", "cluster-admin", cluster=True))
    assert created.status_code == 201, created.text


def test_the_admin_is_never_refused(admin):
    assert admin.post(ROLES, json=role("star", ALL)).status_code == 201
    assert admin.post(BINDINGS, json=binding("b", "Role", "missing")).status_code == 201


def r(
    verbs: str, resources: str = "", group: str = "", names: str = "", urls: str = ""
) -> PolicyRule:
    return PolicyRule(
        verbs=verbs.split(),
        api_groups=[group] if resources else [],
        resources=resources.split(),
        resource_names=names.split(),
        non_resource_urls=urls.split(),
    )


@pytest.mark.parametrize(
    ("owned", "granted", "covered"),
    [
        (r("*", "*", "*"), r("get delete", "pods secrets", "apps"), True),
        (r("get", "pods"), r("get", "pods", "apps"), False),  # another group
        (r("get list", "pods"), r("get", "pods/status"), False),  # a subresource is apart
        (r("get", "*/status"), r("get", "pods/status"), True),
        (r("get", "pods/*"), r("get", "pods/log"), True),  # as this authorizer grants it
        (r("get", "pods/*"), r("get", "pods"), False),
        (r("get", "pods", names="a"), r("get", "pods"), False),  # names never cover all
        (r("get", "pods", names="a b"), r("get", "pods", names="b"), True),
        (r("get", "pods"), r("get", "pods", names="b"), True),
        (r("get", urls="/metrics"), r("get", urls="/metrics"), True),
        (r("get", urls="/capstan/*"), r("get", urls="/capstan/v1/plan"), True),
        (r("get", urls="/capstan/*"), r("get", urls="/metrics"), False),
        (r("*", "*", "*"), r("get", urls="/metrics"), False),  # resources are not URLs
        (
            r("get update", "roles", "rbac.authorization.k8s.io"),
            r("escalate", "roles", "rbac.authorization.k8s.io"),
            False,
        ),  # special verbs apart
    ],
)
def test_covering_rules_as_kubernetes_does(owned, granted, covered):
    assert (uncovered_rules([owned], [granted]) == []) is covered
