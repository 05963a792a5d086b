"""Startup, liveness and readiness probes for the running containers of desired pods.

Driven by the sync loop: after each pass it hands :meth:`Prober.track` the running app
containers, and one asyncio task per container probes them on the spec's schedule. Verdicts
feed back as data: :meth:`Prober.view` (started/ready, for status) and
:meth:`Prober.liveness_failures` (for the planner, which kills the container). The prober
never touches a container itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from agent.kubelet._grpcprobe import probe_grpc
from agent.kubelet._netprobe import NetTarget, ProbeOutcome, probe_http, probe_tcp
from agent.kubelet.status import ProbeView
from agent.runtime import ContainerRuntime, RuntimeFailure
from agent.runtime.facts import ContainerID, PortBinding
from schemas.pod import Container, Probe

ProbeKind = Literal["startup", "liveness", "readiness"]


@dataclass(frozen=True)
class ProbeTarget:
    """A running app container and where its pod's network namespace is."""

    container_id: ContainerID
    spec: Container
    sandbox_pid: int
    started_at: float
    host_ports: tuple[PortBinding, ...] = ()


@dataclass
class _State:
    started: bool
    ready: bool
    live_failed: bool = False
    last_message: dict[str, str] = field(default_factory=dict)


class Prober:
    """Runs the probes of every tracked container; reports verdicts, never acts on them."""

    def __init__(
        self,
        *,
        runtime: ContainerRuntime,
        on_change: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._runtime = runtime
        self._on_change = on_change
        self._clock = clock
        self._tasks: dict[ContainerID, asyncio.Task[None]] = {}
        self._states: dict[ContainerID, _State] = {}

    def view(self, container_id: ContainerID) -> ProbeView | None:
        state = self._states.get(container_id)
        return None if state is None else ProbeView(started=state.started, ready=state.ready)

    def liveness_failures(self) -> frozenset[ContainerID]:
        return frozenset(cid for cid, s in self._states.items() if s.live_failed)

    def track(self, targets: list[ProbeTarget]) -> None:
        """Probe exactly these containers from now on (idempotent; untracked ones stop)."""
        wanted = {t.container_id: t for t in targets}
        for cid in list(self._tasks):
            if cid not in wanted:
                self._tasks.pop(cid).cancel()
                self._states.pop(cid, None)
        for cid, target in wanted.items():
            if cid in self._tasks:
                continue
            spec = target.spec
            self._states[cid] = _State(
                started=spec.startup_probe is None, ready=spec.readiness_probe is None
            )
            self._tasks[cid] = asyncio.get_running_loop().create_task(
                self._run(target), name=f"probe-{cid[:12]}"
            )

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, target: ProbeTarget) -> None:
        spec = target.spec
        if spec.startup_probe is not None and not await self._loop(
            target, spec.startup_probe, "startup"
        ):
            return
        kinds: tuple[tuple[ProbeKind, Probe | None], ...] = (
            ("liveness", spec.liveness_probe),
            ("readiness", spec.readiness_probe),
        )
        loops = [self._loop(target, probe, kind) for kind, probe in kinds if probe is not None]
        if loops:
            await asyncio.gather(*loops)

    async def _loop(self, target: ProbeTarget, probe: Probe, kind: ProbeKind) -> bool:
        """Probe until the verdict is final (startup/liveness) or forever (readiness)."""
        state = self._states[target.container_id]
        # Never longer than the delay itself: ``started_at`` is Docker's stamp, and a clock
        # stepped back since (NTP) or one the agent sees differently from dockerd would
        # otherwise hold the first probe, and the pod's readiness, for the difference.
        first = min(
            target.started_at + probe.initial_delay_seconds - self._clock(),
            probe.initial_delay_seconds,
        )
        if first > 0:
            await asyncio.sleep(first)
        successes = failures = 0
        while True:
            outcome = await self._probe_once(target, probe)
            state.last_message[kind] = outcome.message
            if outcome.success:
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
            if kind == "startup" and outcome.success:
                state.started = True
                self._on_change()
                return True
            if kind in ("startup", "liveness") and failures >= probe.failure_threshold:
                state.live_failed = True
                self._on_change()
                return False
            if kind == "readiness":
                if not state.ready and successes >= probe.success_threshold:
                    state.ready = True
                    self._on_change()
                elif state.ready and failures >= probe.failure_threshold:
                    state.ready = False
                    self._on_change()
            await asyncio.sleep(probe.period_seconds)

    async def _probe_once(self, target: ProbeTarget, probe: Probe) -> ProbeOutcome:
        timeout = float(probe.timeout_seconds)
        if probe.exec_ is not None:
            argv = list(probe.exec_.command)
            try:
                result = await asyncio.wait_for(
                    asyncio.to_thread(self._runtime.exec, target.container_id, argv), timeout
                )
            except TimeoutError:
                return ProbeOutcome(False, f"command timed out after {timeout:g}s")
            except RuntimeFailure as exc:
                return ProbeOutcome(False, str(exc))
            return ProbeOutcome(result.exit_code == 0, f"exit code {result.exit_code}")
        port_ref = probe.port
        port = target.spec.port_number(port_ref) if port_ref is not None else None
        if port is None:
            return ProbeOutcome(False, f"probe port {port_ref!r} is not a port of the container")
        fallback = next(
            (
                (b.host_ip, b.host_port)
                for b in target.host_ports
                if b.container_port == port and b.protocol == "tcp" and b.host_port
            ),
            None,
        )
        net = NetTarget(sandbox_pid=target.sandbox_pid, port=port, fallback=fallback)
        if probe.http_get is not None:
            headers = tuple((h.name, h.value) for h in probe.http_get.http_headers)
            return await asyncio.to_thread(
                probe_http, net, path=probe.http_get.path, timeout_s=timeout, headers=headers
            )
        if probe.grpc is not None:
            return await asyncio.to_thread(
                probe_grpc, net, service=probe.grpc.service, timeout_s=timeout
            )
        return await asyncio.to_thread(probe_tcp, net, timeout_s=timeout)
