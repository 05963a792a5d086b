"""v1 PersistentVolumeClaim: a named piece of node-local storage that outlives its pods.

A claim from Git, or one a StatefulSet made from its ``volumeClaimTemplates``, is a Docker
named volume on one node. It is bound to the node of the first pod the scheduler places that
uses it (recorded in ``spec.volumeName`` and the ``capstan.io/bound-node`` annotation, phase
Bound), and every later pod that uses it is scheduled to that node. ``storageClassName``,
``resources`` and ``accessModes`` are kept as written; Docker volumes have no size limit.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from schemas.meta import Condition, KubeModel, KubeObject, LabelSelector
from schemas.quantity import Quantity

__all__ = [
    "BOUND_NODE_ANNOTATION",
    "PersistentVolumeClaim",
    "PersistentVolumeClaimSpec",
    "PersistentVolumeClaimStatus",
    "VolumeResourceRequirements",
]

BOUND_NODE_ANNOTATION = "capstan.io/bound-node"

AccessMode = Literal["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]


class VolumeResourceRequirements(KubeModel):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class PersistentVolumeClaimSpec(KubeModel):
    access_modes: list[AccessMode] = Field(default_factory=list)
    resources: VolumeResourceRequirements = Field(default_factory=VolumeResourceRequirements)
    storage_class_name: str | None = None
    volume_mode: Literal["Filesystem", "Block"] = "Filesystem"
    volume_name: str | None = None
    selector: LabelSelector | None = None


class PersistentVolumeClaimStatus(KubeModel):
    phase: Literal["Pending", "Bound", "Lost"] = "Pending"
    access_modes: list[AccessMode] = Field(default_factory=list)
    capacity: dict[str, Quantity] = Field(default_factory=dict)
    conditions: list[Condition] = Field(default_factory=list)


class PersistentVolumeClaim(KubeObject):
    NAMESPACED: ClassVar[bool] = True

    api_version: Literal["v1"] = "v1"
    kind: Literal["PersistentVolumeClaim"] = "PersistentVolumeClaim"
    spec: PersistentVolumeClaimSpec = Field(default_factory=PersistentVolumeClaimSpec)
    status: PersistentVolumeClaimStatus | None = None

    @property
    def bound_node(self) -> str | None:
        """The node this claim's data lives on, once a pod using it was placed."""
        return self.metadata.annotations.get(BOUND_NODE_ANNOTATION)
