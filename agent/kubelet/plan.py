"""The kubelet's decision: desired pods + observed containers + the clock → actions.

A pure function (no Docker, no disk, no time source of its own), called by the sync loop
on every pass and tested with plain data. Level-triggered: it never asks what changed, only
what is and what should be. Each action says why; a :class:`Wait` is the explicit no-op
("back-off 20s restarting failed container") that status and timers read.

Per pod the actions are ordered (stop before replace, sandbox before containers); different
pods are independent and the executor runs them in parallel.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.kubelet.backoff import CrashLoopBackoff
from agent.kubelet.podspec import DesiredPod
from agent.kubelet.restarts import SeenAttempt
from agent.runtime.facts import ContainerID, ObservedContainer, PodUID
from schemas.pod import Container, LifecycleHandler

# The sandbox holds nothing but a sleeping process; a short grace is plenty.
SANDBOX_GRACE_S = 2


@dataclass(frozen=True)
class CreateSandbox:
    pod_uid: PodUID
    attempt: int
    backoff_step: int
    reason: str


@dataclass(frozen=True)
class StartContainer:
    """Start ``container`` as attempt ``attempt``; ``sandbox_id`` None means the one created
    earlier in the same action list."""

    pod_uid: PodUID
    container: str
    attempt: int
    backoff_step: int
    sandbox_id: ContainerID | None
    reason: str


@dataclass(frozen=True)
class StopContainer:
    """Stop gracefully; ``remove`` also deletes it (otherwise it stays as the last attempt).

    ``spec`` is the container's spec when the agent knows it: its ``preStop`` hook runs first,
    inside the grace period (network hooks in the sandbox ``sandbox_pid``'s namespace).
    """

    pod_uid: PodUID
    container_id: ContainerID
    container: str
    grace_seconds: int
    remove: bool
    reason: str
    spec: Container | None = None
    sandbox_pid: int = 0

    @property
    def pre_stop(self) -> LifecycleHandler | None:
        if self.spec is None or self.spec.lifecycle is None:
            return None
        return self.spec.lifecycle.pre_stop


@dataclass(frozen=True)
class RemovePodDir:
    pod_uid: PodUID
    reason: str


@dataclass(frozen=True)
class Wait:
    """Deliberately nothing for ``container`` until ``until`` (None: until something changes)."""

    pod_uid: PodUID
    container: str
    until: float | None
    waiting_reason: str
    reason: str


Action = CreateSandbox | StartContainer | StopContainer | RemovePodDir | Wait


@dataclass(frozen=True)
class ImagePullFailure:
    """The executor's record of failed pulls of ``image`` for one container (consecutive)."""

    image: str
    reason: str
    message: str
    failed_at: float
    failures: int


@dataclass(frozen=True)
class ConfigFailure:
    """The executor's record of a start it refused before Docker saw it (consecutive), for
    one spec of one container: ``runAsNonRoot`` against a root user, a ``subPath`` that
    leaves its volume. Reported as CreateContainerConfigError and retried after back-off."""

    spec_hash: str
    message: str
    failed_at: float
    failures: int


@dataclass(frozen=True)
class PlanInputs:
    """Everything besides desired and observed that the decision depends on."""

    now: float
    backoff: CrashLoopBackoff = field(default_factory=CrashLoopBackoff)
    liveness_failures: frozenset[ContainerID] = frozenset()
    image_failures: Mapping[tuple[PodUID, str], ImagePullFailure] = field(default_factory=dict)
    config_failures: Mapping[tuple[PodUID, str], ConfigFailure] = field(default_factory=dict)
    pod_dirs: frozenset[PodUID] = frozenset()
    departed: Mapping[PodUID, DesiredPod] = field(default_factory=dict)
    """Pods that left the desired set, remembered so their containers' preStop hooks run."""
    removed: Mapping[tuple[PodUID, str], SeenAttempt] = field(default_factory=dict)
    """Containers whose latest attempt was removed from under the agent (`RestartLedger`)."""


def _by_attempt(containers: Sequence[ObservedContainer]) -> list[ObservedContainer]:
    return sorted(containers, key=lambda c: (c.attempt, c.created_at or 0.0))


def _failed_at(record: ObservedContainer, now: float) -> float:
    # Docker's stamp, never later than now: it failed before we looked, and a clock stepped
    # back since (or seen differently by dockerd) must not stretch the back-off by the step.
    return min(record.finished_at or record.created_at or now, now)


def _ran_for(record: ObservedContainer) -> float:
    if record.started_at is None or record.finished_at is None:
        return 0.0
    return max(0.0, record.finished_at - record.started_at)


def _sandbox_pid(containers: Sequence[ObservedContainer]) -> int:
    return next((c.pid for c in containers if c.is_sandbox and c.running), 0)


def _spec(d: DesiredPod | None, name: str) -> Container | None:
    return None if d is None else d.pod.spec.container(name)


def _teardown(
    uid: PodUID,
    containers: Sequence[ObservedContainer],
    *,
    grace: int | None,
    reason: str,
    pod: DesiredPod | None = None,
    sandbox_pid: int = 0,
) -> list[Action]:
    """Stop and remove a pod's containers: apps first, the sandbox last."""
    actions: list[Action] = []
    apps = [c for c in containers if not c.is_sandbox]
    sandboxes = [c for c in containers if c.is_sandbox]
    pid = sandbox_pid or _sandbox_pid(containers)
    for c in apps:
        actions.append(
            StopContainer(
                pod_uid=uid,
                container_id=c.id,
                container=c.container,
                grace_seconds=c.grace_seconds if grace is None else grace,
                remove=True,
                reason=reason,
                spec=_spec(pod, c.container) if c.running else None,
                sandbox_pid=pid,
            )
        )
    for c in sandboxes:
        actions.append(
            StopContainer(
                pod_uid=uid,
                container_id=c.id,
                container=c.container,
                grace_seconds=SANDBOX_GRACE_S,
                remove=True,
                reason=reason,
            )
        )
    return actions


def _start_or_wait(
    d: DesiredPod,
    name: str,
    *,
    attempt: int,
    step: int,
    sandbox_id: ContainerID | None,
    reason: str,
    inputs: PlanInputs,
) -> Action:
    refused = inputs.config_failures.get((d.uid, name))
    if refused is not None and refused.spec_hash == d.container_hashes[name]:
        until = refused.failed_at + inputs.backoff.delay(refused.failures)
        if inputs.now < until:
            return Wait(
                pod_uid=d.uid,
                container=name,
                until=until,
                waiting_reason="CreateContainerConfigError",
                reason=refused.message,
            )
    image = next(c.image for c in d.pod.spec.containers if c.name == name)
    failure = inputs.image_failures.get((d.uid, name))
    if failure is not None and failure.image == image:
        until = failure.failed_at + inputs.backoff.delay(failure.failures)
        if inputs.now < until:
            waiting = "ErrImagePull" if failure.failures <= 1 else "ImagePullBackOff"
            if failure.reason == "ErrImageNeverPull":
                waiting = failure.reason
            return Wait(
                pod_uid=d.uid,
                container=name,
                until=until,
                waiting_reason=waiting,
                reason=f'Back-off pulling image "{image}": {failure.message}',
            )
    return StartContainer(
        pod_uid=d.uid,
        container=name,
        attempt=attempt,
        backoff_step=step,
        sandbox_id=sandbox_id,
        reason=reason,
    )


def _plan_container(
    d: DesiredPod,
    name: str,
    records: list[ObservedContainer],
    *,
    sandbox_id: ContainerID | None,
    sandbox_restarting: bool,
    sandbox_pid: int,
    inputs: PlanInputs,
) -> list[Action]:
    actions: list[Action] = []
    spec_hash = d.container_hashes[name]
    latest = records[-1] if records else None
    # The attempt before the latest stays (stopped) as the pod's lastState; older ones go.
    previous = records[-2] if len(records) > 1 else None
    stale = records[:-2] + ([previous] if previous is not None and previous.running else [])
    for old in stale:
        actions.append(
            StopContainer(
                pod_uid=d.uid,
                container_id=old.id,
                container=name,
                grace_seconds=d.grace_seconds,
                remove=True,
                reason=f"superseded by attempt {latest.attempt if latest else 0}",
            )
        )
    keeps_running = (
        latest is not None
        and latest.running
        and latest.spec_hash == spec_hash
        and not sandbox_restarting
    )
    # As in Kubernetes, a ConfigMap or Secret that went away (pruned by a later commit
    # while a rollout still runs this pod) stops only new starts: the running container
    # keeps its files and its readiness.
    if name in d.config_errors and not keeps_running:
        return [
            *actions,
            Wait(
                pod_uid=d.uid,
                container=name,
                until=None,
                waiting_reason="CreateContainerConfigError",
                reason=d.config_errors[name],
            ),
        ]

    def start(attempt: int, step: int, reason: str) -> Action:
        return _start_or_wait(
            d,
            name,
            attempt=attempt,
            step=step,
            sandbox_id=sandbox_id,
            reason=reason,
            inputs=inputs,
        )

    gone = inputs.removed.get((d.uid, name))
    if gone is not None and (latest is None or latest.attempt < gone.attempt):
        # Removed from under us (docker rm -f): a restart like any other exit, counted.
        if d.restart_policy == "Never":
            return actions
        return [
            *actions,
            start(gone.attempt + 1, 0, f"attempt {gone.attempt} was removed outside the agent"),
        ]
    if latest is None:
        return [*actions, start(0, 0, "container has not run yet")]
    if latest.running:
        if sandbox_restarting:
            # The teardown of the old sandbox stops it; it comes back in the new one.
            return [*actions, start(latest.attempt + 1, 0, "pod sandbox was recreated")]
        if latest.spec_hash != spec_hash:
            stop = StopContainer(
                pod_uid=d.uid,
                container_id=latest.id,
                container=name,
                grace_seconds=d.grace_seconds,
                remove=False,
                reason=f"spec changed ({latest.spec_hash} -> {spec_hash})",
                spec=_spec(d, name),
                sandbox_pid=sandbox_pid,
            )
            return [*actions, stop, start(latest.attempt + 1, 0, "spec changed")]
        if latest.id in inputs.liveness_failures:
            # Only kill: the restart follows the restart policy and back-off like any exit.
            return [
                *actions,
                StopContainer(
                    pod_uid=d.uid,
                    container_id=latest.id,
                    container=name,
                    grace_seconds=d.grace_seconds,
                    remove=False,
                    reason="liveness probe failed",
                    spec=_spec(d, name),
                    sandbox_pid=sandbox_pid,
                ),
            ]
        return actions
    # Exited, dead, or created but never started (a start failure): a finished attempt.
    failed = latest.state == "created" or latest.exit_code != 0
    policy = d.restart_policy
    if policy == "Never" or (policy == "OnFailure" and not failed):
        return actions
    if latest.spec_hash != spec_hash:
        return [*actions, start(latest.attempt + 1, 0, "spec changed while not running")]
    step = inputs.backoff.next_step(latest.backoff_step, ran_for_s=_ran_for(latest))
    delay = inputs.backoff.restart_delay(step)
    until = _failed_at(latest, inputs.now) + delay
    if inputs.now < until:
        return [
            *actions,
            Wait(
                pod_uid=d.uid,
                container=name,
                until=until,
                waiting_reason="CrashLoopBackOff",
                reason=(
                    f"back-off {delay:g}s restarting failed container={name} "
                    f"pod={d.name}_{d.namespace}({d.uid})"
                ),
            ),
        ]
    code = "start failure" if latest.state == "created" else f"exit code {latest.exit_code}"
    return [*actions, start(latest.attempt + 1, step, f"restartPolicy {policy} after {code}")]


def _plan_sandbox(
    d: DesiredPod, sandboxes: list[ObservedContainer], *, inputs: PlanInputs
) -> tuple[ContainerID | None, list[Action], Wait | None]:
    extra: list[Action]
    """(id of a usable sandbox or None, actions to make one, or a Wait while backing off)."""
    current = sandboxes[-1] if sandboxes else None
    if current is not None and current.running and current.spec_hash == d.sandbox_hash:
        extra = [
            StopContainer(
                pod_uid=d.uid,
                container_id=old.id,
                container=old.container,
                grace_seconds=SANDBOX_GRACE_S,
                remove=True,
                reason="superseded sandbox",
            )
            for old in sandboxes[:-1]
        ]
        return current.id, extra, None
    step = 0
    if current is not None and not current.running and current.spec_hash == d.sandbox_hash:
        step = inputs.backoff.next_step(current.backoff_step, ran_for_s=_ran_for(current))
        until = _failed_at(current, inputs.now) + inputs.backoff.delay(step)
        if inputs.now < until:
            return (
                None,
                [],
                Wait(
                    pod_uid=d.uid,
                    container=current.container,
                    until=until,
                    waiting_reason="CreatePodSandboxError",
                    reason=current.error or f"pod sandbox exited with code {current.exit_code}",
                ),
            )
    reason = (
        "pod has no sandbox"
        if current is None
        else (
            "sandbox spec changed"
            if current.spec_hash != d.sandbox_hash
            else "sandbox is not running"
        )
    )
    return (
        None,
        [
            CreateSandbox(
                pod_uid=d.uid,
                attempt=current.attempt + 1 if current else 0,
                backoff_step=step,
                reason=reason,
            )
        ],
        None,
    )


def plan_pod(
    d: DesiredPod, containers: Sequence[ObservedContainer], *, inputs: PlanInputs
) -> list[Action]:
    """The actions that bring one desired pod's containers to its spec."""
    if d.refused is not None:
        if containers:
            return _teardown(d.uid, containers, grace=d.grace_seconds, reason=d.refused, pod=d)
        return []
    sandboxes = _by_attempt([c for c in containers if c.is_sandbox])
    apps: dict[str, list[ObservedContainer]] = defaultdict(list)
    for c in containers:
        if not c.is_sandbox:
            apps[c.container].append(c)
    actions: list[Action] = []
    for name in sorted(set(apps) - set(d.container_hashes)):
        actions += _teardown(
            d.uid,
            apps.pop(name),
            grace=d.grace_seconds,
            reason=f"container {name} is no longer in the pod spec",
        )
    sandbox_pid = _sandbox_pid(sandboxes)
    sandbox_id, sandbox_actions, wait = _plan_sandbox(d, sandboxes, inputs=inputs)
    if wait is not None:
        return [*actions, wait]
    restarting = sandbox_id is None
    if restarting:
        # Everything attached to the old sandbox goes first, then the new sandbox comes up.
        running = [c for records in apps.values() for c in records if c.running]
        actions += _teardown(
            d.uid,
            running + sandboxes,
            grace=d.grace_seconds,
            reason="pod sandbox is being recreated",
            pod=d,
            sandbox_pid=sandbox_pid,
        )
    actions += sandbox_actions
    for container in d.pod.spec.containers:
        records = _by_attempt(apps.get(container.name, []))
        actions += _plan_container(
            d,
            container.name,
            records,
            sandbox_id=sandbox_id,
            sandbox_restarting=restarting,
            sandbox_pid=sandbox_pid,
            inputs=inputs,
        )
    return actions


def plan_node(
    desired: Sequence[DesiredPod], observed: Sequence[ObservedContainer], *, inputs: PlanInputs
) -> list[Action]:
    """All actions for the node: desired pods converge, orphans (owned by us) go.

    ``observed`` must already be limited to containers this node's agent owns; foreign
    containers never reach the planner.
    """
    by_pod: dict[PodUID, list[ObservedContainer]] = defaultdict(list)
    for c in observed:
        by_pod[c.pod_uid].append(c)
    actions: list[Action] = []
    wanted = {d.uid for d in desired}
    for d in desired:
        actions += plan_pod(d, by_pod.get(d.uid, []), inputs=inputs)
    for uid in sorted(set(by_pod) - wanted):
        actions += _teardown(
            uid,
            by_pod[uid],
            grace=None,
            reason="pod is not in the desired set",
            pod=inputs.departed.get(uid),
        )
    for uid in sorted(inputs.pod_dirs - wanted):
        actions.append(RemovePodDir(pod_uid=uid, reason="pod is not in the desired set"))
    return actions
