"""The container runtime: Docker, seen through facts and asked through configs.

Offers the :class:`ContainerRuntime` protocol the kubelet calls, :class:`DockerRuntime`
(blocking calls, thread-safe), the fact and config types of :mod:`agent.runtime.facts`, and
the errors Docker's refusals become; :mod:`agent.runtime.hollow` is the in-memory runtime of
fleet-scale benchmarks. The only package in Capstan that imports ``docker``.
"""

from agent.runtime._docker import DockerRuntime
from agent.runtime.base import ContainerRuntime, ImageError, RuntimeFailure, StartFailed, Stream

__all__ = [
    "ContainerRuntime",
    "DockerRuntime",
    "ImageError",
    "RuntimeFailure",
    "StartFailed",
    "Stream",
]
