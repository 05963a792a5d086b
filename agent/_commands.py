"""The click commands of ``capstan-agent`` (serve, connect, logs); entry point in agent.cli.

Heavy imports happen inside the commands, so ``--help`` and ``connect`` stay quick.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import click

from schemas.protocol import AGENT_SOCKET_ENV, DEFAULT_AGENT_SOCKET, DEFAULT_HEARTBEAT_S

if TYPE_CHECKING:
    from agent.proxy import ProxyMode
    from schemas.podsecurity import Level

_F = TypeVar("_F", bound=Callable[..., Any])
_SOCKET_HELP = "Unix socket of the agent (env CAPSTAN_AGENT_SOCKET)."


def _socket_option() -> Callable[[_F], _F]:
    return click.option(
        "--socket",
        "socket_path",
        type=click.Path(path_type=Path),
        default=lambda: os.environ.get(AGENT_SOCKET_ENV, DEFAULT_AGENT_SOCKET),
        show_default=DEFAULT_AGENT_SOCKET,
        help=_SOCKET_HELP,
    )


@click.group()
@click.version_option(package_name="capstan", prog_name="capstan-agent")
def commands() -> None:
    """Capstan node agent: runs the node's pods on Docker for the reconciler."""


@commands.command()
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="Where the desired set, pod volumes and secrets are kept (made 0700); "
    "required unless --cleanup.",
)
@_socket_option()
@click.option(
    "--node-name",
    default=lambda: socket.gethostname(),
    show_default="host name",
    help="Name of this node; labels every container the agent owns.",
)
@click.option(
    "--bind-address",
    default="127.0.0.1",
    show_default=True,
    help="Address pod ports are published on.",
)
@click.option(
    "--pause-image",
    default="capstan.local/pause:1",
    show_default=True,
    help="Sandbox image; built from /bin/busybox (busybox-static) when missing.",
)
@click.option(
    "--allow-host-network",
    is_flag=True,
    help="Let pods with hostNetwork: true run (refused otherwise; needs "
    "--pod-security privileged too).",
)
@click.option(
    "--pod-security",
    type=click.Choice(["privileged", "baseline", "restricted"]),
    default="baseline",
    show_default=True,
    help="The Pod Security level every pod on this node must meet, whatever its namespace allows.",
)
@click.option(
    "--backoff-initial",
    type=float,
    default=10.0,
    show_default=True,
    help="First crash-loop back-off (seconds); doubles per crash.",
)
@click.option(
    "--backoff-max",
    type=float,
    default=300.0,
    show_default=True,
    help="Longest crash-loop back-off (seconds).",
)
@click.option(
    "--backoff-reset",
    type=float,
    default=600.0,
    show_default=True,
    help="Running this long (seconds) resets the back-off.",
)
@click.option(
    "--docker-host",
    default=None,
    metavar="URL",
    help="The Docker Engine to run pods in, e.g. unix:///run/docker.sock "
    "(default: $DOCKER_HOST, else Docker's default socket).",
)
@click.option(
    "--resync",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between passes when nothing happens.",
)
@click.option(
    "--heartbeat",
    type=float,
    default=DEFAULT_HEARTBEAT_S,
    show_default=True,
    help="Seconds between status heartbeats.",
)
@click.option(
    "--full-status",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds between status messages carrying every pod's report.",
)
@click.option(
    "--proxy-mode",
    type=click.Choice(["nftables", "iptables", "userspace"]),
    default=None,
    show_default="the best the agent's rights allow",
    help="How Service rules are programmed; reported as the node's ProxyReady.",
)
@click.option(
    "--proxy-table",
    default="capstan",
    show_default=True,
    help="The nftables table the proxy owns (agents sharing a host need their own).",
)
@click.option(
    "--proxy-chain-prefix",
    default="CAPSTAN",
    show_default=True,
    help="Prefix of the iptables chains the proxy owns.",
)
@click.option(
    "--runtime",
    type=click.Choice(["docker", "hollow"]),
    default="docker",
    show_default=True,
    help="hollow: containers that exist only in memory and start after --hollow-start-delay "
    "(fleet-scale benchmarks of everything but Docker).",
)
@click.option(
    "--hollow-start-delay",
    type=float,
    default=0.5,
    show_default=True,
    help="Seconds a hollow container takes to start.",
)
@click.option(
    "--ingress-http-port",
    type=click.IntRange(0, 65535),
    default=80,
    show_default=True,
    help="The ingress proxy's HTTP port on --bind-address (0: off).",
)
@click.option(
    "--ingress-https-port",
    type=click.IntRange(0, 65535),
    default=443,
    show_default=True,
    help="The ingress proxy's HTTPS port on --bind-address (0: off).",
)
@click.option(
    "--cleanup",
    is_flag=True,
    help="Remove every rule the proxy programmed (table, chains, jumps) and exit.",
)
@click.option("--log-level", default="INFO", show_default=True)
def serve(
    state_dir: Path | None,
    socket_path: Path,
    node_name: str,
    bind_address: str,
    pause_image: str,
    allow_host_network: bool,
    pod_security: str,
    backoff_initial: float,
    backoff_max: float,
    backoff_reset: float,
    docker_host: str | None,
    resync: float,
    heartbeat: float,
    full_status: float,
    proxy_mode: str | None,
    proxy_table: str,
    proxy_chain_prefix: str,
    runtime: str,
    hollow_start_delay: float,
    ingress_http_port: int,
    ingress_https_port: int,
    cleanup: bool,
    log_level: str,
) -> None:
    """Run the agent daemon (needs Docker; busybox-static or --pause-image for sandboxes)."""
    if cleanup:
        from agent.daemon import run_cleanup

        sys.exit(
            run_cleanup(table=proxy_table, chain_prefix=proxy_chain_prefix, log_level=log_level)
        )
    if state_dir is None:
        raise click.UsageError("--state-dir is required (unless --cleanup)")
    # WARNING: docker-py imports paramiko (and cryptography) for ssh:// Docker hosts, ~20 MB
    # of RSS the agent never uses: it only talks to the local Unix socket. Blocking the import
    # in this dedicated process keeps the idle daemon lean; docker-py tolerates its absence.
    # Never do this in a shared process: the reconciler needs paramiko.
    sys.modules.setdefault("paramiko", None)  # type: ignore[arg-type]
    from agent.daemon import DaemonOptions, run_daemon

    options = DaemonOptions(
        state_dir=state_dir,
        socket_path=socket_path,
        node_name=node_name,
        bind_address=bind_address,
        pause_image=pause_image,
        allow_host_network=allow_host_network,
        pod_security=cast("Level", pod_security),
        backoff_initial_s=backoff_initial,
        backoff_max_s=backoff_max,
        backoff_reset_s=backoff_reset,
        docker_host=docker_host,
        resync_s=resync,
        heartbeat_s=heartbeat,
        full_status_s=full_status,
        log_level=log_level,
        proxy_mode=cast("ProxyMode | None", proxy_mode),
        proxy_table=proxy_table,
        proxy_chain_prefix=proxy_chain_prefix,
        runtime=cast(Literal["docker", "hollow"], runtime),
        hollow_start_delay_s=hollow_start_delay,
        ingress_http_port=ingress_http_port or None,
        ingress_https_port=ingress_https_port or None,
    )
    sys.exit(run_daemon(options))


@commands.command()
@_socket_option()
def connect(socket_path: Path) -> None:
    """Bridge stdin/stdout to the agent's socket (what the reconciler runs over SSH)."""
    from agent.connect import bridge

    sys.exit(bridge(socket_path))


@commands.command()
@click.argument("pod")
@click.argument("container", required=False)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new output.")
@_socket_option()
def logs(
    pod: str,
    container: str | None,
    namespace: str,
    tail: int | None,
    follow: bool,
    socket_path: Path,
) -> None:
    """Print a pod container's log, through the agent's protocol."""
    from agent.logs_client import fetch_logs

    sys.exit(
        fetch_logs(
            socket_path, namespace=namespace, pod=pod, container=container, tail=tail, follow=follow
        )
    )
