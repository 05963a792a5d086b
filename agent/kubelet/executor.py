"""Carries out the planner's actions for one pod, in order, on the runtime's threads.

Called by the sync loop with one pod's action list; the loop runs many pods' lists at once
(independent pods in parallel, one pod's actions strictly in order). Failures do not raise
past a pod: a start failure is left as a container the next plan sees, an image failure is
recorded for back-off, anything else is reported in the pod's status message.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar, assert_never

from agent.kubelet import volumes
from agent.kubelet._netprobe import NetTarget, probe_http, probe_tcp
from agent.kubelet.plan import (
    Action,
    ConfigFailure,
    CreateSandbox,
    ImagePullFailure,
    RemovePodDir,
    StartContainer,
    StopContainer,
    Wait,
)
from agent.kubelet.podspec import (
    ConfigError,
    ConfigIndex,
    DesiredPod,
    NodeSettings,
    container_config,
    ephemeral_volume_prefix,
    sandbox_config,
)
from agent.kubelet.services import NodeServices
from agent.proxy import Endpoint
from agent.runtime import ContainerRuntime, ImageError, RuntimeFailure, StartFailed
from agent.runtime.facts import ContainerID, PodUID
from schemas.pod import LifecycleHandler

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_BUSYBOX = Path("/bin/busybox")


@dataclass
class ExecutorMemory:
    """What the executor learns that Docker does not keep: pull failures and the last error."""

    image_failures: dict[tuple[PodUID, str], ImagePullFailure] = field(default_factory=dict)
    config_failures: dict[tuple[PodUID, str], ConfigFailure] = field(default_factory=dict)
    pod_errors: dict[PodUID, str] = field(default_factory=dict)

    def pods(self) -> set[PodUID]:
        """The pods something is remembered about."""
        return (
            set(self.pod_errors)
            | {uid for uid, _ in self.image_failures}
            | {uid for uid, _ in self.config_failures}
        )

    def forget(self, uids: Collection[PodUID]) -> None:
        """Drop everything remembered about ``uids`` (pods gone from the node)."""
        for uid in uids:
            self.pod_errors.pop(uid, None)
        for failures in (self.image_failures, self.config_failures):
            for key in [k for k in failures if k[0] in uids]:
                del failures[key]


class Executor:
    """Turns actions into runtime calls for one node."""

    def __init__(
        self,
        *,
        runtime: ContainerRuntime,
        settings: NodeSettings,
        pool: ThreadPoolExecutor,
        services: NodeServices,
        clock: Callable[[], float] = time.time,
        busybox: Path = _BUSYBOX,
    ) -> None:
        self._runtime = runtime
        self._services = services
        self._settings = settings
        self._pool = pool
        self._clock = clock
        self._busybox = busybox
        self.memory = ExecutorMemory()
        self._pause_ready = asyncio.Lock()
        self._pause_built = False

    async def _call(self, fn: Callable[..., _T], *args: object, **kwargs: object) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))

    async def run_pod(
        self,
        uid: PodUID,
        actions: Sequence[Action],
        *,
        desired: DesiredPod | None,
        configs: ConfigIndex,
        endpoints: Sequence[Endpoint] = (),
    ) -> None:
        """Execute one pod's actions in order; consecutive stops run concurrently.

        ``endpoints`` are the pod's published (address, host port) pairs when the actions stop
        a running app container: they leave this node's Service rules before the first stop
        (before preStop and SIGTERM), as a terminating pod leaves its Endpoints.
        """
        sandbox_id: ContainerID | None = None
        index = 0
        drained = False
        try:
            while index < len(actions):
                action = actions[index]
                match action:
                    case StopContainer():
                        if endpoints and not drained:
                            await self._services.drain(uid, endpoints)
                            drained = True
                        batch = [action]
                        while index + 1 < len(actions):
                            following = actions[index + 1]
                            if not isinstance(following, StopContainer):
                                break
                            batch.append(following)
                            index += 1
                        await self._stop_batch(batch)
                    case CreateSandbox():
                        assert desired is not None
                        sandbox_id = await self._create_sandbox(desired, action, configs)
                        if sandbox_id is None:
                            return
                    case StartContainer():
                        assert desired is not None
                        target = action.sandbox_id or sandbox_id
                        if target is None:
                            return
                        await self._start(desired, action, target, configs)
                    case RemovePodDir():
                        # The order matters: the directory is what brings this action back
                        # on the next pass, so it goes only once the volumes are gone.
                        await self._call(
                            self._runtime.remove_volumes,
                            ephemeral_volume_prefix(self._settings.node_name, uid),
                        )
                        await self._call(volumes.remove_pod_dir, self._settings.state_dir, uid)
                        self.memory.forget({uid})
                    case Wait():
                        # The planner's explicit no-op: status reports it; nothing to carry out.
                        _log.debug("pod %s waits: %s", uid, action.reason)
                    case _:
                        assert_never(action)
                index += 1
        except RuntimeFailure as exc:
            _log.warning("pod %s: %s", uid, exc)
            self.memory.pod_errors[uid] = str(exc)
        finally:
            if drained:
                await self._services.release(uid, pod_gone=desired is None)

    async def _stop_batch(self, batch: Sequence[StopContainer]) -> None:
        async def one(action: StopContainer) -> None:
            _log.info("stop %s of pod %s: %s", action.container, action.pod_uid, action.reason)
            grace = action.grace_seconds
            hook = action.pre_stop
            if hook is not None:
                # The hook spends the grace period; SIGTERM gets whatever it leaves.
                started = time.monotonic()
                try:
                    await asyncio.wait_for(self._pre_stop(action, hook), timeout=grace)
                except TimeoutError:
                    _log.warning("preStop of %s did not finish within %ds", action.container, grace)
                grace = max(0, math.ceil(grace - (time.monotonic() - started)))
            await self._call(self._runtime.stop, action.container_id, grace_seconds=grace)
            if action.remove:
                await self._call(self._runtime.remove, action.container_id)

        await asyncio.gather(*(one(a) for a in batch))

    async def _pre_stop(self, action: StopContainer, hook: LifecycleHandler) -> None:
        """Run a container's preStop hook; failures are logged, the stop goes on regardless."""
        # Off the Docker pool: a hook may take most of the grace period.
        if hook.exec_ is not None:
            try:
                result = await asyncio.to_thread(
                    self._runtime.exec, action.container_id, list(hook.exec_.command)
                )
            except RuntimeFailure as exc:
                _log.warning("preStop of %s failed: %s", action.container, exc)
                return
            if result.exit_code != 0:
                _log.warning("preStop of %s exited with %d", action.container, result.exit_code)
            return
        if hook.sleep is not None:
            await asyncio.sleep(hook.sleep.seconds)
            return
        network = hook.http_get or hook.tcp_socket
        port = action.spec.port_number(network.port) if network and action.spec else None
        if port is None or not action.sandbox_pid:
            _log.warning("preStop of %s: no reachable port", action.container)
            return
        target = NetTarget(sandbox_pid=action.sandbox_pid, port=port)
        timeout = float(max(action.grace_seconds, 1))
        if hook.http_get is not None:
            outcome = await asyncio.to_thread(
                probe_http, target, path=hook.http_get.path, timeout_s=timeout
            )
        else:
            outcome = await asyncio.to_thread(probe_tcp, target, timeout_s=timeout)
        if not outcome.success:
            _log.warning("preStop of %s: %s", action.container, outcome.message)

    async def _ensure_pause_image(self) -> None:
        async with self._pause_ready:
            if not self._pause_built:
                await self._call(
                    self._runtime.ensure_pause_image,
                    self._settings.pause_image,
                    busybox=self._busybox,
                )
                self._pause_built = True

    async def _create_sandbox(
        self, d: DesiredPod, action: CreateSandbox, configs: ConfigIndex
    ) -> ContainerID | None:
        await self._ensure_pause_image()
        await self._call(
            volumes.materialize, d, state_dir=self._settings.state_dir, configs=configs
        )
        config = sandbox_config(
            d,
            settings=self._settings,
            attempt=action.attempt,
            backoff_step=action.backoff_step,
            hosts=self._services.hosts(d.namespace),
        )
        _log.info("create sandbox of pod %s: %s", d.key, action.reason)
        try:
            sandbox_id = await self._call(self._runtime.create_and_start, config)
        except StartFailed as exc:
            # Left in place: the planner sees the failed sandbox and backs off.
            _log.warning("sandbox of pod %s did not start: %s", d.key, exc)
            return None
        # The order matters: the forwarder listens in the pod before its app containers start,
        # so Service names answer from their first instruction.
        pid = await self._call(self._runtime.pid, sandbox_id)
        await self._services.attach(d.uid, pid=pid)
        return sandbox_id

    async def _ensure_image(self, d: DesiredPod, action: StartContainer) -> bool:
        spec = next(c for c in d.pod.spec.containers if c.name == action.container)
        key = (d.uid, action.container)
        try:
            auth = d.pull_auth(spec.image)
            if spec.image_pull_policy == "Always":
                await self._call(self._runtime.pull, spec.image, auth=auth)
            elif not await self._call(self._runtime.image_present, spec.image):
                if spec.image_pull_policy == "Never":
                    raise ImageError(
                        "ErrImageNeverPull",
                        f'container image "{spec.image}" is not present with pull policy Never',
                    )
                await self._call(self._runtime.pull, spec.image, auth=auth)
        except ImageError as exc:
            previous = self.memory.image_failures.get(key)
            count = previous.failures + 1 if previous and previous.image == spec.image else 1
            self.memory.image_failures[key] = ImagePullFailure(
                image=spec.image,
                reason=exc.reason,
                message=str(exc),
                failed_at=self._clock(),
                failures=count,
            )
            _log.warning("pod %s container %s: %s", d.key, action.container, exc.reason)
            return False
        self.memory.image_failures.pop(key, None)
        return True

    async def _start(
        self, d: DesiredPod, action: StartContainer, sandbox_id: ContainerID, configs: ConfigIndex
    ) -> None:
        if not await self._ensure_image(d, action):
            return
        spec = next(c for c in d.pod.spec.containers if c.name == action.container)
        key = (d.uid, action.container)
        await self._call(
            volumes.materialize, d, state_dir=self._settings.state_dir, configs=configs
        )
        try:
            # The order matters: subPath sources are resolved after the volumes are in place
            # and right before the config that binds them.
            await self._call(volumes.prepare_host_paths, d)
            sub_paths = await self._call(
                volumes.sub_path_sources, d, spec, state_dir=self._settings.state_dir
            )
            config = container_config(
                d,
                spec,
                settings=self._settings,
                sandbox_id=sandbox_id,
                attempt=action.attempt,
                backoff_step=action.backoff_step,
                service_env=self._services.env(d.namespace),
                image_user=await self._call(self._runtime.image_user, spec.image),
                sub_paths=sub_paths,
            )
        except ConfigError as exc:
            previous = self.memory.config_failures.get(key)
            spec_hash = d.container_hashes[action.container]
            count = previous.failures + 1 if previous and previous.spec_hash == spec_hash else 1
            self.memory.config_failures[key] = ConfigFailure(
                spec_hash=spec_hash,
                message=str(exc),
                failed_at=self._clock(),
                failures=count,
            )
            _log.warning("pod %s container %s: %s", d.key, action.container, exc)
            return
        self.memory.config_failures.pop(key, None)
        _log.info(
            "start %s of pod %s (attempt %d): %s",
            action.container,
            d.key,
            action.attempt,
            action.reason,
        )
        try:
            await self._call(self._runtime.create_and_start, config)
        except StartFailed as exc:
            _log.warning("container %s of pod %s did not start: %s", action.container, d.key, exc)
        self.memory.pod_errors.pop(d.uid, None)
