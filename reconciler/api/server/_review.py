"""``SelfSubjectAccessReview`` ("may I do this?") and ``SelfSubjectRulesReview`` ("what may I
do here?"), answered by the same authorizer that guards every request (``kubectl auth can-i``
and ``auth can-i --list``, and clients that check before they act).

Called by the REST handler for ``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews``
and ``.../selfsubjectrulesreviews`` with the caller's own identity (or the one it
impersonates); the body is JSON, or protobuf as kubectl sends it. An access review names a
verb on a resource, optionally namespaced, named and a subresource, or a verb on a
non-resource URL, and is answered with ``status.allowed``. A rules review names a namespace
and is answered with the caller's rules there, plus what every authenticated user may do
(these reviews, discovery). Nothing is stored.
"""

from __future__ import annotations

from typing import Any

from reconciler.api.server._rbac import Attributes, Authorizer, UserInfo
from reconciler.api.server._status import HttpError
from schemas import PolicyRule

__all__ = ["REVIEW_GROUP", "REVIEW_PATH", "RULES_REVIEW_PATH", "access_review", "rules_review"]

REVIEW_GROUP = "authorization.k8s.io"
REVIEW_PATH = f"/apis/{REVIEW_GROUP}/v1/selfsubjectaccessreviews"
RULES_REVIEW_PATH = f"/apis/{REVIEW_GROUP}/v1/selfsubjectrulesreviews"
#: What the server lets every authenticated user do without RBAC (Kubernetes' built-in
#: ``system:basic-user`` and ``system:discovery`` roles): these reviews and discovery.
_EVERYONE = (
    PolicyRule(
        verbs=["create"],
        api_groups=[REVIEW_GROUP],
        resources=["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
    ),
    PolicyRule(
        verbs=["get"],
        non_resource_urls=[
            "/api",
            "/api/*",
            "/apis",
            "/apis/*",
            "/healthz",
            "/openapi/v3",
            "/openapi/v3/*",
            "/readyz",
            "/version",
        ],
    ),
)


def _expect_kind(document: dict[str, Any], kind: str) -> None:
    if document.get("kind", kind) != kind:
        raise HttpError(
            400, f"kind {document.get('kind')!r} does not match the path (expected {kind!r})"
        )


def _text(attributes: dict[str, Any], field: str) -> str:
    value = attributes.get(field, "")
    if not isinstance(value, str):
        raise HttpError(
            422,
            f"SelfSubjectAccessReview is invalid: spec.*.{field}: must be a string",
            reason="Invalid",
        )
    return value


def _attributes(spec: Any, user: UserInfo) -> Attributes:
    if not isinstance(spec, dict):
        raise HttpError(
            422, "SelfSubjectAccessReview is invalid: spec: must be an object", reason="Invalid"
        )
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if isinstance(resource, dict) == isinstance(non_resource, dict):
        raise HttpError(
            422,
            "SelfSubjectAccessReview is invalid: spec: exactly one of "
            "resourceAttributes or nonResourceAttributes is required",
            reason="Invalid",
        )
    if isinstance(non_resource, dict):
        return Attributes(
            user=user, verb=_text(non_resource, "verb"), path=_text(non_resource, "path")
        )
    assert isinstance(resource, dict)
    plural, sub = _text(resource, "resource"), _text(resource, "subresource")
    return Attributes(
        user=user,
        verb=_text(resource, "verb"),
        api_group=_text(resource, "group"),
        resource=f"{plural}/{sub}" if sub else plural,
        namespace=_text(resource, "namespace") or None,
        name=_text(resource, "name") or None,
    )


def access_review(
    document: dict[str, Any], *, user: UserInfo, authorizer: Authorizer
) -> dict[str, Any]:
    """The review ``document`` answered for ``user`` (blocking: the authorizer may read
    RBAC objects from the store)."""
    _expect_kind(document, "SelfSubjectAccessReview")
    spec = document.get("spec")
    # No reason with a denial, as Kubernetes' RBAC gives none (kubectl prints a bare "no").
    status = {"allowed": authorizer.allowed(_attributes(spec, user))}
    return {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": f"{REVIEW_GROUP}/v1",
        "metadata": {},
        "spec": spec,
        "status": status,
    }


def rules_review(
    document: dict[str, Any], *, user: UserInfo, authorizer: Authorizer
) -> dict[str, Any]:
    """The rules review ``document`` answered for ``user``: the resource and non-resource
    rules it holds in ``spec.namespace`` (blocking: reads RBAC objects)."""
    _expect_kind(document, "SelfSubjectRulesReview")
    spec = document.get("spec")
    namespace = spec.get("namespace", "") if isinstance(spec, dict) else None
    if not isinstance(namespace, str):
        raise HttpError(
            422,
            "SelfSubjectRulesReview is invalid: spec.namespace: must be a string",
            reason="Invalid",
        )
    rules = [*authorizer.rules_for(user, namespace or None), *_EVERYONE]
    resource_rules = []
    non_resource_rules = []
    for rule in rules:
        if rule.resources:
            entry: dict[str, Any] = {
                "verbs": list(rule.verbs),
                "apiGroups": list(rule.api_groups),
                "resources": list(rule.resources),
            }
            if rule.resource_names:
                entry["resourceNames"] = list(rule.resource_names)
            resource_rules.append(entry)
        if rule.non_resource_urls:
            non_resource_rules.append(
                {"verbs": list(rule.verbs), "nonResourceURLs": list(rule.non_resource_urls)}
            )
    return {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": f"{REVIEW_GROUP}/v1",
        "metadata": {},
        "spec": {"namespace": namespace},
        "status": {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": False,
        },
    }
