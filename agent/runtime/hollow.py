"""A container runtime whose containers exist only in memory (kubemark's hollow node).

``capstan-agent serve --runtime hollow`` runs the whole agent — SSH channel, wire protocol,
desired-state file, kubelet planner and executor, prober, proxy — on this runtime instead of
Docker, so that one machine can stand in for a fleet of hundreds of nodes with thousands of
pods (``bench/fleet.py``). It behaves as Docker does from the kubelet's side: a start takes
``start_delay_s`` (blocking the calling worker thread, as ``docker run`` does), host ports
are handed out when the config asks for an ephemeral one, stop records exit code 0 and
removal forgets, and every change is an event on the stream the kubelet watches. Nothing is
executed: there are no processes (``pid`` is 0, so no network namespace is entered) and
``exec`` succeeds without running anything. Names are reserved at create, as Docker
does. Containers do not survive the agent process.

Every call is counted in :attr:`HollowRuntime.calls`; the daemon logs the counts at exit.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent.runtime.base import RuntimeFailure
from agent.runtime.facts import (
    LABEL_ATTEMPT,
    LABEL_BACKOFF_STEP,
    LABEL_CONTAINER,
    LABEL_GRACE_SECONDS,
    LABEL_MANAGED_BY,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_SPEC_HASH,
    ContainerConfig,
    ContainerID,
    ExecResult,
    NodeName,
    ObservedContainer,
    PodUID,
    PortBinding,
    RegistryAuth,
)

__all__ = ["HollowRuntime"]

_FIRST_EPHEMERAL_PORT = 32768


def _int_label(config: ContainerConfig, key: str, default: int) -> int:
    try:
        return int(config.labels.get(key, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class _Record:
    observed: ObservedContainer
    managed_by: str


class _EventStream:
    """Container events for one node, fed by the runtime; ``close`` ends the iteration."""

    _END: Any = object()

    def __init__(self, on_close: Any) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._on_close = on_close

    def put(self, event: dict[str, Any]) -> None:
        self._queue.put(event)

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            yield item

    def close(self) -> None:
        self._on_close(self)
        self._queue.put(self._END)


class _LogStream:
    def __init__(self, lines: list[bytes]) -> None:
        self._lines = lines

    def __iter__(self) -> Iterator[Any]:
        return iter(self._lines)

    def close(self) -> None:
        self._lines = []


class HollowRuntime:
    """In-memory containers behind the :class:`~agent.runtime.ContainerRuntime` protocol."""

    def __init__(self, *, start_delay_s: float = 0.5) -> None:
        self._start_delay_s = start_delay_s
        self._lock = threading.Lock()
        self._containers: dict[ContainerID, _Record] = {}
        # Names taken, from create on (as Docker reserves them): a second create with a
        # name in use fails, which is what keeps a kubelet from running a container twice.
        self._names: dict[str, ContainerID] = {}
        self._ports = itertools.count(_FIRST_EPHEMERAL_PORT)
        self._streams: list[tuple[str, _EventStream]] = []
        self.calls: Counter[str] = Counter()

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def _emit(self, record: _Record, action: str) -> None:
        event = {"Type": "container", "Action": action, "id": record.observed.id}
        with self._lock:
            streams = [s for node, s in self._streams if node == record.managed_by]
        for stream in streams:
            stream.put(event)

    def close(self) -> None:
        with self._lock:
            streams = [s for _, s in self._streams]
        for stream in streams:
            stream.close()

    def version(self) -> str:
        self._count("version")
        return "hollow"

    def list_containers(self, node: NodeName) -> list[ObservedContainer]:
        self._count("list_containers")
        with self._lock:
            return [r.observed for r in self._containers.values() if r.managed_by == node]

    def image_present(self, image: str) -> bool:
        self._count("image_present")
        return True

    def image_user(self, image: str) -> str:
        self._count("image_user")
        return ""

    def pull(self, image: str, *, auth: RegistryAuth | None = None) -> None:
        self._count("pull")

    def create_and_start(self, config: ContainerConfig) -> ContainerID:
        self._count("create_and_start")
        container_id = ContainerID(uuid.uuid4().hex + uuid.uuid4().hex)
        with self._lock:
            taken = self._names.get(config.name)
            if taken is not None:
                raise RuntimeFailure(
                    f'Conflict. The container name "/{config.name}" is already in use by '
                    f'container "{taken}".'
                )
            self._names[config.name] = container_id
        created = time.time()
        time.sleep(self._start_delay_s)
        with self._lock:
            ports = tuple(
                PortBinding(
                    container_port=p.container_port,
                    protocol=p.protocol,
                    host_ip=p.host_ip,
                    host_port=p.host_port if p.host_port is not None else next(self._ports),
                )
                for p in config.ports
            )
        labels = config.labels
        record = _Record(
            observed=ObservedContainer(
                id=container_id,
                name=config.name,
                pod_uid=PodUID(labels.get(LABEL_POD_UID, "")),
                pod_name=labels.get(LABEL_POD_NAME, ""),
                pod_namespace=labels.get(LABEL_POD_NAMESPACE, ""),
                container=labels.get(LABEL_CONTAINER, ""),
                spec_hash=labels.get(LABEL_SPEC_HASH, ""),
                image=config.image,
                state="running",
                attempt=_int_label(config, LABEL_ATTEMPT, 0),
                backoff_step=_int_label(config, LABEL_BACKOFF_STEP, 0),
                grace_seconds=_int_label(config, LABEL_GRACE_SECONDS, 30),
                created_at=created,
                started_at=time.time(),
                host_ports=ports,
            ),
            managed_by=labels.get(LABEL_MANAGED_BY, ""),
        )
        with self._lock:
            self._containers[container_id] = record
        self._emit(record, "start")
        return container_id

    def pid(self, container_id: ContainerID) -> int:
        self._count("pid")
        return 0

    def stop(self, container_id: ContainerID, *, grace_seconds: int) -> None:
        self._count("stop")
        with self._lock:
            record = self._containers.get(container_id)
            if record is None or not record.observed.running:
                return
            record = _Record(
                observed=replace(
                    record.observed, state="exited", exit_code=0, finished_at=time.time()
                ),
                managed_by=record.managed_by,
            )
            self._containers[container_id] = record
        self._emit(record, "die")

    def remove(self, container_id: ContainerID) -> None:
        self._count("remove")
        with self._lock:
            record = self._containers.pop(container_id, None)
            if record is not None:
                self._names.pop(record.observed.name, None)
        if record is not None:
            self._emit(record, "destroy")

    def remove_volumes(self, prefix: str) -> None:
        # Hollow containers mount nothing, so there is no volume to remove.
        self._count("remove_volumes")

    def logs(self, container_id: ContainerID, *, tail: int | None, follow: bool) -> _LogStream:
        self._count("logs")
        with self._lock:
            record = self._containers.get(container_id)
        if record is None:
            return _LogStream([])
        return _LogStream([f"hollow container {record.observed.name}\n".encode()])

    def exec(self, container_id: ContainerID, argv: list[str]) -> ExecResult:
        self._count("exec")
        return ExecResult(exit_code=0, output="")

    def events(self, node: NodeName) -> _EventStream:
        self._count("events")

        def forget(stream: _EventStream) -> None:
            with self._lock:
                self._streams = [(n, s) for n, s in self._streams if s is not stream]

        stream = _EventStream(forget)
        with self._lock:
            self._streams.append((str(node), stream))
        return stream

    def ensure_pause_image(self, image: str, *, busybox: Path) -> None:
        self._count("ensure_pause_image")
