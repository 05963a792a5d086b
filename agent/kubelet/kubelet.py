"""The pod sync loop: observe, plan, act, report — for as long as the agent runs.

Owned by the agent daemon (:mod:`agent.server`), which hands it each accepted desired set.
Level-triggered: every pass lists the node's containers (facts), asks the pure planner for
actions, and dispatches each pod's actions to its own worker, so a pod stopping for 30 s never
delays another. Passes are triggered by a new desired set, a Docker event, a probe verdict, a
worker finishing, a back-off expiring, or a periodic resync; the trigger never carries data.
Each listing also feeds the restart ledger (:mod:`agent.kubelet.restarts`), so a container
removed from under the agent is restarted as the next attempt and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import assert_never

from agent.kubelet import logs as container_logs
from agent.kubelet import volumes
from agent.kubelet.backoff import CrashLoopBackoff
from agent.kubelet.executor import Executor
from agent.kubelet.plan import (
    Action,
    CreateSandbox,
    PlanInputs,
    RemovePodDir,
    StartContainer,
    StopContainer,
    Wait,
    plan_node,
)
from agent.kubelet.podspec import ConfigIndex, DesiredPod, NodeSettings, desired_pod, with_configs
from agent.kubelet.prober import Prober, ProbeTarget
from agent.kubelet.restarts import RESTARTS_FILE, RestartLedger, SeenAttempt, present
from agent.kubelet.services import NodeServices, published_endpoints
from agent.kubelet.status import ProbeView, pod_status, runtime_down_status
from agent.proxy import Endpoint
from agent.runtime import ContainerRuntime, RuntimeFailure
from agent.runtime.facts import ContainerID, ObservedContainer, PodUID
from schemas.pod import Pod, PodStatus
from schemas.protocol import PodReport, Sync

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KubeletTuning:
    backoff: CrashLoopBackoff = field(default_factory=CrashLoopBackoff)
    resync_s: float = 5.0
    workers: int = 8


@dataclass(frozen=True)
class _StatusInputs:
    """Everything a pod's status is computed from, besides its previous status and the
    clock."""

    desired: DesiredPod
    containers: tuple[ObservedContainer, ...]
    waits: dict[str, Wait]
    probes: dict[ContainerID, ProbeView]
    removed: dict[str, SeenAttempt] | None
    error: str | None
    acting: bool

    def same_as(self, other: _StatusInputs) -> bool:
        # The desired pod by identity: set_desired keeps the object of an unchanged pod.
        return (
            self.desired is other.desired
            and self.containers == other.containers
            and self.waits == other.waits
            and self.probes == other.probes
            and self.removed == other.removed
            and self.error == other.error
            and self.acting == other.acting
        )


class Kubelet:
    """Keeps the node's containers matching the desired set and reports pod status."""

    def __init__(
        self,
        *,
        runtime: ContainerRuntime,
        settings: NodeSettings,
        services: NodeServices,
        tuning: KubeletTuning = KubeletTuning(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._runtime = runtime
        self._settings = settings
        self._services = services
        self._tuning = tuning
        self._clock = clock
        self._pool = ThreadPoolExecutor(
            max_workers=tuning.workers, thread_name_prefix="capstan-docker"
        )
        self._executor = Executor(
            runtime=runtime, settings=settings, pool=self._pool, services=services, clock=clock
        )
        self._wake = asyncio.Event()
        self._desired: list[DesiredPod] = []
        # id of each pod object of the last desired set -> (that object, its DesiredPod).
        self._desired_of: dict[int, tuple[Pod, DesiredPod]] = {}
        self._configs = ConfigIndex()
        self._busy: dict[PodUID, asyncio.Task[None]] = {}
        self._finished_at: dict[PodUID, float] = {}
        self._observed: list[ObservedContainer] = []
        self._statuses: dict[PodUID, PodStatus] = {}
        # The last pod_reports() by uid, reused while a pod's status object is the same.
        self._reports: dict[PodUID, PodReport] = {}
        # What each pod's status was last computed from (see _update_statuses).
        self._status_inputs: dict[PodUID, tuple[_StatusInputs, PodStatus]] = {}
        self._listeners: list[Callable[[], None]] = []
        self._prober = Prober(runtime=runtime, on_change=self.wake, clock=clock)
        self._tasks: list[asyncio.Task[None]] = []
        self._events_stop = threading.Event()
        self._events_stream: object | None = None
        self._synced = asyncio.Event()
        self._waits: dict[PodUID, dict[str, Wait]] = {}
        self._volumes_stale = False
        self._departed: dict[PodUID, DesiredPod] = {}
        self._problem: str | None = None
        self._restarts = RestartLedger(settings.state_dir / RESTARTS_FILE)

    # --- wiring ---------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    @property
    def problem(self) -> str | None:
        """Why the last pass failed (the node is not Ready), or None."""
        return self._problem

    def _set_problem(self, problem: str | None) -> None:
        if problem != self._problem:
            self._problem = problem
            for listener in self._listeners:
                listener()

    def on_status_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def set_desired(self, sync: Sync) -> None:
        """Take ``sync`` as the complete desired set (the server has persisted it)."""
        configs = ConfigIndex.of(sync.config_maps, sync.secrets)
        # A pod object of the last set (the server's decoder hands back the same frozen
        # object for an unchanged pod) keeps its precomputed form while the ConfigMaps and
        # Secrets it may read are unchanged too.
        same_configs = configs == self._configs
        desired_of: dict[int, tuple[Pod, DesiredPod]] = {}
        pods = []
        for pod in sync.pods:
            kept = self._desired_of.get(id(pod))
            if kept is None or kept[0] is not pod:
                kept = (pod, desired_pod(pod, configs=configs, settings=self._settings))
            elif not same_configs:
                kept = (pod, with_configs(kept[1], configs=configs, settings=self._settings))
            desired_of[id(pod)] = kept
            pods.append(kept[1])
        self._desired_of = desired_of
        # Pods that leave are remembered until their containers are gone: the teardown still
        # needs their specs for preStop hooks.
        staying = {d.uid for d in pods}
        for d in self._desired:
            if d.uid not in staying:
                self._departed[d.uid] = d
        for uid in staying:
            self._departed.pop(uid, None)
        if not same_configs:
            self._volumes_stale = True
        self._configs = configs
        self._desired = pods
        self._statuses = {
            d.uid: s for d, s in ((d, self._statuses.get(d.uid)) for d in self._desired) if s
        }
        self.wake()

    def pod_reports(self) -> list[PodReport]:
        """A report per desired pod with a status; the same object as the last call's for
        a pod whose status object is the same (the server compares reports by identity
        first, on every status it sends)."""
        reports: list[PodReport] = []
        kept: dict[PodUID, PodReport] = {}
        for d in self._desired:
            status = self._statuses.get(d.uid)
            if status is None:
                continue
            report = self._reports.get(d.uid)
            if (
                report is None
                or report.status is not status
                or report.name != d.name
                or report.namespace != d.namespace
            ):
                report = PodReport(namespace=d.namespace, name=d.name, uid=d.uid, status=status)
            kept[d.uid] = report
            reports.append(report)
        self._reports = kept
        return reports

    async def wait_synced(self) -> None:
        """Until the first pass has observed the node (tests and status wait on this)."""
        await self._synced.wait()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._run(), name="kubelet-sync"))
        threading.Thread(
            target=self._watch_events, args=(loop,), name="capstan-events", daemon=True
        ).start()

    async def close(self) -> None:
        self._events_stop.set()
        stream = self._events_stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[attr-defined]
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._prober.close()
        # Workers in flight finish their Docker calls; nothing is left half-created on purpose.
        if self._busy:
            await asyncio.gather(*self._busy.values(), return_exceptions=True)
        self._pool.shutdown(wait=True)

    # --- the loop -------------------------------------------------------------------------

    def _watch_events(self, loop: asyncio.AbstractEventLoop) -> None:
        """Thread: turn Docker container events into wake-ups (reconnecting on failure)."""
        while not self._events_stop.is_set():
            try:
                stream = self._runtime.events(self._settings.node_name)
                self._events_stream = stream
                for _event in stream:
                    loop.call_soon_threadsafe(self._wake.set)
                    if self._events_stop.is_set():
                        break
            except Exception as exc:  # the event stream is an optimisation; resync covers it
                _log.debug("docker event stream ended: %s", exc)
            if self._events_stop.wait(1.0):
                return

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._pass(loop)
            except RuntimeFailure as exc:
                self._set_problem(str(exc))
                self._runtime_down(str(exc))
                _log.warning("sync pass failed: %s", exc)
            except Exception as exc:
                self._set_problem(f"sync pass failed: {exc}")
                _log.exception("sync pass failed")
            else:
                self._set_problem(None)
            timeout = self._next_timeout()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    def _runtime_down(self, message: str) -> None:
        """Docker cannot be reached: no pod is known to be ready any more (its containers may
        well be gone, as when dockerd stops), and each pod's status says why."""
        statuses = {
            uid: runtime_down_status(status, message=message, now=self._clock())
            for uid, status in self._statuses.items()
        }
        if statuses != self._statuses:
            self._statuses = statuses
            for listener in self._listeners:
                listener()

    def _next_timeout(self) -> float:
        timeout = self._tuning.resync_s
        now = self._clock()
        for pod_waits in self._waits.values():
            for w in pod_waits.values():
                if w.until is not None:
                    timeout = min(timeout, max(0.01, w.until - now + 0.01))
        return timeout

    async def _pass(self, loop: asyncio.AbstractEventLoop) -> None:
        observed_at = time.monotonic()
        observed, dirs = await loop.run_in_executor(self._pool, self._list_node)
        self._observed = observed
        desired = self._desired
        configs = self._configs
        if self._volumes_stale:
            self._volumes_stale = False
            await self._refresh_config_volumes(loop, desired, observed, configs)

        def finished_since_listing() -> set[PodUID]:
            # Asked again after every await: a worker may finish during one, and then its
            # pod is neither busy nor in a set computed before.
            return {uid for uid, at in self._finished_at.items() if at > observed_at}

        stale = finished_since_listing()
        # A container that vanished while a worker of its pod was acting may be the worker's
        # doing; only for the other pods is it a removal from under the agent.
        acting = set(self._busy) | stale
        self._restarts.observe(
            observed,
            desired={d.uid for d in desired},
            settled=({c.pod_uid for c in observed} | {d.uid for d in desired}) - acting,
        )
        if self._restarts.dirty:
            await loop.run_in_executor(self._pool, self._restarts.save)
        inputs = PlanInputs(
            now=self._clock(),
            backoff=self._tuning.backoff,
            liveness_failures=self._prober.liveness_failures(),
            image_failures=dict(self._executor.memory.image_failures),
            config_failures=dict(self._executor.memory.config_failures),
            pod_dirs=frozenset(PodUID(d) for d in dirs),
            departed=dict(self._departed),
            removed=self._restarts.removed_latest(),
        )
        actions = plan_node(desired, observed, inputs=inputs)
        per_pod: dict[PodUID, list[Action]] = defaultdict(list)
        waits: dict[PodUID, dict[str, Wait]] = defaultdict(dict)
        for action in actions:
            match action:
                case Wait():
                    waits[action.pod_uid][action.container] = action
                case CreateSandbox() | StartContainer() | StopContainer() | RemovePodDir():
                    per_pod[action.pod_uid].append(action)
                case _:
                    assert_never(action)
        self._waits = waits
        by_uid = {d.uid: d for d in desired}
        self._forget(set(by_uid) | {c.pod_uid for c in observed} | set(per_pod))
        sandboxes = {c.pod_uid: c for c in observed if c.is_sandbox and c.state == "running"}
        running_apps = {c.id for c in observed if not c.is_sandbox and c.running}
        for uid, pod_actions in per_pod.items():
            # A pod whose worker is busy, or finished after this pass looked, is planned
            # again on the next pass: acting on a stale view would start duplicates.
            if uid in self._busy or self._finished_at.get(uid, 0.0) > observed_at:
                continue
            stops_running = any(
                isinstance(a, StopContainer) and a.container_id in running_apps for a in pod_actions
            )
            sandbox = sandboxes.get(uid)
            endpoints = published_endpoints(sandbox) if stops_running and sandbox else ()
            self._busy[uid] = loop.create_task(
                self._work(uid, pod_actions, by_uid.get(uid), configs, endpoints),
                name=f"pod-{uid}",
            )
        # Level-triggered like the rest: forwarders and hosts files follow the running
        # sandboxes, which covers pods adopted after an agent restart and removed sandboxes.
        acting |= finished_since_listing()
        await self._services.sync_pods(sandboxes, skip=frozenset(self._busy) | acting)
        self._track_probes(desired, observed)
        self._update_statuses(desired, observed, waits, acting=acting)
        self._synced.set()

    def _list_node(self) -> tuple[list[ObservedContainer], list[str]]:
        """Off the loop, in one trip: the node's containers (less those being removed), then
        its pod directories."""
        observed = present(self._runtime.list_containers(self._settings.node_name))
        return observed, volumes.existing_pod_dirs(self._settings.state_dir)

    def _forget(self, known: set[PodUID]) -> None:
        """Drop bookkeeping of pods that are neither desired nor on the node any more."""
        for uid in set(self._finished_at) - known - set(self._busy):
            del self._finished_at[uid]
        for uid in set(self._departed) - known - set(self._busy):
            del self._departed[uid]
        memory = self._executor.memory
        memory.forget(memory.pods() - known)

    async def _refresh_config_volumes(
        self,
        loop: asyncio.AbstractEventLoop,
        desired: list[DesiredPod],
        observed: list[ObservedContainer],
        configs: ConfigIndex,
    ) -> None:
        """Rewrite ConfigMap/Secret files of running pods after the objects changed.

        As in Kubernetes, mounted files follow the objects; environment variables do not
        (they were fixed when the container started). A pod with a source that is gone
        (``config_errors``) keeps the files it runs with, as the kubelet keeps them when a
        volume update fails.
        """
        running = {c.pod_uid for c in observed if c.is_sandbox and c.running}
        due = [
            d
            for d in desired
            if not d.config_errors
            and d.uid in running
            and d.uid not in self._busy
            and any(v.config_map or v.secret or v.projected for v in d.pod.spec.volumes)
        ]
        if due:
            # One trip to the pool for all of them: a ConfigMap every pod mounts changes 50
            # pods' files at once.
            await loop.run_in_executor(
                self._pool,
                partial(self._materialize_all, due, configs=configs),
            )

    def _materialize_all(self, due: list[DesiredPod], *, configs: ConfigIndex) -> None:
        contents = volumes.VolumeContents(configs)
        for d in due:
            volumes.materialize(
                d, state_dir=self._settings.state_dir, configs=configs, contents=contents
            )

    async def _work(
        self,
        uid: PodUID,
        actions: list[Action],
        desired: DesiredPod | None,
        configs: ConfigIndex,
        endpoints: tuple[Endpoint, ...],
    ) -> None:
        try:
            await self._executor.run_pod(
                uid, actions, desired=desired, configs=configs, endpoints=endpoints
            )
        except Exception:
            _log.exception("pod %s: worker failed", uid)
        finally:
            self._busy.pop(uid, None)
            self._finished_at[uid] = time.monotonic()
            self.wake()

    def _track_probes(self, desired: list[DesiredPod], observed: list[ObservedContainer]) -> None:
        sandboxes = {c.pod_uid: c for c in observed if c.is_sandbox and c.running}
        targets: list[ProbeTarget] = []
        for d in desired:
            sandbox = sandboxes.get(d.uid)
            if sandbox is None or d.refused:
                continue
            specs = {c.name: c for c in d.pod.spec.containers}
            for c in observed:
                spec = specs.get(c.container)
                if c.pod_uid != d.uid or spec is None or c.state != "running":
                    continue
                if not (spec.liveness_probe or spec.readiness_probe or spec.startup_probe):
                    continue
                targets.append(
                    ProbeTarget(
                        container_id=c.id,
                        spec=spec,
                        sandbox_pid=sandbox.pid,
                        started_at=c.started_at or self._clock(),
                        host_ports=sandbox.host_ports,
                    )
                )
        self._prober.track(targets)

    def _update_statuses(
        self,
        desired: list[DesiredPod],
        observed: list[ObservedContainer],
        waits: dict[PodUID, dict[str, Wait]],
        *,
        acting: set[PodUID],
    ) -> None:
        """Recompute every desired pod's status from this pass's listing.

        ``acting`` holds the pods a worker was acting on while the listing was taken: a
        container such a worker created a moment ago is listed as ``created`` before its
        start, and must not read as a failed start (a Job's pod would turn Failed with exit
        code 128)."""
        by_pod: dict[PodUID, list[ObservedContainer]] = defaultdict(list)
        for c in observed:
            by_pod[c.pod_uid].append(c)
        now = self._clock()
        removed: dict[PodUID, dict[str, SeenAttempt]] = defaultdict(dict)
        for (uid, name), seen in self._restarts.removed().items():
            removed[uid][name] = seen
        statuses: dict[PodUID, PodStatus] = {}
        inputs: dict[PodUID, tuple[_StatusInputs, PodStatus]] = {}
        for d in desired:
            containers = by_pod.get(d.uid, [])
            pod_inputs = _StatusInputs(
                desired=d,
                containers=tuple(containers),
                waits=waits.get(d.uid, {}),
                probes={
                    c.id: view for c in containers if (view := self._prober.view(c.id)) is not None
                },
                removed=removed.get(d.uid),
                error=self._executor.memory.pod_errors.get(d.uid),
                acting=d.uid in acting,
            )
            previous = self._statuses.get(d.uid)
            last = self._status_inputs.get(d.uid)
            # The same inputs give the same status (the clock only stamps a condition that
            # changes), so a pod nothing happened to is not computed again on every pass.
            if last is not None and last[1] is previous and last[0].same_as(pod_inputs):
                status = previous
            else:
                status = pod_status(
                    d,
                    containers,
                    waits=pod_inputs.waits,
                    probes=pod_inputs.probes,
                    host_ip=self._settings.bind_address,
                    previous=previous,
                    now=now,
                    removed=pod_inputs.removed,
                    acting=pod_inputs.acting,
                )
                if pod_inputs.error and status.message is None:
                    status = status.model_copy(update={"message": pod_inputs.error})
                if status == previous:
                    status = previous  # so that "changed" below is a check of identity
            statuses[d.uid] = status
            inputs[d.uid] = (pod_inputs, status)
        changed = len(statuses) != len(self._statuses) or any(
            self._statuses.get(uid) is not status for uid, status in statuses.items()
        )
        self._statuses = statuses
        self._status_inputs = inputs
        if changed:
            for listener in self._listeners:
                listener()

    # --- logs (agent.kubelet.logs) --------------------------------------------------------

    def find_container(
        self, namespace: str, pod: str, container: str | None, *, previous: bool = False
    ) -> ContainerID:
        """The id of a pod's container as of the last listing; raises LookupError."""
        return container_logs.find_container(
            self._desired,
            self._observed,
            namespace=namespace,
            pod=pod,
            container=container,
            previous=previous,
        )

    def logs(
        self, container_id: ContainerID, *, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        """Log bytes of a container as they come; the stream closes when the caller stops."""
        return container_logs.stream_logs(self._runtime, container_id, tail=tail, follow=follow)
