"""``capstan sync [--suspend|--resume]``: pause and resume applying Git, or show the switch.

A suspended sync loop still fetches (so ``capstan status`` shows the commit seen) but applies
nothing until resumed — for an emergency change made by hand that Git must not revert yet.
The switch lives in the store (``reconciler.sync.set_suspended``), so it survives restarts
and every ``capstan up`` replica sees it.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from reconciler.cli._target import make_target, open_cluster, target_options
from reconciler.sync import read_sync_state, set_suspended

__all__ = ["sync"]


@click.command("sync")
@click.option("--suspend", "action", flag_value="suspend", help="Stop applying Git.")
@click.option("--resume", "action", flag_value="resume", help="Apply Git again.")
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@target_options
def sync(
    action: str | None,
    output: str,
    state_dir: Path | None,
    store_url: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """Suspend or resume the Git sync; without a flag, show whether it is suspended."""
    with open_cluster(make_target(state_dir, store_url, server, token)) as cluster:
        if action is None:
            state = read_sync_state(cluster.sync_api)
        else:
            state = set_suspended(cluster.sync_api, action == "suspend")
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "suspended": state.suspended,
                    "seenCommit": state.seen_commit,
                    "liveCommit": state.live_commit,
                },
                indent=2,
            )
        )
        return
    word = "suspended" if state.suspended else "active"
    live = state.live_commit[:12] if state.live_commit else "-"
    click.echo(f"sync is {word}; live commit {live}")
