"""Container logs for the agent's ``logs`` requests: which container, then its Docker log.

Called by the agent daemon (:mod:`agent.server`) for each ``logs`` message, through
:meth:`agent.kubelet.Kubelet.find_container` and :meth:`~agent.kubelet.Kubelet.logs`.
:func:`find_container` is a pure lookup over the kubelet's desired pods and its last listing
of the node's containers (the newest attempt, or with ``previous`` the attempt before it,
which the planner keeps stopped as the pod's last state); :func:`stream_logs` turns the
runtime's blocking log stream into an async one that ends when the caller stops reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Sequence

from agent.kubelet.podspec import DesiredPod
from agent.runtime import ContainerRuntime
from agent.runtime.facts import ContainerID, ObservedContainer

__all__ = ["find_container", "stream_logs"]

_log = logging.getLogger(__name__)

#: Chunks buffered between Docker's reader thread and the event loop.
_QUEUE_CHUNKS = 256


def find_container(
    desired: Sequence[DesiredPod],
    observed: Sequence[ObservedContainer],
    *,
    namespace: str,
    pod: str,
    container: str | None,
    previous: bool = False,
) -> ContainerID:
    """The id of a pod's container: its newest attempt, or with ``previous`` the one before.
    ``container`` None means the pod's first container (the only one, for a pod this node no
    longer desires). Raises LookupError with a message for the person who asked."""
    d = next((d for d in desired if d.namespace == namespace and d.name == pod), None)
    candidates = [
        c
        for c in observed
        if c.pod_namespace == namespace
        and c.pod_name == pod
        and not c.is_sandbox
        and (d is None or c.pod_uid == d.uid)
    ]
    if not candidates:
        raise LookupError(f"pod {namespace}/{pod} has no containers on this node")
    names = sorted({c.container for c in candidates})
    if container is None:
        if d is not None:
            container = d.pod.spec.containers[0].name
        elif len(names) == 1:
            container = names[0]
        else:
            raise LookupError(f"pod {namespace}/{pod} has several containers: {names}")
    records = sorted((c for c in candidates if c.container == container), key=lambda c: c.attempt)
    if not records:
        raise LookupError(f"pod {namespace}/{pod} has no container {container!r}")
    if previous:
        if len(records) < 2:
            raise LookupError(
                f'previous terminated container "{container}" in pod "{pod}" not found'
            )
        return records[-2].id
    return records[-1].id


async def stream_logs(
    runtime: ContainerRuntime, container_id: ContainerID, *, tail: int | None, follow: bool
) -> AsyncIterator[bytes]:
    """Log bytes of a container as they come; closing the iterator closes Docker's stream."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_QUEUE_CHUNKS)
    stream = await loop.run_in_executor(
        None, lambda: runtime.logs(container_id, tail=tail, follow=follow)
    )

    def pump() -> None:
        try:
            for chunk in stream:
                asyncio.run_coroutine_threadsafe(queue.put(bytes(chunk)), loop).result()
        except Exception as exc:
            _log.debug("log stream ended: %s", exc)
        finally:
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(queue.put(None), loop)

    thread = threading.Thread(target=pump, name="capstan-logs", daemon=True)
    thread.start()
    try:
        while (chunk := await queue.get()) is not None:
            yield chunk
    finally:
        with contextlib.suppress(Exception):
            stream.close()
        # Unblock the pump if it is waiting for room; it ends once the stream is closed.
        while not queue.empty():
            queue.get_nowait()
