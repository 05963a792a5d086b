"""Assembles and runs the agent daemon: runtime, kubelet, socket server, signals.

Called by ``capstan-agent serve``. Stopping the daemon (SIGTERM/SIGINT) stops the agent only:
the pods keep running, and the next start adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from agent.kubelet.backoff import BackoffPolicy
from agent.kubelet.kubelet import Kubelet, KubeletTuning
from agent.kubelet.podspec import NodeSettings
from agent.runtime import DockerRuntime, RuntimeFailure
from agent.runtime.facts import NodeName
from agent.server import AgentServer, ServerSettings
from agent.state import CorruptState, DesiredStateFile, prepare_state_dir

_log = logging.getLogger("agent")


@dataclass(frozen=True)
class DaemonOptions:
    state_dir: Path
    socket_path: Path
    node_name: str
    bind_address: str = "127.0.0.1"
    pause_image: str = "capstan.local/pause:1"
    allow_host_network: bool = False
    backoff_initial_s: float = 10.0
    backoff_max_s: float = 300.0
    backoff_reset_s: float = 600.0
    resync_s: float = 5.0
    heartbeat_s: float = 5.0
    log_level: str = "INFO"


async def _main(options: DaemonOptions) -> int:
    prepare_state_dir(options.state_dir)
    try:
        runtime = await asyncio.to_thread(DockerRuntime)
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
    )
    tuning = KubeletTuning(
        backoff=BackoffPolicy(
            initial_s=options.backoff_initial_s,
            max_s=options.backoff_max_s,
            reset_after_s=options.backoff_reset_s,
        ),
        resync_s=options.resync_s,
    )
    kubelet = Kubelet(runtime=runtime, settings=settings, tuning=tuning)
    server = AgentServer(
        kubelet=kubelet,
        state=DesiredStateFile(options.state_dir),
        settings=ServerSettings(
            socket_path=options.socket_path,
            node_name=options.node_name,
            bind_address=options.bind_address,
            heartbeat_s=options.heartbeat_s,
        ),
        docker_version=docker_version,
    )
    try:
        server.restore()
    except CorruptState as exc:
        _log.error("%s", exc)
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
        with contextlib.suppress(Exception):
            runtime.close()
    return 0


def run_daemon(options: DaemonOptions) -> int:
    logging.basicConfig(
        level=options.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(_main(options))
