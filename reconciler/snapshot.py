"""A saved picture of a cluster, for ``capstan plan --snapshot FILE`` away from the cluster.

Written by ``capstan snapshot -o FILE`` from the running control plane (through the API, or
its store read through ``reconciler.api``), read by ``reconciler.plan`` as the observed side
of a plan: the nodes with what they can hold, the pods bound to them, the ReplicaSets (which
template each Deployment revision ran — what a rollback would reuse), and every object
Capstan manages. JSON, one document::

    {"apiVersion": "capstan.io/v1", "kind": "ClusterSnapshot", "takenAt": "...",
     "revision": 1234, "nodes": [...], "pods": [...], "replicaSets": [...], "objects": [...]}

WARNING: Secret values are never written: a Secret keeps its name, labels and the *names*
of its keys (annotation ``capstan.io/snapshot-secret-keys``), nothing of its data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from reconciler._private import write_private
from reconciler.diff import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from schemas import (
    SUPPORTED_KINDS,
    KubeObject,
    LabelSelector,
    Node,
    Pod,
    ReplicaSet,
    model_for,
    parse_object,
)

__all__ = [
    "SECRET_KEYS_ANNOTATION",
    "SNAPSHOT_KIND",
    "ClusterSnapshot",
    "ObjectReader",
    "SnapshotError",
    "take_snapshot",
]

SNAPSHOT_API_VERSION = "capstan.io/v1"
SNAPSHOT_KIND = "ClusterSnapshot"
SECRET_KEYS_ANNOTATION = "capstan.io/snapshot-secret-keys"  # noqa: S105 - a name

T = TypeVar("T", bound=KubeObject)


class ObjectReader(Protocol):
    """What a snapshot or a plan reads a cluster through: ``reconciler.api.Api`` in-process,
    ``reconciler.client.Client`` over HTTP."""

    def list(
        self,
        kind: type[T],
        *,
        namespace: str | None = None,
        label_selector: LabelSelector | Mapping[str, str] | None = None,
    ) -> Any: ...


class SnapshotError(ValueError):
    """The file is not a cluster snapshot, or one of its objects does not validate."""


@dataclass(frozen=True)
class ClusterSnapshot:
    taken_at: datetime
    revision: int | None
    nodes: tuple[Node, ...]
    pods: tuple[Pod, ...]
    replicasets: tuple[ReplicaSet, ...]
    objects: tuple[KubeObject, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": SNAPSHOT_API_VERSION,
            "kind": SNAPSHOT_KIND,
            "takenAt": self.taken_at.isoformat(),
            "revision": self.revision,
            "nodes": [n.to_dict() for n in self.nodes],
            "pods": [p.to_dict() for p in self.pods],
            "replicaSets": [rs.to_dict() for rs in self.replicasets],
            "objects": [_without_secret_values(o).to_dict() for o in self.objects],
        }

    def save(self, path: Path) -> None:
        """Write the snapshot (0600: it names the fleet's hosts)."""
        write_private(Path(path), (json.dumps(self.to_dict(), indent=1) + "\n").encode("utf-8"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterSnapshot:
        if data.get("kind") != SNAPSHOT_KIND or data.get("apiVersion") != SNAPSHOT_API_VERSION:
            raise SnapshotError(f"not a {SNAPSHOT_API_VERSION} {SNAPSHOT_KIND}")
        try:
            taken = datetime.fromisoformat(str(data.get("takenAt")))
            revision = data.get("revision")
            return cls(
                taken_at=taken,
                revision=int(revision) if revision is not None else None,
                nodes=tuple(Node.model_validate(n) for n in data.get("nodes", [])),
                pods=tuple(Pod.model_validate(p) for p in data.get("pods", [])),
                replicasets=tuple(
                    ReplicaSet.model_validate(rs) for rs in data.get("replicaSets", [])
                ),
                objects=tuple(parse_object(o) for o in data.get("objects", [])),
            )
        except (ValueError, TypeError) as exc:
            raise SnapshotError(f"invalid snapshot: {exc}") from exc

    @classmethod
    def load(cls, path: Path) -> ClusterSnapshot:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"cannot read snapshot {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise SnapshotError(f"{path}: not a JSON object")
        return cls.from_dict(data)


def take_snapshot(reader: ObjectReader, *, now: datetime | None = None) -> ClusterSnapshot:
    """Read the cluster (read-only: lists, nothing else)."""
    nodes = reader.list(Node)
    pods = reader.list(Pod)
    replicasets = reader.list(ReplicaSet)
    objects: list[KubeObject] = []
    for api_version, kind in SUPPORTED_KINDS:
        model = model_for(api_version, kind)
        listed = reader.list(model, label_selector={MANAGED_BY_LABEL: MANAGED_BY_VALUE})
        objects.extend(
            _without_secret_values(o)
            for o in listed.items
            if not any(ref.controller for ref in o.metadata.owner_references)
        )
    revision = nodes.resource_version
    return ClusterSnapshot(
        taken_at=now or datetime.now(UTC),
        revision=int(revision) if str(revision).isdigit() else None,
        nodes=tuple(nodes.items),
        pods=tuple(p for p in pods.items if _active(p)),
        replicasets=tuple(replicasets.items),
        objects=tuple(objects),
    )


def _active(pod: Pod) -> bool:
    phase = pod.status.phase if pod.status else "Pending"
    return pod.metadata.deletion_timestamp is None and phase not in ("Succeeded", "Failed")


def _without_secret_values(obj: KubeObject) -> KubeObject:
    if obj.kind != "Secret":
        return obj
    data = obj.to_dict()
    keys = sorted({*(data.get("data") or {}), *(data.get("stringData") or {})})
    if not keys:
        return obj  # nothing to hide (or hidden already: keep the key names noted then)
    data.pop("data", None)
    data.pop("stringData", None)
    meta = data.setdefault("metadata", {})
    meta["annotations"] = {**meta.get("annotations", {}), SECRET_KEYS_ANNOTATION: ",".join(keys)}
    return parse_object(data)
