"""The container runtime: Docker, seen through facts and asked through configs.

Offers :class:`DockerRuntime` (blocking calls, thread-safe), the fact and config types of
:mod:`agent.runtime.facts`, and the errors Docker's refusals become. The only package in
Capstan that imports ``docker``.
"""

from agent.runtime._docker import (
    DockerRuntime,
    ImageError,
    RuntimeFailure,
    StartFailed,
    Stream,
)

__all__ = ["DockerRuntime", "ImageError", "RuntimeFailure", "StartFailed", "Stream"]
