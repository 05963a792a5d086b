"""``capstan logs POD [-f]``: a pod container's log, fetched from the agent of its node.

Looks the pod up (to find its node), builds the node's endpoint from its Node object — a
``local`` node through the agent socket the running ``capstan up`` uses, any other over SSH
with its pinned host key — and streams the agent's ``logs_chunk`` messages to stdout.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from reconciler.api import NotFound
from reconciler.cli._target import make_target, open_cluster, target_options
from reconciler.nodes import DEFAULT_AGENT_COMMAND, NodeEndpoint
from reconciler.nodes.local_daemon import agent_executable
from reconciler.nodes.logs import LogsError, stream_logs
from schemas import Node, Pod
from schemas.protocol import AGENT_SOCKET_ENV, DEFAULT_AGENT_SOCKET

__all__ = ["logs"]


def _local_command(agent_socket: str | None) -> str:
    socket_path = agent_socket or os.environ.get(AGENT_SOCKET_ENV) or DEFAULT_AGENT_SOCKET
    return shlex.join([agent_executable(), "connect", "--socket", socket_path])


@click.command("logs")
@click.argument("pod")
@click.option("-c", "--container", default=None, help="Container (default: the first).")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new output.")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.option(
    "--known-hosts",
    type=click.Path(path_type=Path),
    default=None,
    help="known_hosts file for nodes without spec.hostKey.",
)
@target_options
def logs(
    pod: str,
    container: str | None,
    namespace: str,
    follow: bool,
    tail: int | None,
    known_hosts: Path | None,
    state_dir: Path | None,
    store_url: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """Print a pod container's log (through the node's agent)."""
    with open_cluster(make_target(state_dir, store_url, server, token)) as cluster:
        try:
            found = cluster.get(Pod, pod, namespace=namespace)
        except NotFound as exc:
            raise click.ClickException(str(exc)) from exc
        if not found.spec.node_name:
            raise click.ClickException(f"pod {namespace}/{pod} is not scheduled to a node yet")
        node = cluster.get(Node, found.spec.node_name)
        agent_socket = cluster.run_info.agent_socket if cluster.run_info else None
    command = _local_command(agent_socket) if node.spec.is_local else DEFAULT_AGENT_COMMAND
    endpoint = NodeEndpoint.from_node(node, known_hosts=known_hosts, agent_command=command)
    stream = stream_logs(
        endpoint,
        namespace=namespace,
        pod=pod,
        container=container or found.spec.containers[0].name,
        tail=tail,
        follow=follow,
    )
    try:
        for text in stream:
            sys.stdout.write(text)
            sys.stdout.flush()
    except LogsError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        return
    finally:
        stream.close()
