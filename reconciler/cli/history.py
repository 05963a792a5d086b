"""``capstan history [--limit N]``: what was deployed, when, by whom, and what it produced.

One line per record of the sync log (``reconciler.sync.list_sync_records``): commits applied
or refused, auto-rollbacks, and resyncs that repaired drift or failed (``resync x12``: twelve
identical ones in a row) — time, commit, author, outcome, trigger, the Deployment revisions
it produced (``deployment@revision``, the revision of the ReplicaSet running the template it
applied — what ``capstan rollback`` brings back) and the commit's subject. Resyncs that
changed nothing have no line: the last one is summed up below the table.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from reconciler.cli._table import format_table
from reconciler.cli._target import make_target, open_cluster, target_options
from reconciler.rollback import produced_revisions
from reconciler.sync import SyncRecord, SyncState, list_sync_records, read_sync_state
from schemas import ReplicaSet

__all__ = ["history"]

_MAX_SUBJECT = 50


@click.command()
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Show the newest N syncs.",
)
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@target_options
def history(
    limit: int,
    output: str,
    state_dir: Path | None,
    store_url: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """Each synced commit, newest first: time, author, message, outcome, revisions."""
    with open_cluster(make_target(state_dir, store_url, server, token)) as cluster:
        records = list_sync_records(cluster.sync_api, limit=limit)
        state = read_sync_state(cluster.sync_api)
        replicasets = cluster.list(ReplicaSet)
    rows = [(r, produced_revisions(r, replicasets)) for r in records]
    if output == "json":
        click.echo(
            json.dumps(
                [
                    {
                        **r.model_dump(mode="json"),
                        "revisions": [
                            {
                                "deployment": p.deployment,
                                "replicaSet": p.replica_set,
                                "revision": p.revision,
                            }
                            for p in produced
                        ],
                    }
                    for r, produced in rows
                ],
                indent=2,
            )
        )
        return
    if not rows:
        click.echo("no syncs recorded yet")
        return
    click.echo(
        format_table(
            ("ID", "FINISHED", "COMMIT", "AUTHOR", "OUTCOME", "TRIGGER", "REVISIONS", "MESSAGE"),
            [
                (
                    r.id,
                    f"{r.finished_at:%Y-%m-%d %H:%M:%S}",
                    r.commit[:12],
                    r.author.split(" <", 1)[0],
                    r.outcome,
                    _trigger(r),
                    ", ".join(p.describe() for p in produced) or "-",
                    _short(r.subject),
                )
                for r, produced in rows
            ],
        )
    )
    quiet = _last_resync(state)
    if quiet:
        click.echo(quiet)


def _trigger(record: SyncRecord) -> str:
    return record.trigger if record.repeats == 1 else f"{record.trigger} x{record.repeats}"


def _last_resync(state: SyncState) -> str | None:
    if state.last_resync_at is None or state.last_resync_commit is None:
        return None
    done = (
        f"nothing to change ({state.quiet_resyncs} in a row)"
        if state.quiet_resyncs
        else "it changed something (see above)"
    )
    return (
        f"last resync: {state.last_resync_at:%Y-%m-%d %H:%M:%S} of "
        f"{state.last_resync_commit[:12]}: {done}"
    )


def _short(text: str) -> str:
    return text if len(text) <= _MAX_SUBJECT else text[: _MAX_SUBJECT - 1] + "…"
