"""The Capstan node agent: kubelet (pod sync loop), container runtime (Docker) and proxy.

Run as ``capstan-agent serve`` (the daemon, :mod:`agent.server`); the reconciler reaches it
through ``capstan-agent connect`` (:mod:`agent.connect`) with the protocol of
:mod:`schemas.protocol`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("capstan")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
