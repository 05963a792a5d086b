"""Pod status from facts: what the agent reports for each desired pod.

A pure function called by the sync loop after each pass: the observed containers, the
planner's waits (back-off reasons), the prober's verdicts, the attempts removed from under
the agent (:mod:`agent.kubelet.restarts`) and the previous status (to keep condition
transition times) give the Kubernetes-shaped :class:`~schemas.pod.PodStatus`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.kubelet.plan import Wait
from agent.kubelet.podspec import DesiredPod
from agent.kubelet.restarts import SeenAttempt
from agent.runtime.facts import ContainerID, ObservedContainer
from schemas.meta import Condition, ConditionStatus
from schemas.pod import (
    ContainerState,
    ContainerStateRunning,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
    HostPortMapping,
    PodStatus,
)

_PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}


@dataclass(frozen=True)
class ProbeView:
    """The prober's verdict on one running container."""

    started: bool
    ready: bool


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def _starting(record: ObservedContainer) -> bool:
    """Created and not (yet) started, with nothing saying a start failed."""
    return record.state == "created" and not record.error and not record.exit_code


def _terminated(record: ObservedContainer) -> ContainerStateTerminated:
    if record.state == "created":
        return ContainerStateTerminated(
            exit_code=record.exit_code or 128,
            reason="StartError",
            message=record.error or None,
            finished_at=_time(record.created_at),
            container_id=f"docker://{record.id}",
        )
    code = record.exit_code if record.exit_code is not None else -1
    reason = "OOMKilled" if record.oom_killed else "Completed" if code == 0 else "Error"
    return ContainerStateTerminated(
        exit_code=code,
        signal=code - 128 if code > 128 else None,
        reason=reason,
        message=record.error or None,
        started_at=_time(record.started_at),
        finished_at=_time(record.finished_at),
        container_id=f"docker://{record.id}",
    )


def _removed(seen: SeenAttempt) -> ContainerStateTerminated:
    """The last state of an attempt removed from under the agent."""
    if seen.running:
        # As Kubernetes' kubelet reports a container it can no longer find.
        return ContainerStateTerminated(
            exit_code=137,
            reason="ContainerStatusUnknown",
            message="The container could not be located: it was removed outside the agent "
            "while running",
            started_at=_time(seen.started_at),
            container_id=f"docker://{seen.container_id}",
        )
    code = seen.exit_code if seen.exit_code is not None else -1
    return ContainerStateTerminated(
        exit_code=code,
        reason=seen.reason or "Error",
        message="The container was removed outside the agent after it exited",
        started_at=_time(seen.started_at),
        finished_at=_time(seen.finished_at),
        container_id=f"docker://{seen.container_id}",
    )


def _container_status(
    name: str,
    image: str,
    records: Sequence[ObservedContainer],
    *,
    wait: Wait | None,
    probe: ProbeView | None,
    removed: SeenAttempt | None = None,
) -> ContainerStatus:
    latest = records[-1] if records else None
    previous = records[-2] if len(records) > 1 else None
    last_state = ContainerState(terminated=_terminated(previous)) if previous else ContainerState()
    if removed is not None and (latest is None or latest.attempt < removed.attempt):
        # The latest attempt was removed; the next one is on its way. Counted as a restart.
        waiting = ContainerStateWaiting(
            reason=wait.waiting_reason if wait else "ContainerCreating",
            message=wait.reason if wait else None,
        )
        return ContainerStatus(
            name=name,
            image=image,
            state=ContainerState(waiting=waiting),
            last_state=ContainerState(terminated=_removed(removed)),
            restart_count=removed.attempt + 1,
            started=False,
        )
    if (
        removed is not None
        and latest is not None
        and removed.attempt == latest.attempt - 1
        and (previous is None or previous.attempt < removed.attempt)
    ):
        last_state = ContainerState(terminated=_removed(removed))
    if latest is None:
        waiting = ContainerStateWaiting(
            reason=wait.waiting_reason if wait else "ContainerCreating",
            message=wait.reason if wait else None,
        )
        return ContainerStatus(
            name=name,
            image=image,
            state=ContainerState(waiting=waiting),
            last_state=last_state,
            started=False,
        )
    ident = f"docker://{latest.id}"
    # The image the container actually runs: during a replacement it is still the old one.
    image = latest.image or image
    if latest.running:
        view = probe or ProbeView(started=True, ready=True)
        return ContainerStatus(
            name=name,
            image=image,
            restart_count=latest.attempt,
            container_id=ident,
            state=ContainerState(
                running=ContainerStateRunning(started_at=_time(latest.started_at))
            ),
            last_state=last_state,
            ready=view.started and view.ready,
            started=view.started,
        )
    if wait is not None:
        return ContainerStatus(
            name=name,
            image=image,
            restart_count=latest.attempt,
            container_id=ident,
            state=ContainerState(
                waiting=ContainerStateWaiting(reason=wait.waiting_reason, message=wait.reason)
            ),
            last_state=ContainerState(terminated=_terminated(latest)),
            started=False,
        )
    return ContainerStatus(
        name=name,
        image=image,
        restart_count=latest.attempt,
        container_id=ident,
        state=ContainerState(terminated=_terminated(latest)),
        last_state=last_state,
        started=False,
    )


def _condition(
    kind: str,
    ok: bool,
    *,
    previous: PodStatus | None,
    now: datetime,
    reason: str | None = None,
) -> Condition:
    status: ConditionStatus = "True" if ok else "False"
    before = previous.condition(kind) if previous else None
    since = before.last_transition_time if before and before.status == status else now
    return Condition(type=kind, status=status, reason=reason, last_transition_time=since)


def _phase(d: DesiredPod, statuses: Sequence[ContainerStatus]) -> str:
    if any(s.state.running for s in statuses):
        return "Running"
    finished = [s.state.terminated for s in statuses]
    if statuses and all(t is not None for t in finished):
        codes = [t.exit_code for t in finished if t is not None]
        if all(code == 0 for code in codes) and d.restart_policy != "Always":
            return "Succeeded"
        if d.restart_policy == "Never":
            return "Failed"
    return "Pending"


def pod_status(
    d: DesiredPod,
    containers: Sequence[ObservedContainer],
    *,
    waits: Mapping[str, Wait],
    probes: Mapping[ContainerID, ProbeView],
    host_ip: str,
    previous: PodStatus | None,
    now: float,
    removed: Mapping[str, SeenAttempt] | None = None,
    acting: bool = False,
) -> PodStatus:
    """The status of desired pod ``d`` given its observed containers (any attempts) and, by
    container name, the attempts removed from under the agent.

    ``acting`` says a worker of the pod was acting when the containers were listed: a
    container it has created but not yet started (``created``, no error, no exit code) is
    on its way, not a start failure, so it is left out and the container reads as waiting.
    Without a worker such a container is a start that failed or was cut short, and reads as
    ``StartError``."""
    now_dt = _time(now) or datetime.now(tz=UTC)
    if acting:
        containers = [c for c in containers if not _starting(c)]
    if d.refused is not None:
        return PodStatus(
            phase="Failed",
            reason="Refused",
            message=d.refused,
            host_ip=host_ip,
            conditions=[
                _condition("Ready", False, previous=previous, now=now_dt, reason="Refused")
            ],
        )
    sandboxes = sorted((c for c in containers if c.is_sandbox), key=lambda c: c.attempt)
    sandbox = sandboxes[-1] if sandboxes and sandboxes[-1].running else None
    statuses: list[ContainerStatus] = []
    for container in d.pod.spec.containers:
        records = sorted(
            (c for c in containers if c.container == container.name), key=lambda c: c.attempt
        )
        probe = probes.get(records[-1].id) if records else None
        statuses.append(
            _container_status(
                container.name,
                container.image,
                records,
                wait=waits.get(container.name),
                probe=probe,
                removed=(removed or {}).get(container.name),
            )
        )
    ports: list[HostPortMapping] = []
    if sandbox is not None:
        owners = {
            (p.container_port, p.protocol.lower()): c.name
            for c in d.pod.spec.containers
            for p in c.ports
        }
        for binding in sandbox.host_ports:
            owner = owners.get((binding.container_port, binding.protocol))
            if owner is not None and binding.host_port:
                ports.append(
                    HostPortMapping(
                        container_name=owner,
                        container_port=binding.container_port,
                        protocol=_PROTOCOLS[binding.protocol],  # type: ignore[arg-type]
                        host_ip=binding.host_ip or host_ip,
                        host_port=binding.host_port,
                    )
                )
    ready = bool(statuses) and all(s.ready for s in statuses)
    sandbox_wait = waits.get("POD")
    phase = _phase(d, statuses)
    return PodStatus(
        phase=phase,  # type: ignore[arg-type]
        conditions=[
            _condition("PodScheduled", True, previous=previous, now=now_dt),
            _condition("Initialized", True, previous=previous, now=now_dt),
            _condition("ContainersReady", ready, previous=previous, now=now_dt),
            _condition("Ready", ready, previous=previous, now=now_dt),
        ],
        reason=sandbox_wait.waiting_reason if sandbox_wait else None,
        message=sandbox_wait.reason if sandbox_wait else None,
        host_ip=host_ip,
        start_time=_time(sandbox.started_at) if sandbox else None,
        container_statuses=statuses,
        host_ports=ports,
    )


#: The reason pods (and the node) show while the agent cannot reach the container runtime.
RUNTIME_DOWN_REASON = "ContainerRuntimeDown"


def runtime_down_status(previous: PodStatus, *, message: str, now: float) -> PodStatus:
    """``previous`` as it must read while the runtime is unreachable: nothing can be observed,
    so no container is known to be ready (the pod leaves every Service's endpoints at once),
    and ``reason``/``message`` say why. The last known container states stay as they were."""
    now_dt = _time(now) or datetime.now(tz=UTC)
    conditions = [
        _condition(c.type, False, previous=previous, now=now_dt, reason=RUNTIME_DOWN_REASON)
        if c.type in ("ContainersReady", "Ready")
        else c
        for c in previous.conditions
    ]
    return previous.model_copy(
        update={
            "conditions": conditions,
            "reason": RUNTIME_DOWN_REASON,
            "message": message,
            "container_statuses": [
                c.model_copy(update={"ready": False}) for c in previous.container_statuses
            ],
        }
    )
