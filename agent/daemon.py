"""Assembles and runs the agent daemon: runtime, proxy, kubelet, socket server, signals.

Called by ``capstan-agent serve``. Stopping the daemon (SIGTERM/SIGINT) stops the agent only:
the pods keep running, and the next start adopts them; the proxy's kernel rules stay too, so
NodePorts keep answering while the agent restarts. ``serve --cleanup`` (:func:`run_cleanup`)
removes what the proxy programmed instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.ingress import IngressServer, IngressSettings
from agent.kubelet.backoff import CrashLoopBackoff
from agent.kubelet.kubelet import Kubelet, KubeletTuning
from agent.kubelet.podspec import NodeSettings
from agent.kubelet.services import NodeServices
from agent.proxy import CommandError, Proxy, ProxyMode
from agent.runtime import ContainerRuntime, DockerRuntime, RuntimeFailure
from agent.runtime.facts import NodeName
from agent.server import AgentServer, ServerSettings
from agent.state import CorruptState, DesiredStateFile, prepare_state_dir
from schemas.podsecurity import DEFAULT_LEVEL, Level
from schemas.protocol import DEFAULT_HEARTBEAT_S

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaemonOptions:
    state_dir: Path
    socket_path: Path
    node_name: str
    bind_address: str = "127.0.0.1"
    pause_image: str = "capstan.local/pause:1"
    docker_host: str | None = None
    """The Docker Engine's address (``unix:///run/docker.sock``); None: ``$DOCKER_HOST`` or
    Docker's default socket."""
    allow_host_network: bool = False
    pod_security: Level = DEFAULT_LEVEL
    """The most any pod may ask of this node (schemas.podsecurity), whatever its namespace."""
    backoff_initial_s: float = 10.0
    backoff_max_s: float = 300.0
    backoff_reset_s: float = 600.0
    resync_s: float = 5.0
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    full_status_s: float = 300.0
    log_level: str = "INFO"
    proxy_mode: ProxyMode | None = None
    """None: the best the agent's rights allow (nftables, iptables, userspace)."""
    proxy_table: str = "capstan"
    proxy_chain_prefix: str = "CAPSTAN"
    """What the proxy owns in nftables / iptables. Agents sharing one host (tests, demos) need
    names of their own: each programs its whole rule set into its table."""
    runtime: Literal["docker", "hollow"] = "docker"
    """``hollow``: containers in memory only (agent.runtime.hollow), for fleet benchmarks."""
    hollow_start_delay_s: float = 0.5
    ingress_http_port: int | None = 80
    ingress_https_port: int | None = 443
    """The node's ingress proxy ports on ``bind_address`` (None: off); listened on only while
    an Ingress of Capstan's class (with TLS, for HTTPS) exists."""


async def _main(options: DaemonOptions) -> int:
    prepare_state_dir(options.state_dir)
    runtime: ContainerRuntime
    try:
        if options.runtime == "hollow":
            from agent.runtime.hollow import HollowRuntime

            runtime = HollowRuntime(start_delay_s=options.hollow_start_delay_s)
        else:
            runtime = await asyncio.to_thread(DockerRuntime, base_url=options.docker_host)
        docker_version = await asyncio.to_thread(runtime.version)
    except RuntimeFailure as exc:
        _log.error("%s", exc)
        return 1
    settings = NodeSettings(
        node_name=NodeName(options.node_name),
        state_dir=options.state_dir.resolve(),
        bind_address=options.bind_address,
        pause_image=options.pause_image,
        allow_host_network=options.allow_host_network,
        pod_security=options.pod_security,
    )
    tuning = KubeletTuning(
        backoff=CrashLoopBackoff(
            initial_s=options.backoff_initial_s,
            max_s=options.backoff_max_s,
            reset_after_s=options.backoff_reset_s,
        ),
        resync_s=options.resync_s,
    )
    try:
        proxy = await asyncio.to_thread(
            Proxy,
            node_addresses=[options.bind_address],
            mode=options.proxy_mode,
            table=options.proxy_table,
            chain_prefix=options.proxy_chain_prefix,
        )
    except ValueError as exc:
        _log.error("proxy: %s", exc)
        runtime.close()
        return 1
    _log.info("proxy mode %s", proxy.mode)
    services = NodeServices(proxy)
    ingress = IngressServer(
        IngressSettings(
            address=options.bind_address,
            http_port=options.ingress_http_port,
            https_port=options.ingress_https_port,
        )
    )
    services.on_rules(ingress.take_rules)
    kubelet = Kubelet(runtime=runtime, settings=settings, tuning=tuning, services=services)
    server = AgentServer(
        kubelet=kubelet,
        state=DesiredStateFile(options.state_dir),
        settings=ServerSettings(
            socket_path=options.socket_path,
            node_name=options.node_name,
            bind_address=options.bind_address,
            heartbeat_s=options.heartbeat_s,
            full_status_s=options.full_status_s,
        ),
        docker_version=docker_version,
        node_conditions=lambda: (services.condition(), ingress.condition()),
    )
    services.on_change(server.status_changed)
    server.on_desired(lambda sync: services.take(sync.services, generation=sync.generation))
    server.on_desired(lambda sync: ingress.take(sync.ingresses, sync.secrets))
    try:
        server.restore()
    except CorruptState as exc:
        _log.error("%s", exc)
        proxy.close()
        return 2
    await kubelet.start()
    serving = asyncio.get_running_loop().create_task(server.serve())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, serving.cancel)
    try:
        await serving
    except asyncio.CancelledError:
        _log.info("stopping; pods keep running")
    except RuntimeError as exc:
        _log.error("%s", exc)
        return 1
    finally:
        await kubelet.close()
        await services.close()
        await ingress.close()
        # Kernel rules stay on purpose (NodePorts survive the restart); listeners stop.
        proxy.close()
        with contextlib.suppress(Exception):
            runtime.close()
        calls = getattr(runtime, "calls", None)
        if calls:
            _log.info("hollow runtime calls: %s", dict(sorted(calls.items())))
    return 0


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_daemon(options: DaemonOptions) -> int:
    _configure_logging(options.log_level)
    return asyncio.run(_main(options))


def run_cleanup(*, table: str, chain_prefix: str, log_level: str = "INFO") -> int:
    """Remove every rule the proxy programmed (nft table, iptables chains and jumps); 0 on
    success. Pods and the desired set are left alone."""
    _configure_logging(log_level)
    # Userspace: detection would probe the tools for nothing; cleanup tries both anyway.
    with Proxy(
        node_addresses=[], mode="userspace", table=table, chain_prefix=chain_prefix
    ) as proxy:
        try:
            removed = proxy.cleanup()
        except (CommandError, OSError) as exc:
            _log.error("proxy cleanup failed: %s", exc)
            return 1
    _log.info("proxy cleanup: removed %s", ", ".join(removed) if removed else "nothing")
    return 0
