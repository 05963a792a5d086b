"""``SelfSubjectAccessReview``: "may I do this?", answered by the same authorizer that guards
every request (``kubectl auth can-i``, and clients that check before they act).

Called by the REST handler for ``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews``
with the caller's own identity; the body (JSON, or protobuf as kubectl sends it) names a
verb on a resource, optionally namespaced, named and a subresource, or a verb on a
non-resource URL. The answer is the review with ``status.allowed``; nothing is stored.
"""

from __future__ import annotations

from typing import Any

from reconciler.api.server._rbac import Attributes, Authorizer, UserInfo
from reconciler.api.server._status import HttpError

__all__ = ["REVIEW_GROUP", "REVIEW_PATH", "access_review"]

REVIEW_GROUP = "authorization.k8s.io"
REVIEW_PATH = f"/apis/{REVIEW_GROUP}/v1/selfsubjectaccessreviews"


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
    if document.get("kind", "SelfSubjectAccessReview") != "SelfSubjectAccessReview":
        raise HttpError(
            400,
            f"kind {document.get('kind')!r} does not match the path "
            "(expected 'SelfSubjectAccessReview')",
        )
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
