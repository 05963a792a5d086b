"""`capstan plan`: what merging a change would do — objects, rollouts, pods per node, fit.

The pull-request review step of the GitOps workflow (like `terraform plan
-detailed-exitcode`): compares a base ref with a head ref or the working tree, against the
live cluster (`--cluster`, or `--state-dir` for the `capstan up` whose state directory it is,
as every other command takes it), a saved `capstan snapshot` (`--snapshot`) or the base
commit alone. Exit 0: no changes; 2: changes; 1: the head does not load, something would
not fit, or the command line is wrong. Reads only: the repository and the cluster are left
exactly as they were.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from reconciler.cli._common import env_option, repository_argument
from reconciler.cli._target import make_target, open_cluster
from reconciler.plan import (
    EXIT_ERROR,
    GitReadError,
    ObservedCluster,
    from_reader,
    from_snapshot,
    make_plan,
    render_json,
    render_markdown,
    render_text,
)
from reconciler.snapshot import ClusterSnapshot, SnapshotError

__all__ = ["plan"]


class _UsageError(click.UsageError):
    """Exits 1, not click's usual 2: for `capstan plan` 2 means "changes", and a pipeline
    must not read a mistyped option as a change to review."""

    exit_code = EXIT_ERROR


class _PlanCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _UsageError(exc.format_message(), ctx=exc.ctx) from exc


@click.command(cls=_PlanCommand)
@repository_argument
@click.option("--base", metavar="REF", default=None,
              help="What the change starts from (default: HEAD with --worktree, else HEAD~1 "
                   "of the head).")
@click.option("--head", metavar="REF", default=None, help="The change (default: HEAD).")
@click.option("--worktree", is_flag=True, help="Plan the working tree as it is (uncommitted).")
@env_option
@click.option("--subdir", metavar="DIR", default=None,
              help="Load only the manifests under DIR (as `capstan up --subdir`).")
@click.option("--cluster", metavar="URL", default=None,
              help="Observe this cluster: its API (https://HOST:PORT; token from the client "
                   "config or CAPSTAN_TOKEN) or its store (sqlite:///..., etcd://...).")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="Observe the cluster of the `capstan up` with this state directory "
                   "(its API if it serves one, else its store), as `capstan status` does.")
@click.option("--snapshot", "snapshot_file", metavar="FILE", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Observe a saved `capstan snapshot` instead of a live cluster.")
@click.option("-o", "--output", type=click.Choice(["text", "markdown", "json"]),
              default="text", show_default=True,
              help="markdown: a pull-request comment; json: for programs.")
def plan(path: Path, base: str | None, head: str | None, worktree: bool, env: str | None,
         subdir: str | None, cluster: str | None, state_dir: Path | None,
         snapshot_file: Path | None, output: str) -> None:
    """Show what going from BASE to HEAD would do to the cluster at PATH's repository."""
    if worktree and head is not None:
        raise _UsageError("--head and --worktree exclude each other")
    if sum(given is not None for given in (cluster, state_dir, snapshot_file)) > 1:
        raise _UsageError("--cluster, --state-dir and --snapshot exclude each other")
    head_ref = None if worktree else (head or "HEAD")
    base_ref = base or ("HEAD" if head_ref is None else f"{head_ref}~1")
    try:
        observed = _observe(cluster, state_dir, snapshot_file)
        result = make_plan(path, base=base_ref, head=head_ref, env=env, subdir=subdir,
                           observed=observed)
    except (GitReadError, SnapshotError) as exc:
        click.echo(f"capstan plan: {exc}", err=True)
        raise SystemExit(EXIT_ERROR) from None
    render = {"text": render_text, "markdown": render_markdown, "json": render_json}[output]
    click.echo(render(result), nl=False)
    raise SystemExit(result.exit_code)


def _observe(cluster: str | None, state_dir: Path | None,
             snapshot_file: Path | None) -> ObservedCluster | None:
    if snapshot_file is not None:
        return from_snapshot(ClusterSnapshot.load(snapshot_file), label=snapshot_file.name)
    token = os.environ.get("CAPSTAN_TOKEN")
    if cluster is not None:
        http = cluster.startswith(("http://", "https://"))
        target = make_target(None, None if http else cluster, cluster if http else None, token)
        label = cluster
    elif state_dir is not None:
        target = make_target(state_dir, None, None, token)
        label = str(state_dir)
    else:
        return None
    try:
        with open_cluster(target) as view:
            return from_reader(view.api, label=label)
    except Exception as exc:
        # Any failure to reach the cluster (network, auth, a missing store) is the same
        # answer for a reviewer: no plan against it.
        raise SnapshotError(f"cannot read the cluster at {label}: {exc}") from exc
