"""``capstan rollback``: undo deployed commits the GitOps way — with a ``git revert`` commit.

Called by the CLI (``reconciler.cli.rollback``). The state to restore is a commit: ``--to SHA``,
or ``--steps N`` synced commits back (from the sync log, ``reconciler.sync``; the branch's
first-parent history when no cluster is reachable). Every commit after it on the tracked
branch is reverted, newest first, in one commit whose message names what is reverted and
why (``GitSource.revert``). The cluster then follows as for any commit: the sync loop applies
it, and the Deployment controller finds the old ReplicaSet with the same pod-template hash
and scales it back up — no new ReplicaSet, no new image pull.

Choosing is separate from doing (``choose_target`` is plain data in, data out) so the CLI can
show the plan of the revert before anything is pushed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.source.git import CommitInfo, CommitSha, GitSource, GitSourceError
from reconciler.sync.records import SyncRecord
from reconciler.workloads.deployment import revision_of
from schemas import ReplicaSet

__all__ = [
    "ProducedRevision",
    "RollbackError",
    "RollbackTarget",
    "choose_target",
    "commits_since",
    "make_revert",
    "produced_revisions",
    "push_upstream",
    "revert_message",
    "synced_commits",
]


@dataclass(frozen=True)
class ProducedRevision:
    """A Deployment a sync changed, the ReplicaSet of the template it applied, and that
    ReplicaSet's revision now (None: it is gone, cleaned up past revisionHistoryLimit)."""

    deployment: str
    replica_set: str
    revision: int | None

    def describe(self) -> str:
        return f"{self.deployment}@{self.revision if self.revision is not None else '?'}"


def produced_revisions(
    record: SyncRecord, replicasets: Sequence[ReplicaSet]
) -> list[ProducedRevision]:
    """The Deployment revisions ``record``'s sync produced (``capstan history``)."""
    by_name = {(rs.namespace, rs.name): rs for rs in replicasets}
    produced = []
    for key, template_hash in sorted(record.templates.items()):
        _kind, namespace, name = key.split("/", 2)
        rs_name = f"{name}-{template_hash}"
        rs = by_name.get((namespace, rs_name))
        produced.append(
            ProducedRevision(
                f"{namespace}/{name}", rs_name, revision_of(rs) if rs is not None else None
            )
        )
    return produced


class RollbackError(Exception):
    """No such state to go back to, or Git refused the revert."""


@dataclass(frozen=True)
class RollbackTarget:
    """Restore ``target``'s state by reverting ``reverted`` (newest first) on top of ``head``."""

    head: CommitInfo
    target: CommitInfo
    reverted: tuple[CommitInfo, ...]


def synced_commits(records: Sequence[SyncRecord]) -> list[str]:
    """Commits that were live, newest first, each once (failed and rollback records skipped)."""
    seen: list[str] = []
    for record in records:
        if (
            record.outcome == "Succeeded"
            and record.trigger != "rollback"
            and record.commit not in seen
        ):
            seen.append(record.commit)
    return seen


def commits_since(source: GitSource, target: str) -> list[CommitInfo]:
    """The commits on the tracked branch after ``target``, newest first (first parent)."""
    head = source.head()
    proc = subprocess.run(
        [
            "git",
            "--git-dir",
            str(source.git_dir),
            "rev-list",
            "--first-parent",
            f"{target}..{head.sha}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RollbackError(f"cannot list commits after {target[:12]}: {proc.stderr.strip()}")
    return [source.resolve(sha) for sha in proc.stdout.split()]


def choose_target(
    source: GitSource,
    *,
    to: str | None = None,
    steps: int | None = None,
    records: Sequence[SyncRecord] = (),
) -> RollbackTarget:
    """What ``--to`` / ``--steps`` mean on the fetched branch. ``records`` (newest first) make
    ``--steps`` count synced commits; without them it counts commits."""
    head = source.head()
    if to is not None and steps is not None:
        raise RollbackError("give --to or --steps, not both")
    try:
        if to is not None:
            target = source.resolve(to)
        else:
            count = 1 if steps is None else steps
            if count < 1:
                raise RollbackError("--steps must be at least 1")
            synced = synced_commits(records)
            if head.sha in synced:
                synced = synced[synced.index(head.sha) :]
            if len(synced) > count:
                target = source.resolve(synced[count])
            else:
                target = source.resolve(f"{head.sha}~{count}")
    except GitSourceError as exc:
        raise RollbackError(str(exc)) from exc
    reverted = commits_since(source, target.sha)
    if target.sha != head.sha and not reverted:
        raise RollbackError(f"{target.short} is not an ancestor of {source.branch}'s head")
    if not reverted:
        raise RollbackError(f"{target.short} is the head of {source.branch}: nothing to undo")
    return RollbackTarget(head=head, target=target, reverted=tuple(reverted))


def revert_message(choice: RollbackTarget, *, reason: str | None) -> str:
    subject = (
        f"Roll back to {choice.target.short}: {choice.target.subject}"
        if choice.target.subject
        else f"Roll back to {choice.target.short}"
    )
    lines = [subject, "", f"Reverts {len(choice.reverted)} commit(s):"]
    lines.extend(f"  {c.short} {c.subject}" for c in choice.reverted)
    lines += ["", f"Why: {reason or 'capstan rollback'}"]
    return "\n".join(lines)


def make_revert(source: GitSource, choice: RollbackTarget, *, reason: str | None) -> CommitSha:
    """The revert commit on the tracked branch of the cache (not yet pushed)."""
    try:
        return source.revert(
            [c.sha for c in choice.reverted], message=revert_message(choice, reason=reason)
        )
    except GitSourceError as exc:
        raise RollbackError(str(exc)) from exc


def push_upstream(repo: Path, branch: str) -> str:
    """``git push`` of ``branch`` from the local clone ``repo`` to its upstream (the remote the
    cluster tracks). Returns git's report."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "push", "--porcelain", "origin", f"{branch}:{branch}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RollbackError(f"git push failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()
