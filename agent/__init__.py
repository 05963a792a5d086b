"""The Capstan node agent: kubelet (pod sync loop), container runtime (Docker) and proxy.

Run as ``capstan-agent serve`` (the daemon, :mod:`agent.daemon`, :mod:`agent.server`); the
reconciler reaches it through ``capstan-agent connect`` (:mod:`agent.connect`) with the
protocol of :mod:`schemas.protocol`. A node needs the Docker Engine, and busybox-static
(``/bin/busybox``) to build the pod sandbox image ``capstan.local/pause:1`` on first use —
or an existing sandbox image named with ``--pause-image``.
"""

from __future__ import annotations


def agent_version() -> str:
    """The installed Capstan version (looked up on demand: ``connect`` must start fast)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("capstan")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+unknown"


__all__ = ["agent_version"]
