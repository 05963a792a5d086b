"""``capstan plan``: what merging a change would do — objects, rollouts, pods per node, fit.

The pull-request review step of the GitOps workflow (like ``terraform plan
-detailed-exitcode``): compares a base ref with a head ref or the working tree, against the
live cluster, a saved ``capstan snapshot`` (``--snapshot``) or the base commit alone
(``--git-only``, for CI). The cluster is found as every other command finds it
(``reconciler.cli._target``): ``--cluster URL``, ``--state-dir``, ``--context``,
``$CAPSTAN_STATE_DIR``, the current context of the client config, ``~/.capstan``; when nothing
names one and ``~/.capstan`` holds no Capstan, the base commit stands in. The "Observed:" line
says which was used, and why. Exit 0: no changes; 2: changes; 1: the head does not load,
something would not fit, a cluster named cannot be read, or the command line is wrong.
Reads only: the repository and the cluster are left exactly as they were.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from reconciler.cli._common import env_option, repository_argument
from reconciler.cli._target import (
    Target,
    context_given,
    context_option,
    make_target,
    open_cluster,
)
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
    """Exits 1, not click's usual 2: for ``capstan plan`` 2 means "changes", and a pipeline
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
@click.option(
    "--base",
    metavar="REF",
    default=None,
    help="What the change starts from (default: HEAD with --worktree, else HEAD~1 of the head).",
)
@click.option("--head", metavar="REF", default=None, help="The change (default: HEAD).")
@click.option("--worktree", is_flag=True, help="Plan the working tree as it is (uncommitted).")
@env_option
@click.option(
    "--subdir",
    metavar="DIR",
    default=None,
    help="Load only the manifests under DIR (as `capstan up --subdir`).",
)
@click.option(
    "--cluster",
    metavar="URL",
    default=None,
    help="Observe this cluster: its API (https://HOST:PORT; token from the client "
    "config or CAPSTAN_TOKEN) or its store (sqlite:///..., etcd://...).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Observe the cluster of the `capstan up` with this state directory "
    "(its API if it serves one, else its store), as `capstan status` does.",
)
@context_option
@click.option(
    "--snapshot",
    "snapshot_file",
    metavar="FILE",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Observe a saved `capstan snapshot` instead of a live cluster.",
)
@click.option(
    "--git-only",
    "--offline",
    "git_only",
    is_flag=True,
    help="Observe no cluster: the base commit's Node manifests and workloads stand "
    "for it (for CI, where no cluster is reachable).",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "markdown", "json"]),
    default="text",
    show_default=True,
    help="markdown: a pull-request comment; json: for programs.",
)
def plan(
    path: Path,
    base: str | None,
    head: str | None,
    worktree: bool,
    env: str | None,
    subdir: str | None,
    cluster: str | None,
    state_dir: Path | None,
    snapshot_file: Path | None,
    git_only: bool,
    output: str,
) -> None:
    """Show what going from BASE to HEAD would do to the cluster at PATH's repository.

    The cluster observed is the one every other command would talk to (the current
    context, $CAPSTAN_STATE_DIR, ~/.capstan), or the one named by --cluster, --state-dir,
    --context or --snapshot; --git-only observes none (CI)."""
    if worktree and head is not None:
        raise _UsageError("--head and --worktree exclude each other")
    chosen = (cluster, state_dir, snapshot_file, context_given(), True if git_only else None)
    if sum(given is not None for given in chosen) > 1:
        raise _UsageError(
            "--cluster, --state-dir, --context, --snapshot and --git-only exclude each other"
        )
    head_ref = None if worktree else (head or "HEAD")
    base_ref = base or ("HEAD" if head_ref is None else f"{head_ref}~1")
    try:
        observed, no_cluster = _observe(cluster, state_dir, snapshot_file, git_only=git_only)
        result = make_plan(
            path,
            base=base_ref,
            head=head_ref,
            env=env,
            subdir=subdir,
            observed=observed,
            no_cluster=no_cluster,
        )
    except (GitReadError, SnapshotError) as exc:
        click.echo(f"capstan plan: {exc}", err=True)
        raise SystemExit(EXIT_ERROR) from None
    render = {"text": render_text, "markdown": render_markdown, "json": render_json}[output]
    click.echo(render(result), nl=False)
    raise SystemExit(result.exit_code)


def _observe(
    cluster: str | None, state_dir: Path | None, snapshot_file: Path | None, *, git_only: bool
) -> tuple[ObservedCluster | None, str | None]:
    """The observed cluster, or None and why none."""
    if snapshot_file is not None:
        return from_snapshot(ClusterSnapshot.load(snapshot_file), label=snapshot_file.name), None
    if git_only:
        return None, "--git-only"
    token = os.environ.get("CAPSTAN_TOKEN")
    if cluster is not None:
        http = cluster.startswith(("http://", "https://"))
        target = make_target(None, None if http else cluster, cluster if http else None, token)
        label = cluster
    else:
        try:
            target = make_target(state_dir, None, None, token)
        except click.ClickException as exc:
            raise SnapshotError(exc.message) from None
        if not target.found and target.origin == "default":
            # Nothing here to look at (a CI runner): the Git-only plan, saying so.
            return None, f"no capstan found in {target.where}"
        label = _label(target)
    try:
        with open_cluster(target) as view:
            return from_reader(view.api, label=label), None
    except Exception as exc:
        # Any failure to reach the cluster (network, auth, a missing store) is the same
        # answer for a reviewer: no plan against it.
        raise SnapshotError(f"cannot read the cluster at {label}: {exc}") from exc


def _label(target: Target) -> str:
    """Which cluster, and why that one: ``/srv/capstan (context prod)``."""
    if target.origin == "--state-dir":
        return target.where
    return f"{target.where} ({target.origin})"
