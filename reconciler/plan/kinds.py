"""What a change does to the workload kinds beside Deployments: StatefulSet, DaemonSet, Job,
CronJob — one ``WorkloadView`` each (a line or a few for people), plus the pods the scheduler
will be asked to place (StatefulSet and Job pods; DaemonSet pods are bound by their controller
and are listed per node instead).

Pure over plain objects, and faithful to the controllers' own rules, imported rather than
copied: StatefulSet pods are ``<set>-<ordinal>`` with claims ``<template>-<set>-<ordinal>``
(``reconciler.workloads.sets.claim_name``), created in ordinal order (OrderedReady) and
updated from the highest ordinal down to ``partition``; a DaemonSet's pod goes on each node its
nodeSelector and tolerations (plus the daemon tolerations) accept; a Job starts
``min(parallelism, completions)`` pods; a CronJob's next run is its schedule's next fire time in
its time zone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from reconciler.plan.model import PodStop, WorkloadView
from reconciler.plan.workload import changed_objects
from reconciler.scheduler import NodeInfo, PodInfo, PodKey, pod_info
from reconciler.scheduler.filters import selector_matches, untolerated_taint
from reconciler.workloads.deployment import pod_template_hash
from reconciler.workloads.sets import DAEMON_TOLERATIONS, REVISION_LABEL, claim_name
from schemas import KubeObject, ObjectKey, ObjectMeta, Pod, PodTemplateSpec
from schemas.apps import DaemonSet, StatefulSet
from schemas.batch import CronJob, Job
from schemas.cron import parse_cron, time_zone

__all__ = ["KINDS", "KindChanges", "predict_kinds"]

KINDS = ("StatefulSet", "DaemonSet", "Job", "CronJob")


@dataclasses.dataclass(frozen=True)
class KindChanges:
    views: tuple[WorkloadView, ...]
    starts: tuple[PodInfo, ...]
    stops: tuple[PodStop, ...]
    owners: Mapping[str, ObjectKey]


def predict_kinds(
    base: Sequence[KubeObject],
    head: Sequence[KubeObject],
    *,
    pods: Sequence[Pod],
    nodes: Sequence[NodeInfo],
    now: datetime | None = None,
) -> KindChanges:
    """A view per StatefulSet, DaemonSet, Job and CronJob added, changed or removed."""
    views: list[WorkloadView] = []
    starts: list[PodInfo] = []
    stops: list[PodStop] = []
    owners: dict[str, ObjectKey] = {}
    for key, before, after in changed_objects(base, head, KINDS):
        owned = [p for p in pods if p.namespace == key.namespace and _owned_by(p, key)]
        action = "create" if before is None else "delete" if after is None else "update"
        if after is None:
            gone = _stops(owned)
            views.append(WorkloadView(key, action, (_deleted(before, len(gone)),), (), gone))
            stops.extend(gone)
            continue
        if isinstance(after, StatefulSet):
            view, started, stopped = _statefulset(key, action, after, owned)
        elif isinstance(after, DaemonSet):
            view, started, stopped = _daemonset(key, action, after, owned, nodes)
        elif isinstance(after, Job):
            view, started, stopped = _job(key, action, after, owned)
        else:
            assert isinstance(after, CronJob)
            view, started, stopped = _cronjob(key, action, after, now or datetime.now(UTC)), [], []
        views.append(view)
        starts.extend(started)
        stops.extend(stopped)
        owners.update((str(p.key), key) for p in started)
    return KindChanges(tuple(views), tuple(starts), tuple(stops), owners)


def _owned_by(pod: Pod, key: ObjectKey) -> bool:
    return any(
        ref.controller and ref.kind == key.kind and ref.name == key.name
        for ref in pod.metadata.owner_references
    )


def _stops(pods: Sequence[Pod]) -> tuple[PodStop, ...]:
    return tuple(
        PodStop(f"{p.namespace}/{p.name}", p.spec.node_name)
        for p in sorted(pods, key=lambda p: p.name)
    )


def _deleted(before: KubeObject | None, count: int) -> str:
    line = f"deleted: {count} pod(s) stop"
    if isinstance(before, StatefulSet) and before.spec.volume_claim_templates:
        policy = before.spec.persistent_volume_claim_retention_policy.when_deleted
        kept = "kept" if policy == "Retain" else "deleted with it"
        line += (
            f"; its claims are {kept} (persistentVolumeClaimRetentionPolicy.whenDeleted: {policy})"
        )
    return line


def _template_info(template: PodTemplateSpec, namespace: str, name: str) -> PodInfo:
    pod = Pod(
        metadata=ObjectMeta(name=name, namespace=namespace, labels=dict(template.metadata.labels)),
        spec=template.spec,
    )
    return pod_info(pod)


def _statefulset(
    key: ObjectKey, action: str, sts: StatefulSet, owned: Sequence[Pod]
) -> tuple[WorkloadView, list[PodInfo], list[PodStop]]:
    first = sts.spec.first_ordinal
    wanted = [f"{sts.name}-{i}" for i in range(first, first + sts.spec.replicas)]
    live = {p.name: p for p in owned}
    template_hash = pod_template_hash(sts.spec.template)
    new = [n for n in wanted if n not in live]
    surplus = sorted((p for n, p in live.items() if n not in wanted), key=lambda p: p.name)
    stale = [
        n
        for n in reversed(wanted)
        if n in live
        and live[n].metadata.labels.get(REVISION_LABEL) != template_hash
        and sts.spec.update_strategy.type == "RollingUpdate"
        and int(n.rsplit("-", 1)[1]) >= sts.spec.partition
    ]
    ordered = sts.spec.pod_management_policy == "OrderedReady"
    lines = [
        f"{sts.spec.replicas} pod(s) {', '.join(wanted) or '-'}"
        + (" created in order, each once the one before is Ready" if ordered and new else "")
    ]
    claims = [
        claim_name(t.metadata.name or "", sts, int(n.rsplit("-", 1)[1]))
        for n in wanted
        for t in sts.spec.volume_claim_templates
    ]
    if claims:
        lines.append(
            f"claims {', '.join(claims)}: a Docker volume on the node each pod is first placed on"
        )
    if new:
        lines.append(f"start: {', '.join(new)}")
    if stale:
        lines.append(f"rolling update, highest ordinal first: {', '.join(stale)}")
    if surplus:
        lines.append(
            f"scale down, highest ordinal first: {', '.join(p.name for p in reversed(surplus))}"
        )
    started = [
        dataclasses.replace(
            _template_info(sts.spec.template, sts.namespace, name),
            key=PodKey(f"{sts.namespace}/{name}"),
        )
        for name in [*new, *stale]
    ]
    stopped = list(_stops([*surplus, *(live[n] for n in stale)]))
    return (
        WorkloadView(
            key,
            action,
            tuple(lines),
            tuple(f"{sts.namespace}/{n}" for n in [*new, *stale]),
            tuple(stopped),
        ),
        started,
        stopped,
    )


def _daemonset(
    key: ObjectKey,
    action: str,
    ds: DaemonSet,
    owned: Sequence[Pod],
    nodes: Sequence[NodeInfo],
) -> tuple[WorkloadView, list[PodInfo], list[PodStop]]:
    spec = ds.spec.template.spec
    matching = [
        n.name
        for n in nodes
        if selector_matches(n.labels, spec.node_selector.items())
        and untolerated_taint(n, [*spec.tolerations, *DAEMON_TOLERATIONS]) is None
    ]
    on_node = {p.spec.node_name: p for p in owned}
    template_hash = pod_template_hash(ds.spec.template)
    new = [n for n in matching if n not in on_node]
    replaced = [
        n
        for n in matching
        if n in on_node
        and on_node[n].metadata.labels.get(REVISION_LABEL) != template_hash
        and ds.spec.update_strategy.type == "RollingUpdate"
    ]
    left = [p for n, p in on_node.items() if n not in matching]
    lines = [
        f"one pod on each of {len(matching)} of {len(nodes)} node(s): {', '.join(matching) or '-'}"
    ]
    if new:
        lines.append(f"start on: {', '.join(new)}")
    if replaced:
        lines.append(f"rolling update (maxUnavailable at a time) on: {', '.join(replaced)}")
    stopped = list(_stops([*left, *(on_node[n] for n in replaced)]))
    starts = tuple(f"{ds.namespace}/{ds.name}@{n}" for n in [*new, *replaced])
    return WorkloadView(key, action, tuple(lines), starts, tuple(stopped)), [], stopped


def _job(
    key: ObjectKey, action: str, job: Job, owned: Sequence[Pod]
) -> tuple[WorkloadView, list[PodInfo], list[PodStop]]:
    completions = job.spec.wanted_completions
    parallel = job.spec.wanted_parallelism
    first_wave = parallel if completions is None else min(parallel, completions)
    if job.spec.suspend:
        first_wave = 0
    target = "until one pod succeeds" if completions is None else f"to {completions} completion(s)"
    lines = [
        f"runs {first_wave} pod(s) at once {target}, backoffLimit {job.spec.backoff_limit}"
        + (
            f", activeDeadlineSeconds {job.spec.active_deadline_seconds}"
            if job.spec.active_deadline_seconds
            else ""
        )
    ]
    if action == "update":
        lines.append(
            "the Job changes in place: pods already made are not replaced, and a finished "
            "Job does not run again (give it a new name to run it again)"
        )
    if action == "update" and owned:
        first_wave = 0
    started = [
        dataclasses.replace(
            _template_info(job.spec.template, job.namespace, job.name),
            key=PodKey(f"{job.namespace}/{job.name}-run{i + 1}"),
        )
        for i in range(first_wave)
    ]
    names = tuple(str(p.key) for p in started)
    return WorkloadView(key, action, tuple(lines), names), started, []


def _cronjob(key: ObjectKey, action: str, cron: CronJob, now: datetime) -> WorkloadView:
    zone_name = cron.spec.time_zone or "UTC"
    zone = time_zone(zone_name)
    next_run = parse_cron(cron.spec.schedule).next_fire(now.astimezone(zone))
    when = next_run.strftime("%Y-%m-%d %H:%M %Z") if next_run else "never (within 9 years)"
    state = "suspended; " if cron.spec.suspend else ""
    line = (
        f"{state}schedule {cron.spec.schedule!r} in {zone_name}: next Job at {when}, "
        f"concurrencyPolicy {cron.spec.concurrency_policy}"
    )
    return WorkloadView(key, action, (line,))
