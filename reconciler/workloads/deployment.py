"""What a Deployment's pod template and ReplicaSets are named and numbered by.

The pod-template hash (the ``pod-template-hash`` label and the ``<deploy>-<hash>`` ReplicaSet
name) and the rollout revision annotation, as Kubernetes keeps them in
``pkg/controller/deployment/util``: written by the deployment controller
(:mod:`reconciler.controllers.deployment`), read by the sync engine and pins (which template a
commit applied), ``capstan plan`` (which ReplicaSet a change makes), ``capstan rollback`` and
the auto-rollback. Pure functions over ``schemas`` models.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from schemas import PodTemplateSpec, ReplicaSet

__all__ = [
    "HASH_LABEL",
    "REVISION_ANNOTATION",
    "pod_template_hash",
    "revision_of",
    "template_doc",
]

HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_doc(template: PodTemplateSpec) -> dict[str, Any]:
    """A template as compared for equality: its JSON form without the hash label."""
    doc: dict[str, Any] = template.model_dump(mode="json", by_alias=True, exclude_none=True)
    labels = dict(doc.get("metadata", {}).get("labels", {}))
    labels.pop(HASH_LABEL, None)
    doc.setdefault("metadata", {})["labels"] = labels
    return doc


def pod_template_hash(template: PodTemplateSpec, collision_count: int | None = None) -> str:
    """A stable 10-character name part for a template (the hash label itself excluded).
    ``collision_count`` (the Deployment's ``status.collisionCount``) changes it when the
    name is taken by a ReplicaSet this Deployment does not own, as in Kubernetes."""
    doc = json.dumps(template_doc(template), sort_keys=True, separators=(",", ":"))
    if collision_count:
        doc += f"/{collision_count}"
    digest = hashlib.sha256(doc.encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(10):
        number, index = divmod(number, len(_HASH_ALPHABET))
        chars.append(_HASH_ALPHABET[index])
    return "".join(chars)


def revision_of(rs: ReplicaSet) -> int:
    """The ReplicaSet's rollout revision (its revision annotation); 0 when it has none."""
    value = rs.metadata.annotations.get(REVISION_ANNOTATION, "0")
    return int(value) if value.isdigit() else 0
