"""``capstan node cordon|uncordon|drain NODE``: take a node out of scheduling and move its pods
off it respecting PodDisruptionBudgets, as ``kubectl cordon/uncordon/drain`` do.

Drain: cordon (``spec.unschedulable: true``), then evict every pod bound to the node through
the API's Eviction (``ClusterView.evict``: refused with 429 while a PodDisruptionBudget would
be broken), retrying the refused ones every ``--retry-interval`` until ``--timeout``; then wait
until the evicted pods are gone. DaemonSet pods are left (their controller tolerates cordoned
nodes and would make them again, as ``kubectl drain --ignore-daemonsets``); finished pods are
left; pods no controller would replace are evicted only with ``--force``. A Node that comes
from Git is cordoned as drift (over HTTP with the override): write ``spec.unschedulable: true``
in its manifest to keep it so.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from reconciler.api import ApiError, NotFound
from reconciler.cli._target import ClusterView, make_target, open_cluster, target_options
from schemas import Node, Pod

__all__ = ["cordon_command", "drain_command", "uncordon_command"]

_TOO_MANY_REQUESTS = 429


def _set_unschedulable(cluster: ClusterView, name: str, value: bool) -> bool:
    """Set the node's ``spec.unschedulable``; False when it already was."""
    try:
        node = cluster.get(Node, name)
    except NotFound as exc:
        raise click.ClickException(str(exc)) from exc
    if node.spec.unschedulable == value:
        return False
    spec = node.spec.model_copy(update={"unschedulable": value})
    try:
        cluster.update(node.model_copy(update={"spec": spec}), override=True)
    except ApiError as exc:
        raise click.ClickException(f"{exc.reason}: {exc}") from exc
    return True


def _schedulable_command(command: str, value: bool, doc: str) -> click.Command:
    @click.command(command)
    @click.argument("name")
    @target_options
    def run(
        name: str,
        state_dir: Path | None,
        store_url: str | None,
        server: str | None,
        token: str | None,
    ) -> None:
        with open_cluster(make_target(state_dir, store_url, server, token)) as cluster:
            changed = _set_unschedulable(cluster, name, value)
        click.echo(f"node/{name} {'' if changed else 'already '}{command}ed")

    run.help = doc
    return run


cordon_command = _schedulable_command(
    "cordon", True, "Mark node NAME unschedulable: new pods go elsewhere; running ones stay."
)
uncordon_command = _schedulable_command("uncordon", False, "Mark node NAME schedulable again.")


def _controller_kind(pod: Pod) -> str | None:
    return next((ref.kind for ref in pod.metadata.owner_references if ref.controller), None)


def _to_evict(cluster: ClusterView, node: str, *, force: bool) -> list[Pod]:
    pods = [p for p in cluster.list(Pod) if p.spec.node_name == node]
    chosen: list[Pod] = []
    orphans: list[str] = []
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        phase = pod.status.phase if pod.status else "Pending"
        if phase in ("Succeeded", "Failed") or pod.metadata.deletion_timestamp is not None:
            continue
        kind = _controller_kind(pod)
        if kind == "DaemonSet":
            click.echo(f"ignoring DaemonSet-managed pod {pod.namespace}/{pod.name}")
            continue
        if kind is None and not force:
            orphans.append(f"{pod.namespace}/{pod.name}")
            continue
        chosen.append(pod)
    if orphans:
        raise click.ClickException(
            "cannot evict pods no controller would replace (use --force to evict them anyway, "
            f"and lose them): {', '.join(orphans)}"
        )
    return chosen


@click.command("drain")
@click.argument("name")
@click.option(
    "--timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds to keep trying evictions a disruption budget refuses, and to wait for "
    "the pods to be gone.",
)
@click.option(
    "--retry-interval",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between tries of an eviction a disruption budget refused.",
)
@click.option("--force", is_flag=True, help="Also evict pods no controller would replace.")
@target_options
def drain_command(
    name: str,
    timeout: float,
    retry_interval: float,
    force: bool,
    state_dir: Path | None,
    store_url: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """Cordon node NAME, then evict its pods respecting PodDisruptionBudgets."""
    deadline = time.monotonic() + timeout
    with open_cluster(make_target(state_dir, store_url, server, token)) as cluster:
        _set_unschedulable(cluster, name, True)
        click.echo(f"node/{name} cordoned")
        pending = _to_evict(cluster, name, force=force)
        evicted: list[Pod] = []
        while pending:
            refused: list[Pod] = []
            for pod in pending:
                try:
                    cluster.evict(pod.name, namespace=pod.namespace)
                except NotFound:
                    continue
                except ApiError as exc:
                    if exc.code != _TOO_MANY_REQUESTS:
                        raise click.ClickException(
                            f"evicting pod {pod.namespace}/{pod.name}: {exc}"
                        ) from exc
                    click.echo(
                        f"error when evicting pod {pod.namespace}/{pod.name} (will retry "
                        f"after {retry_interval:g}s): {exc}"
                    )
                    refused.append(pod)
                    continue
                click.echo(f"evicting pod {pod.namespace}/{pod.name}")
                evicted.append(pod)
            pending = refused
            if pending and time.monotonic() + retry_interval > deadline:
                names = ", ".join(f"{p.namespace}/{p.name}" for p in pending)
                raise click.ClickException(
                    f"drain of node {name} timed out after {timeout:g}s; pods a disruption "
                    f"budget kept: {names} (the node stays cordoned)"
                )
            if pending:
                time.sleep(retry_interval)
        _wait_gone(cluster, evicted, deadline)
    click.echo(f"node/{name} drained")


def _wait_gone(cluster: ClusterView, pods: list[Pod], deadline: float) -> None:
    """Until every evicted pod object is gone (its containers stopped) or the deadline."""
    left = list(pods)
    while left:
        left = [p for p in left if _still_there(cluster, p)]
        if not left:
            return
        if time.monotonic() > deadline:
            names = ", ".join(f"{p.namespace}/{p.name}" for p in left)
            raise click.ClickException(f"evicted pods still terminating: {names}")
        time.sleep(0.2)


def _still_there(cluster: ClusterView, pod: Pod) -> bool:
    try:
        current = cluster.get(Pod, pod.name, namespace=pod.namespace)
    except NotFound:
        return False
    return current.metadata.uid == pod.metadata.uid
