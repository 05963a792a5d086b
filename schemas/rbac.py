"""rbac.authorization.k8s.io/v1 Role, RoleBinding, ClusterRole and ClusterRoleBinding.

Kept in Git like every other object and stored by the API server; the HTTP server's authorizer
(``reconciler.api.server``) reads them to decide whether a user may do a verb on a resource.
Field names and meaning are Kubernetes': a rule grants ``verbs`` on ``resources`` (``pods``,
``pods/status``, ``*``) of ``apiGroups`` (``""`` is the core group), optionally only for
``resourceNames``; a binding gives a role's rules to ``subjects``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from schemas._validation import PathSegmentName, Problems
from schemas.meta import KubeModel, KubeObject, NameFormat

__all__ = [
    "ClusterRole",
    "ClusterRoleBinding",
    "PolicyRule",
    "Role",
    "RoleBinding",
    "RoleRef",
    "Subject",
]


class PolicyRule(KubeModel):
    """Verbs allowed on resources (or, in ClusterRoles, on non-resource URLs like
    ``/metrics``). ``*`` matches every verb, group or resource."""

    verbs: list[str] = Field(min_length=1)
    api_groups: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    resource_names: list[str] = Field(default_factory=list)
    non_resource_urls: list[str] = Field(default_factory=list, alias="nonResourceURLs")

    @model_validator(mode="after")
    def _targets(self) -> PolicyRule:
        problems = Problems("PolicyRule")
        if self.resources and self.non_resource_urls:
            problems.add(
                ("nonResourceURLs",),
                "rule_targets",
                "a rule names either resources or nonResourceURLs, not both",
            )
        if self.resources and not self.api_groups:
            problems.add(
                ("apiGroups",),
                "missing",
                'is required with resources (use [""] for the core group)',
            )
        if not self.resources and not self.non_resource_urls:
            problems.add(("resources",), "missing", "a rule needs resources or nonResourceURLs")
        problems.raise_if_any()
        return self


class Subject(KubeModel):
    """Who a binding applies to. A ServiceAccount subject without a namespace, which only a
    RoleBinding may have, is the account of that binding's namespace (as Kubernetes' authorizer
    reads it); a ClusterRoleBinding must name the namespace."""

    kind: Literal["User", "ServiceAccount", "Group"]
    name: str = Field(min_length=1)
    namespace: str | None = None
    api_group: str | None = None


class RoleRef(KubeModel):
    """The role a binding grants: a Role in the binding's namespace or a ClusterRole."""

    api_group: Literal["rbac.authorization.k8s.io"] = "rbac.authorization.k8s.io"
    kind: Literal["Role", "ClusterRole"]
    name: PathSegmentName


class Role(KubeObject):
    NAME_FORMAT: ClassVar[NameFormat] = "path-segment"

    api_version: Literal["rbac.authorization.k8s.io/v1"] = "rbac.authorization.k8s.io/v1"
    kind: Literal["Role"] = "Role"
    rules: list[PolicyRule] = Field(default_factory=list)


class ClusterRole(KubeObject):
    NAME_FORMAT: ClassVar[NameFormat] = "path-segment"
    NAMESPACED: ClassVar[bool] = False

    api_version: Literal["rbac.authorization.k8s.io/v1"] = "rbac.authorization.k8s.io/v1"
    kind: Literal["ClusterRole"] = "ClusterRole"
    rules: list[PolicyRule] = Field(default_factory=list)


class RoleBinding(KubeObject):
    """Grants a Role or a ClusterRole, within this binding's namespace only."""

    NAME_FORMAT: ClassVar[NameFormat] = "path-segment"

    api_version: Literal["rbac.authorization.k8s.io/v1"] = "rbac.authorization.k8s.io/v1"
    kind: Literal["RoleBinding"] = "RoleBinding"
    subjects: list[Subject] = Field(default_factory=list)
    role_ref: RoleRef


class ClusterRoleBinding(KubeObject):
    """Grants a ClusterRole in every namespace (and for cluster-scoped resources)."""

    NAME_FORMAT: ClassVar[NameFormat] = "path-segment"
    NAMESPACED: ClassVar[bool] = False

    api_version: Literal["rbac.authorization.k8s.io/v1"] = "rbac.authorization.k8s.io/v1"
    kind: Literal["ClusterRoleBinding"] = "ClusterRoleBinding"
    subjects: list[Subject] = Field(default_factory=list)
    role_ref: RoleRef

    @model_validator(mode="after")
    def _cluster_role_only(self) -> ClusterRoleBinding:
        problems = Problems("ClusterRoleBinding")
        if self.role_ref.kind != "ClusterRole":
            problems.add(
                ("roleRef", "kind"),
                "role_ref",
                "a ClusterRoleBinding can only refer to a ClusterRole",
                self.role_ref.kind,
            )
        for index, subject in enumerate(self.subjects):
            if subject.kind == "ServiceAccount" and not subject.namespace:
                problems.add(
                    ("subjects", index, "namespace"),
                    "missing",
                    "is required for a ServiceAccount subject of a ClusterRoleBinding "
                    "(only a RoleBinding's defaults to the binding's own namespace)",
                )
        problems.raise_if_any()
        return self
