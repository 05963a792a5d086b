"""What a change does to workloads: per Deployment the rollout, and which pods start and stop.

Pure over plain objects. The Deployment controller's own rules decide, imported rather than
copied: a Deployment's pods come from the ReplicaSet ``<name>-<pod-template-hash>``
(``reconciler.workloads.deployment.pod_template_hash``), and an existing ReplicaSet whose
template hashes the same is *reused* — scaled back up with the next revision — instead of a
new one (the rollback path: no new hash, no new image pull). The steps are the rolling
update's arithmetic (maxSurge up, maxUnavailable down, counting new pods as available when
they start), or Recreate's all-down-then-up.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from reconciler.diff import diff_objects
from reconciler.plan.model import PodStop, Rollout, RolloutAction, RolloutStep
from reconciler.scheduler import PodInfo, PodKey, pod_info, pod_key
from reconciler.workloads.deployment import (
    HASH_LABEL,
    REVISION_ANNOTATION,
    pod_template_hash,
    revision_of,
)
from schemas import (
    Deployment,
    KubeObject,
    LabelSelector,
    ObjectKey,
    ObjectMeta,
    OwnerReference,
    Pod,
    PodTemplateSpec,
    ReplicaSet,
    ReplicaSetSpec,
    resolve_int_or_percent,
)

__all__ = [
    "WorkloadChanges",
    "changed_objects",
    "desired_replicasets",
    "expand_pods",
    "predict",
    "rolling_steps",
]

_MAX_STEPS = 10_000
_WORKLOAD_KINDS = ("Deployment", "ReplicaSet", "Pod")


@dataclass(frozen=True)
class WorkloadChanges:
    """``owners`` maps each started pod's key to the object in Git that starts it (a
    Deployment, a ReplicaSet or the Pod itself): the capacity report groups by it."""

    rollouts: tuple[Rollout, ...]
    starts: tuple[PodInfo, ...]
    stops: tuple[PodStop, ...]
    owners: Mapping[str, ObjectKey] = dataclasses.field(default_factory=dict)


def _plan_uid(namespace: str, name: str) -> str:
    return f"plan:{namespace}/{name}"


def _controller_uid(obj: KubeObject) -> str | None:
    return next((ref.uid for ref in obj.metadata.owner_references if ref.controller), None)


def desired_replicasets(objects: Iterable[KubeObject]) -> list[ReplicaSet]:
    """The ReplicaSets a set of desired objects leads to: one per Deployment (as the
    controller names it), plus the ReplicaSets written in Git."""
    found: list[ReplicaSet] = []
    for obj in objects:
        if isinstance(obj, Deployment):
            found.append(_replicaset_for(obj, replicas=obj.spec.replicas))
        elif isinstance(obj, ReplicaSet):
            uid = obj.metadata.uid or _plan_uid(obj.namespace, obj.name)
            found.append(
                obj.model_copy(update={"metadata": obj.metadata.model_copy(update={"uid": uid})})
            )
    return found


def _replicaset_for(d: Deployment, *, replicas: int) -> ReplicaSet:
    template_hash = pod_template_hash(d.spec.template)
    name = f"{d.name}-{template_hash}"
    labels = {**d.spec.template.metadata.labels, HASH_LABEL: template_hash}
    template = d.spec.template.model_copy(
        update={"metadata": d.spec.template.metadata.model_copy(update={"labels": labels})}
    )
    return ReplicaSet(
        metadata=ObjectMeta(
            name=name,
            namespace=d.namespace,
            uid=_plan_uid(d.namespace, name),
            labels=labels,
            annotations={REVISION_ANNOTATION: "1"},
            owner_references=[
                OwnerReference(
                    api_version="apps/v1",
                    kind="Deployment",
                    name=d.name,
                    uid=d.metadata.uid or _plan_uid(d.namespace, d.name),
                    controller=True,
                )
            ],
        ),
        spec=ReplicaSetSpec(
            replicas=replicas,
            selector=LabelSelector(
                match_labels={**d.spec.selector.match_labels, HASH_LABEL: template_hash}
            ),
            template=template,
        ),
    )


def expand_pods(objects: Iterable[KubeObject], replicasets: Iterable[ReplicaSet]) -> Iterator[Pod]:
    """The pods the ReplicaSets and the bare Pods of ``objects`` stand for (unbound)."""
    for rs in replicasets:
        base = _template_pod(
            rs.spec.template,
            namespace=rs.namespace,
            name=rs.name,
            owner=rs.metadata.uid or _plan_uid(rs.namespace, rs.name),
        )
        for index in range(rs.spec.replicas):
            yield base.model_copy(
                update={
                    "metadata": base.metadata.model_copy(update={"name": f"{rs.name}-{index + 1}"})
                }
            )
    for obj in objects:
        if isinstance(obj, Pod):
            yield obj


def _template_pod(template: PodTemplateSpec, *, namespace: str, name: str, owner: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(
            name=name,
            namespace=namespace,
            labels=dict(template.metadata.labels),
            owner_references=[
                OwnerReference(
                    api_version="apps/v1", kind="ReplicaSet", name=name, uid=owner, controller=True
                )
            ],
        ),
        spec=template.spec,
    )


def rolling_steps(
    *, new: int, old: int, replicas: int, max_surge: int, max_unavailable: int
) -> list[RolloutStep]:
    """The (new, old) pod counts after each scale of a rolling update, new pods assumed
    available as soon as they start (the controller waits for that between steps)."""
    if max_surge == 0 and max_unavailable == 0:
        max_unavailable = 1  # Kubernetes' rule: a rollout must be able to move
    steps = [RolloutStep(new, old)]
    for _ in range(_MAX_STEPS):
        if new == replicas and old == 0:
            break
        moved = False
        if new < replicas:
            up = min(replicas + max_surge - (new + old), replicas - new)
            if up > 0:
                new += up
                moved = True
                steps.append(RolloutStep(new, old))
        elif new > replicas:
            new = replicas
            moved = True
            steps.append(RolloutStep(new, old))
        down = min(old, new + old - (replicas - max_unavailable))
        if down > 0:
            old -= down
            moved = True
            steps.append(RolloutStep(new, old))
        if not moved:
            break
    return steps


def predict(
    base: Sequence[KubeObject],
    head: Sequence[KubeObject],
    *,
    pods: Sequence[Pod],
    replicasets: Sequence[ReplicaSet],
) -> WorkloadChanges:
    """Rollouts, pods to start (unbound, for the scheduler) and pods to stop, for every
    workload object that differs between ``base`` and ``head``, against the observed ``pods``
    and ``replicasets``."""
    by_owner: dict[str, list[Pod]] = defaultdict(list)
    for pod in pods:
        uid = _controller_uid(pod)
        if uid is not None:
            by_owner[uid].append(pod)
    pods_by_key = {(p.namespace, p.name): p for p in pods}
    rollouts: list[Rollout] = []
    starts: list[PodInfo] = []
    stops: list[PodStop] = []
    owners: dict[str, ObjectKey] = {}
    for key, before, after in changed_objects(base, head, _WORKLOAD_KINDS):
        if key.kind == "Deployment":
            rollout, started, stopped = _deployment(
                key, before, after, replicasets=replicasets, by_owner=by_owner
            )
            rollouts.append(rollout)
        elif key.kind == "ReplicaSet":
            started, stopped = _replicaset(key, after, replicasets=replicasets, by_owner=by_owner)
        else:
            started, stopped = _pod(key, after, pods_by_key)
        starts.extend(started)
        stops.extend(stopped)
        owners.update((str(pod.key), key) for pod in started)
    return WorkloadChanges(tuple(rollouts), tuple(starts), tuple(stops), owners)


def changed_objects(
    base: Sequence[KubeObject], head: Sequence[KubeObject], kinds: Iterable[str]
) -> Iterator[tuple[ObjectKey, KubeObject | None, KubeObject | None]]:
    """(key, before, after) for each object of ``kinds`` added, changed or removed, by key."""
    wanted = frozenset(kinds)
    base_by = {o.key: o for o in base if o.kind in wanted}
    head_by = {o.key: o for o in head if o.kind in wanted}
    for key in sorted(set(base_by) | set(head_by)):
        before, after = base_by.get(key), head_by.get(key)
        if before is None or after is None or diff_objects(before, after):
            yield key, before, after


def _stop(pods: Iterable[Pod]) -> list[PodStop]:
    return [
        PodStop(str(pod_key(p.namespace, p.name)), p.spec.node_name)
        for p in sorted(pods, key=lambda p: p.name)
    ]


def _new_pods(
    template_pod: Pod, *, rs_name: str, owner: str, count: int, first: int = 1
) -> list[PodInfo]:
    info = dataclasses.replace(pod_info(template_pod), owner=owner)
    return [
        dataclasses.replace(info, key=PodKey(f"{template_pod.namespace}/{rs_name}-new{i}"))
        for i in range(first, first + count)
    ]


def _deployment(
    key: ObjectKey,
    before: KubeObject | None,
    after: KubeObject | None,
    *,
    replicasets: Sequence[ReplicaSet],
    by_owner: Mapping[str, list[Pod]],
) -> tuple[Rollout, list[PodInfo], list[PodStop]]:
    owned = [
        rs
        for rs in replicasets
        if rs.namespace == key.namespace
        and any(
            ref.controller and ref.kind == "Deployment" and ref.name == key.name
            for ref in rs.metadata.owner_references
        )
    ]
    current = [p for rs in owned for p in by_owner.get(rs.metadata.uid or "", [])]
    if not isinstance(after, Deployment):
        return (
            Rollout(
                key,
                "delete",
                replicas_before=len(current),
                scaled_down=tuple(rs.name for rs in owned),
            ),
            [],
            _stop(current),
        )
    template_hash = pod_template_hash(after.spec.template)
    rs_name = f"{after.name}-{template_hash}"
    match = next(
        (
            rs
            for rs in owned
            if rs.name == rs_name
            or rs.metadata.labels.get(HASH_LABEL) == template_hash
            or pod_template_hash(rs.spec.template) == template_hash
        ),
        None,
    )
    others = [rs for rs in owned if rs is not match]
    match_pods = sorted(
        by_owner.get(match.metadata.uid or "", []) if match else [], key=lambda p: p.name
    )
    other_pods = [p for rs in others for p in by_owner.get(rs.metadata.uid or "", [])]
    replicas = after.spec.replicas
    action: RolloutAction
    if match is None:
        action = "create" if before is None and not owned else "new-replicaset"
    elif other_pods:
        action = "reuse"
    else:
        action = "scale" if len(match_pods) != replicas else "none"
    strategy = after.spec.strategy
    rolling = strategy.rolling_update
    surge = resolve_int_or_percent(rolling.max_surge, replicas, round_up=True) if rolling else 0
    unavailable = (
        resolve_int_or_percent(rolling.max_unavailable, replicas, round_up=False) if rolling else 0
    )
    if strategy.type == "Recreate":
        steps = [RolloutStep(len(match_pods), len(other_pods))]
        if other_pods:
            steps.append(RolloutStep(len(match_pods), 0))
        if len(match_pods) != replicas:
            steps.append(RolloutStep(replicas, 0))
    else:
        steps = rolling_steps(
            new=len(match_pods),
            old=len(other_pods),
            replicas=replicas,
            max_surge=surge,
            max_unavailable=unavailable,
        )
    owner = (
        match.metadata.uid
        if match is not None and match.metadata.uid
        else _plan_uid(key.namespace, rs_name)
    )
    template_pod = _template_pod(
        after.spec.template, namespace=key.namespace, name=rs_name, owner=owner
    )
    started = _new_pods(
        template_pod, rs_name=rs_name, owner=owner, count=max(replicas - len(match_pods), 0)
    )
    stopped = _stop(other_pods) + _stop(match_pods[replicas:])
    rollout = Rollout(
        deployment=key,
        action=action,
        replica_set=rs_name,
        template_hash=template_hash,
        reused_revision=revision_of(match) if action == "reuse" and match else None,
        replicas_before=len(current),
        replicas_after=replicas,
        strategy=strategy.type,
        max_surge=surge,
        max_unavailable=unavailable,
        steps=tuple(steps),
        scaled_down=tuple(
            rs.name for rs in others if by_owner.get(rs.metadata.uid or "") or rs.spec.replicas
        ),
    )
    return rollout, started, stopped


def _replicaset(
    key: ObjectKey,
    after: KubeObject | None,
    *,
    replicasets: Sequence[ReplicaSet],
    by_owner: Mapping[str, list[Pod]],
) -> tuple[list[PodInfo], list[PodStop]]:
    live = next(
        (rs for rs in replicasets if rs.namespace == key.namespace and rs.name == key.name), None
    )
    current = sorted(
        by_owner.get(live.metadata.uid or "", []) if live else [], key=lambda p: p.name
    )
    if not isinstance(after, ReplicaSet):
        return [], _stop(current)
    owner = (live.metadata.uid if live is not None else None) or _plan_uid(key.namespace, key.name)
    template_pod = _template_pod(
        after.spec.template, namespace=key.namespace, name=key.name, owner=owner
    )
    # A ReplicaSet never replaces running pods for a new template: only the count changes.
    started = _new_pods(
        template_pod,
        rs_name=key.name,
        owner=owner,
        count=max(after.spec.replicas - len(current), 0),
    )
    return started, _stop(current[after.spec.replicas :])


def _pod(
    key: ObjectKey, after: KubeObject | None, pods_by_key: Mapping[tuple[str, str], Pod]
) -> tuple[list[PodInfo], list[PodStop]]:
    live = pods_by_key.get((key.namespace, key.name))
    stopped = _stop([live]) if live is not None else []
    if not isinstance(after, Pod):
        return [], stopped
    # A changed pod is replaced (its spec cannot change in place).
    return [pod_info(after)], stopped
