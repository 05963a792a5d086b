"""``capstan snapshot -o FILE``: save the cluster as ``capstan plan --snapshot FILE`` reads it.

For reviewing changes where the cluster cannot be reached (a CI runner outside the
network): take a snapshot where it can, hand the file over. Reads only; Secret values are
never written (``reconciler.snapshot``).
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli._target import make_target, open_cluster, target_options
from reconciler.snapshot import take_snapshot

__all__ = ["snapshot"]


@click.command()
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the snapshot (JSON).",
)
@target_options
def snapshot(
    output: Path,
    state_dir: Path | None,
    store_url: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """Save nodes, bound pods, ReplicaSets and managed objects of the running cluster."""
    with open_cluster(make_target(state_dir, store_url, server, token)) as cluster:
        taken = take_snapshot(cluster.api)
    taken.save(output)
    click.echo(
        f"{output}: {len(taken.nodes)} nodes, {len(taken.pods)} pods, "
        f"{len(taken.replicasets)} replica sets, {len(taken.objects)} objects "
        f"(revision {taken.revision if taken.revision is not None else '-'})"
    )
