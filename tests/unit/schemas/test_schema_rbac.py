"""RBAC bindings' subjects: which may leave out the ServiceAccount's namespace, as Kubernetes'
``ValidateRoleBindingSubject`` has it (required only when the binding is cluster-scoped)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas import ClusterRoleBinding, RoleBinding, parse_object


def _binding(kind: str, *subjects: dict[str, str]) -> dict[str, Any]:
    metadata: dict[str, str] = {"name": "reader"}
    if kind == "RoleBinding":
        metadata["namespace"] = "kube-system"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": list(subjects),
    }


def test_a_rolebinding_service_account_may_leave_out_its_namespace():
    binding = parse_object(_binding("RoleBinding", {"kind": "ServiceAccount", "name": "ksm"}))
    assert isinstance(binding, RoleBinding)
    assert binding.subjects[0].namespace is None
    assert "namespace" not in binding.to_dict()["subjects"][0], "kept as written"


def test_a_clusterrolebinding_service_account_needs_its_namespace(error_locs):
    named = {"kind": "ServiceAccount", "name": "ksm", "namespace": "kube-system"}
    unnamed = {"kind": "ServiceAccount", "name": "ksm"}
    assert isinstance(parse_object(_binding("ClusterRoleBinding", named)), ClusterRoleBinding)
    assert error_locs(_binding("ClusterRoleBinding", named, unnamed)) == {
        ("subjects", 1, "namespace"): "missing"
    }
    with pytest.raises(ValidationError) as raised:
        parse_object(_binding("ClusterRoleBinding", unnamed))
    message = raised.value.errors()[0]["msg"]
    assert "is required for a ServiceAccount subject of a ClusterRoleBinding" in message
    assert "a RoleBinding's defaults to the binding's own namespace" in message
