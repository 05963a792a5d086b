"""``capstan rollback [--to SHA | --steps N] [--push] [--yes]``: undo deployed commits by reverts.

Makes the ``git revert`` commit that restores the chosen state on the tracked branch
(``reconciler.rollback``), shows its plan first (``reconciler.plan``, against the running
cluster when one is reachable, so a reused ReplicaSet shows as reused), asks, then commits
it to the local repository — which is the push when ``capstan up`` tracks this repository —
and with ``--push`` sends it to ``origin``. The cluster then follows as for any commit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import click

from reconciler.cli._common import repository_argument
from reconciler.cli._target import Target, make_target, open_cluster, target_options
from reconciler.plan import (
    GitReadError,
    ObservedCluster,
    RepoReader,
    from_reader,
    make_plan,
    render_markdown,
    render_text,
)
from reconciler.rollback import (
    RollbackError,
    choose_target,
    make_revert,
    push_upstream,
)
from reconciler.source.git import GitSource, GitSourceError
from reconciler.sync import SyncRecord, list_sync_records

__all__ = ["rollback"]

EXIT_ERROR = 1


@click.command()
@repository_argument
@click.option("--branch", default="main", show_default=True, help="The tracked branch.")
@click.option("--to", "to", metavar="SHA", default=None, help="Restore this commit's state.")
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Restore the state N synced commits back (default 1).",
)
@click.option("--reason", default=None, help="Why (goes into the commit message).")
@click.option("--push", is_flag=True, help="Also push the branch to origin.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before committing.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "markdown"]),
    default="text",
    show_default=True,
    help="How to show the plan of the revert.",
)
@target_options
def rollback(
    path: Path,
    branch: str,
    to: str | None,
    steps: int | None,
    reason: str | None,
    push: bool,
    yes: bool,
    output: str,
    state_dir: Path | None,
    store_url: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """Revert the commits after the chosen state on BRANCH of the repository at PATH."""
    records, observed = _cluster(make_target(state_dir, store_url, server, token))
    try:
        reader = RepoReader(path)
        # Refs as the user writes them (HEAD~2, origin/main) mean their repository's.
        to_sha = reader.resolve(to).sha if to is not None else None
    except GitReadError as exc:
        click.echo(f"capstan rollback: {exc}", err=True)
        raise SystemExit(EXIT_ERROR) from None
    toplevel = reader.toplevel
    with tempfile.TemporaryDirectory(prefix="capstan-rollback-") as cache:
        try:
            source = GitSource(toplevel, branch=branch, cache_dir=Path(cache))
            source.fetch()
            choice = choose_target(source, to=to_sha, steps=steps, records=records)
            sha = make_revert(source, choice, reason=reason)
            plan = make_plan(
                path, base=choice.head.sha, head=sha, observed=observed, git_dir=source.git_dir
            )
        except (RollbackError, GitSourceError, GitReadError) as exc:
            click.echo(f"capstan rollback: {exc}", err=True)
            raise SystemExit(EXIT_ERROR) from None
        click.echo(
            f"Rolling {branch} back to {choice.target.short} "
            f"({choice.target.subject}) by reverting:"
        )
        for commit in choice.reverted:
            click.echo(f"  {commit.short} {commit.subject}")
        click.echo()
        click.echo((render_markdown if output == "markdown" else render_text)(plan), nl=False)
        where = "the local repository" + (" and origin" if push else "")
        if not yes and not click.confirm(f"Commit revert {sha[:12]} to {branch} in {where}?"):
            click.echo("nothing changed")
            return
        try:
            source.push()
            if push:
                push_upstream(toplevel, branch)
        except (GitSourceError, RollbackError) as exc:
            click.echo(f"capstan rollback: {exc}", err=True)
            raise SystemExit(EXIT_ERROR) from None
    click.echo(f"committed {sha[:12]} on {branch} ({where}); the cluster follows on its next sync")


def _cluster(target: Target) -> tuple[Sequence[SyncRecord], ObservedCluster | None]:
    """The sync log and the observed cluster, when a cluster is reachable; else nothing
    (then --steps counts commits, and the plan uses the base commit)."""
    try:
        with open_cluster(target) as view:
            return (list_sync_records(view.sync_api), from_reader(view.api, label=view.via))
    except Exception as exc:
        # Whatever the failure (none running, unreachable, refused): no cluster to ask.
        click.echo(f"note: no cluster reachable ({exc}); --steps counts commits", err=True)
        return [], None
