"""RBAC escalation end to end: the server as ``capstan up`` serves it (TLS from its CA, the
client config it wrote), a service account's real token, and the typed client."""

from __future__ import annotations

import pytest

from reconciler.api import Forbidden
from reconciler.client import Client
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
from tests.fixtures.tokens import mint_service_account_token

RBAC = "rbac.authorization.k8s.io"
CI = Subject(kind="ServiceAccount", name="ci", namespace="shop")


def test_escalation_is_403_and_bind_or_escalate_or_holding_it_is_201(live, api, tmp_path):
    token = mint_service_account_token(api, "shop", "ci")
    api.create(
        Role(
            metadata=ObjectMeta(name="rbac-writer", namespace="shop"),
            rules=[
                PolicyRule(
                    verbs=["create"], api_groups=[RBAC], resources=["roles", "rolebindings"]
                ),
                PolicyRule(verbs=["get", "list"], api_groups=[""], resources=["configmaps"]),
            ],
        )
    )
    api.create(
        RoleBinding(
            metadata=ObjectMeta(name="rbac-writer", namespace="shop"),
            subjects=[CI],
            role_ref=RoleRef(kind="Role", name="rbac-writer"),
        )
    )
    me_admin = RoleBinding(
        metadata=ObjectMeta(name="me-admin", namespace="shop"),
        subjects=[CI],
        role_ref=RoleRef(kind="ClusterRole", name="cluster-admin"),
    )
    star = Role(
        metadata=ObjectMeta(name="star", namespace="shop"),
        rules=[PolicyRule(verbs=["*"], api_groups=["*"], resources=["*"])],
    )
    readers = Role(
        metadata=ObjectMeta(name="readers", namespace="shop"),
        rules=[PolicyRule(verbs=["get"], api_groups=[""], resources=["configmaps"])],
    )
    with Client.from_config(tmp_path / "config", token=token) as ci:
        with pytest.raises(
            Forbidden, match="attempting to grant RBAC permissions not currently held"
        ):
            ci.create(me_admin)
        with pytest.raises(
            Forbidden,
            match=r'roles.rbac.authorization.k8s.io "star" is '
            r"forbidden",
        ):
            ci.create(star)
        # What it holds, it may grant.
        assert ci.create(readers).rules == readers.rules
        # The admin grants `bind` on cluster-admin and `escalate` on roles.
        api.create(
            ClusterRole(
                metadata=ObjectMeta(name="delegate"),
                rules=[
                    PolicyRule(
                        verbs=["bind"],
                        api_groups=[RBAC],
                        resources=["clusterroles"],
                        resource_names=["cluster-admin"],
                    ),
                    PolicyRule(verbs=["escalate"], api_groups=[RBAC], resources=["roles"]),
                ],
            )
        )
        api.create(
            ClusterRoleBinding(
                metadata=ObjectMeta(name="delegate"),
                subjects=[CI],
                role_ref=RoleRef(kind="ClusterRole", name="delegate"),
            )
        )
        assert ci.create(me_admin).role_ref.name == "cluster-admin"
        assert ci.create(star).rules == star.rules
