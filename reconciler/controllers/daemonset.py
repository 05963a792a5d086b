"""The daemonset controller: one pod of each DaemonSet on every node that matches it.

Watches DaemonSets, Pods (a pod event wakes its controlling DaemonSet) and Nodes (a node added,
relabelled, tainted or removed wakes every DaemonSet). A node matches when the template's
``nodeSelector`` matches its labels and every NoSchedule/NoExecute taint of it is tolerated —
by the template's tolerations plus the ones Kubernetes gives every daemon pod (not-ready,
unreachable, unschedulable, pressure conditions), so a daemon stays on a node being drained or
briefly lost. Cordoned nodes keep their daemons, as in Kubernetes.

Pods are created already bound (``spec.nodeName``; the scheduler leaves bound pods alone),
named ``<ds>-<5 chars>`` and labelled ``controller-revision-hash`` with the template's hash.
A pod on a node that no longer matches (or no longer exists) is deleted, as is a Failed one
(it is replaced) and any second pod on a node. With ``updateStrategy: RollingUpdate`` pods of
an older template are deleted — the unavailable ones first, then at most ``maxUnavailable``
nodes without an available daemon at a time — and replaced on the next pass; ``OnDelete``
replaces a pod only when someone deletes it. Sits between Git (which holds DaemonSets) and the
agents (which run the pods bound to their node).
"""

from __future__ import annotations

from collections import defaultdict
from typing import ClassVar

from reconciler.api import AlreadyExists, Conflict, NotFound
from reconciler.controllers._pods import (
    child_manifest,
    controlled_by,
    delete_pods,
    owner_keys,
    until_available,
)
from reconciler.controllers.runtime import Controller, ControllerContext, Result
from reconciler.scheduler.filters import selector_matches, untolerated_taint
from reconciler.scheduler.nodeinfo import node_info
from reconciler.workloads.deployment import pod_template_hash
from reconciler.workloads.sets import DAEMON_TOLERATIONS, REVISION_LABEL
from schemas import Node, ObjectKey, ObjectMeta, Pod, resolve_int_or_percent
from schemas.apps import DaemonSet, DaemonSetStatus

__all__ = ["DAEMON_TOLERATIONS", "REVISION_LABEL", "DaemonSetController", "daemon_pod_manifest"]


def daemon_pod_manifest(ds: DaemonSet, node: str, template_hash: str) -> dict[str, object]:
    """The manifest of ``ds``'s pod for ``node``, bound to it already."""
    template = ds.spec.template
    meta = ObjectMeta(
        generate_name=f"{ds.name}-",
        namespace=ds.namespace,
        labels={**template.metadata.labels, REVISION_LABEL: template_hash},
        annotations=dict(template.metadata.annotations),
        owner_references=[controlled_by(ds)],
    )
    tolerations = list(template.spec.tolerations)
    tolerations += [t for t in DAEMON_TOLERATIONS if t not in tolerations]
    spec = template.spec.model_copy(update={"node_name": node, "tolerations": tolerations})
    return child_manifest("v1", "Pod", meta, spec)


def _matches(ds: DaemonSet, node: Node) -> bool:
    info = node_info(node)
    spec = ds.spec.template.spec
    if not selector_matches(info.labels, spec.node_selector.items()):
        return False
    return untolerated_taint(info, [*spec.tolerations, *DAEMON_TOLERATIONS]) is None


def _all_daemonsets(informer_list: list[DaemonSet]) -> list[ObjectKey]:
    return [ds.key for ds in informer_list]


class DaemonSetController(Controller):
    name: ClassVar[str] = "daemonset"
    workers: ClassVar[int] = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.daemonsets = self.watch_own(DaemonSet)
        self.pods = self.watch(Pod, lambda pod: owner_keys(pod, "DaemonSet"))
        self.nodes = self.watch(Node, lambda _node: _all_daemonsets(self.daemonsets.list()))

    def reconcile(self, key: ObjectKey) -> Result | None:
        ds = self.daemonsets.get(key.name, namespace=key.namespace)
        if ds is None or ds.metadata.deletion_timestamp is not None:
            self.forget_writes(key)
            return None
        self.await_own_writes(key)
        current_hash = pod_template_hash(ds.spec.template)
        nodes = {node.name: node for node in self.nodes.list()}
        wanted = {name for name, node in nodes.items() if _matches(ds, node)}
        by_node: dict[str, list[Pod]] = defaultdict(list)
        terminating: set[str] = set()
        victims: list[Pod] = []
        for pod in self.pods.by_index("owner", ds.metadata.uid or ""):
            node = pod.spec.node_name or ""
            if pod.metadata.deletion_timestamp is not None:
                terminating.add(node)
            elif node not in wanted or (pod.status is not None and pod.status.phase == "Failed"):
                victims.append(pod)
            else:
                by_node[node].append(pod)
        for pods in by_node.values():
            # One daemon per node: keep the current template's, then the oldest.
            pods.sort(key=lambda p: (p.labels.get(REVISION_LABEL) != current_hash, p.name))
            victims.extend(pods[1:])
            del pods[1:]

        now = self.clock.time()
        min_ready = ds.spec.min_ready_seconds
        waits = {node: until_available(pods[0], min_ready, now) for node, pods in by_node.items()}
        if ds.spec.update_strategy.type == "RollingUpdate":
            victims.extend(self._rolling_victims(ds, wanted, by_node, waits, current_hash))
        self._delete(key, victims)
        gone = {pod.spec.node_name for pod in victims}
        missing = sorted(
            n for n in wanted if (n not in by_node or n in gone) and n not in terminating
        )
        self._create(ds, missing, current_hash)

        kept = {n: pods[0] for n, pods in by_node.items() if n not in gone}
        available = sum(waits.get(n) == 0.0 for n in kept)
        status = DaemonSetStatus(
            desired_number_scheduled=len(wanted),
            current_number_scheduled=len(kept),
            number_misscheduled=sum(1 for p in victims if p.spec.node_name not in wanted),
            number_ready=sum(waits.get(n) is not None for n in kept),
            number_available=available,
            number_unavailable=max(len(wanted) - available, 0),
            updated_number_scheduled=sum(
                p.labels.get(REVISION_LABEL) == current_hash for p in kept.values()
            ),
            observed_generation=ds.metadata.generation,
            conditions=ds.status.conditions if ds.status else [],
        )
        if status != ds.status:
            try:
                written = self.api.update_status(ds.model_copy(update={"status": status}))
            except NotFound:
                return None
            except Conflict:
                fresh = self.api.get(DaemonSet, ds.name, namespace=ds.namespace)
                written = self.api.update_status(fresh.model_copy(update={"status": status}))
            self.note_write(key, self.daemonsets, int(written.metadata.resource_version or 0))
        pending = [w for w in waits.values() if w is not None and w > 0]
        return Result(requeue_after=min(pending)) if pending else None

    @staticmethod
    def _rolling_victims(
        ds: DaemonSet,
        wanted: set[str],
        by_node: dict[str, list[Pod]],
        waits: dict[str, float | None],
        current_hash: str,
    ) -> list[Pod]:
        """Old-template pods to delete now: every unavailable one (it serves nobody), then
        available ones while fewer than ``maxUnavailable`` nodes lack an available daemon."""
        budget = max(resolve_int_or_percent(ds.spec.max_unavailable, len(wanted), round_up=True), 1)
        unavailable = sum(1 for n in wanted if waits.get(n) != 0.0)
        old = sorted(
            (
                pods[0]
                for n, pods in by_node.items()
                if pods[0].labels.get(REVISION_LABEL) != current_hash
            ),
            key=lambda p: p.spec.node_name or "",
        )
        chosen = [p for p in old if waits.get(p.spec.node_name or "") != 0.0]
        for pod in old:
            if pod in chosen:
                continue
            if unavailable >= budget:
                break
            chosen.append(pod)
            unavailable += 1
        return chosen

    def _create(self, ds: DaemonSet, nodes: list[str], template_hash: str) -> None:
        revision = 0
        for node in nodes:
            try:
                pod = self.api.create(daemon_pod_manifest(ds, node, template_hash))
            except AlreadyExists:
                continue
            revision = max(revision, int(pod.metadata.resource_version or 0))
            self.record_event(ds, reason="SuccessfulCreate", message=f"Created pod: {pod.name}")
        self.note_write(ds.key, self.pods, revision)

    def _delete(self, key: ObjectKey, victims: list[Pod]) -> None:
        self.note_write(key, self.pods, delete_pods(self.api, victims))
