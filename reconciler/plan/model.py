"""What a plan is, as data: the renderers print it, the CLI turns it into an exit code.

Built by ``reconciler.plan.build`` from the two sides (``sides``), the observed cluster
(``cluster``), the workload prediction (``workload``) and the scheduler's dry run (``capacity``).
Nothing here reads or writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from reconciler.diff import FieldChange
from reconciler.source import ManifestError
from schemas import ObjectKey

__all__ = [
    "EXIT_CHANGES",
    "EXIT_ERROR",
    "EXIT_NO_CHANGES",
    "Capacity",
    "NodeChanges",
    "ObjectDiff",
    "Plan",
    "PodStop",
    "Rollout",
    "RolloutStep",
    "SideSummary",
    "Unfit",
    "UnfitGroup",
    "WorkloadView",
]

EXIT_NO_CHANGES = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2

DiffAction = Literal["add", "change", "remove"]
RolloutAction = Literal["create", "new-replicaset", "reuse", "scale", "delete", "none"]


@dataclass(frozen=True)
class ObjectDiff:
    """One object added, changed or removed. ``document`` is the whole object (Git-owned
    part, Secret values masked) for an add or a remove; ``fields`` the changes for a change."""

    action: DiffAction
    key: ObjectKey
    source: str | None
    fields: tuple[FieldChange, ...] = ()
    document: dict[str, Any] | None = None


@dataclass(frozen=True)
class RolloutStep:
    """Pods of the new and of the old ReplicaSets after one step of the rollout."""

    new: int
    old: int


@dataclass(frozen=True)
class Rollout:
    """What the Deployment controller will do for one Deployment."""

    deployment: ObjectKey
    action: RolloutAction
    replica_set: str | None = None
    template_hash: str | None = None
    reused_revision: int | None = None
    replicas_before: int = 0
    replicas_after: int = 0
    strategy: str = "RollingUpdate"
    max_surge: int = 0
    max_unavailable: int = 0
    steps: tuple[RolloutStep, ...] = ()
    scaled_down: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkloadView:
    """What the controller of a StatefulSet, DaemonSet, Job or CronJob will do (``action``:
    create, update or delete): ``lines`` for people, the pods it starts (``ns/name``, or
    ``ns/daemonset@node`` for a DaemonSet's) and stops."""

    key: ObjectKey
    action: str
    lines: tuple[str, ...]
    starts: tuple[str, ...] = ()
    stops: tuple[PodStop, ...] = ()


@dataclass(frozen=True)
class PodStop:
    key: str
    node: str | None


@dataclass(frozen=True)
class NodeChanges:
    node: str
    start: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unfit:
    """A pod no node can take, and the scheduler's sentence for why. ``owner`` is the object
    in Git that starts it (None: a pod the plan cannot trace to one)."""

    pod: str
    message: str
    owner: ObjectKey | None = None


@dataclass(frozen=True)
class UnfitGroup:
    """The pods of one owner that fit nowhere for one reason, counted as the scheduler's
    events count them: ``count`` of the ``total`` pods the owner starts."""

    owner: ObjectKey | None
    message: str
    count: int
    total: int

    @property
    def owner_name(self) -> str:
        if self.owner is None:
            return "(unowned pods)"
        key = self.owner
        return f"{key.namespace}/{key.name}" if key.namespace else key.name

    def sentence(self) -> str:
        """``shop/web: 980 of 1000 new pods do not fit: 0/1 nodes are available: ...``"""
        pods = "new pod" if self.total == 1 else "new pods"
        verb = "does" if self.count == 1 else "do"
        return (
            f"{self.owner_name}: {self.count} of {self.total} {pods} {verb} not fit: {self.message}"
        )


@dataclass(frozen=True)
class Capacity:
    """``unschedulable`` lists every pod that fits nowhere; ``unfit_groups`` the same pods
    grouped by owner and reason, for people."""

    observed: str
    nodes_total: int
    unschedulable: tuple[Unfit, ...] = ()
    unfit_groups: tuple[UnfitGroup, ...] = ()
    conflicts: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        return not self.unschedulable and not self.conflicts


@dataclass(frozen=True)
class SideSummary:
    label: str
    commit: str | None
    objects: int
    author: str = ""
    subject: str = ""


@dataclass(frozen=True)
class Plan:
    base: SideSummary
    head: SideSummary
    changes: tuple[ObjectDiff, ...]
    unchanged: int
    rollouts: tuple[Rollout, ...]
    nodes: tuple[NodeChanges, ...]
    capacity: Capacity
    workloads: tuple[WorkloadView, ...] = ()
    errors: tuple[ManifestError, ...] = ()
    base_errors: tuple[ManifestError, ...] = ()
    load_strategy: str = "full"
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def count(self, action: DiffAction) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def pods_starting(self) -> int:
        return sum(len(n.start) for n in self.nodes)

    @property
    def pods_stopping(self) -> int:
        return sum(len(n.stop) for n in self.nodes)

    @property
    def exit_code(self) -> int:
        """0 no changes, 2 changes, 1 head invalid or something would not fit
        (as ``terraform plan -detailed-exitcode``)."""
        if self.errors or not self.capacity.fits:
            return EXIT_ERROR
        return EXIT_CHANGES if self.has_changes else EXIT_NO_CHANGES
