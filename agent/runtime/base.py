"""What the kubelet needs of a container runtime, as a protocol.

The kubelet, its executor and its prober call a runtime only through :class:`ContainerRuntime`.
Two implement it: :class:`agent.runtime.DockerRuntime` (the real one) and
:class:`agent.runtime.hollow.HollowRuntime` (kubemark's hollow node: containers that exist
only in memory, for fleet-scale benchmarks of everything else). Every method blocks and must
be safe to call from several threads at once, and fails with the errors defined here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from agent.runtime.facts import (
    ContainerConfig,
    ContainerID,
    ExecResult,
    NodeName,
    ObservedContainer,
    RegistryAuth,
)


class RuntimeFailure(Exception):
    """The runtime refused or failed an operation; the message is the runtime's own."""


class StartFailed(RuntimeFailure):
    """The container was created but did not start; it is left in place as evidence.

    Leaving it lets the planner see a failed attempt (with its labels) and apply back-off,
    exactly as for a container that started and crashed.
    """

    def __init__(self, container_id: ContainerID, message: str) -> None:
        super().__init__(message)
        self.container_id = container_id


class ImageError(RuntimeFailure):
    """An image could not be made present: ``reason`` is ErrImagePull or ErrImageNeverPull."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Stream(Protocol):
    """A blocking iterator over log chunks or events that another thread may close."""

    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


class ContainerRuntime(Protocol):
    def close(self) -> None: ...

    def version(self) -> str: ...

    def list_containers(self, node: NodeName) -> list[ObservedContainer]: ...

    def image_present(self, image: str) -> bool: ...

    def image_user(self, image: str) -> str: ...

    def pull(self, image: str, *, auth: RegistryAuth | None = None) -> None: ...

    def create_and_start(self, config: ContainerConfig) -> ContainerID: ...

    def pid(self, container_id: ContainerID) -> int: ...

    def stop(self, container_id: ContainerID, *, grace_seconds: int) -> None: ...

    def remove(self, container_id: ContainerID) -> None: ...

    def remove_volumes(self, prefix: str) -> None:
        """Remove every named volume whose name starts with ``prefix``; raises RuntimeFailure
        if one is still in use (a container of the pod is not removed yet)."""
        ...

    def logs(self, container_id: ContainerID, *, tail: int | None, follow: bool) -> Stream: ...

    def exec(self, container_id: ContainerID, argv: list[str]) -> ExecResult: ...

    def events(self, node: NodeName) -> Stream: ...

    def ensure_pause_image(self, image: str, *, busybox: Path) -> None: ...
