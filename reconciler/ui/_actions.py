"""What the web UI's buttons do beyond reading: sync now, plan a ref, and roll back.

Built once by ``capstan up`` (:func:`ui_sources`) around the tracked repository, the sync
loop's trigger and a Git cache of the UI's own (the sync loop's is busy on its thread).
The rollback is the one ``capstan rollback`` makes (``reconciler.rollback``): a revert
commit of everything after the previous synced commit, planned first, pushed on confirm.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.api import Api
from reconciler.plan import GitReadError, from_reader, make_plan, render_text
from reconciler.rollback import RollbackError, choose_target, make_revert
from reconciler.source.git import GitSource, GitSourceError
from reconciler.sync import list_sync_records, read_sync_state
from reconciler.ui._views import SourceInfo

__all__ = ["ActionError", "RollbackPreview", "UiSources", "ui_sources"]


class ActionError(Exception):
    """An action could not be carried out; the message says why, for the page."""


@dataclass(frozen=True)
class RollbackPreview:
    """The revert a rollback would commit: on top of ``head``, back to ``target``."""

    head: str
    target: str
    target_subject: str
    reverted: tuple[tuple[str, str], ...]
    plan: str


@dataclass(frozen=True)
class UiSources:
    """What the UI needs from ``capstan up`` besides the API; each None disables its action."""

    source: SourceInfo = field(default_factory=SourceInfo)
    trigger: Callable[[], None] | None = None
    plan: Callable[[str | None], str] | None = None
    rollback_preview: Callable[[], RollbackPreview] | None = None
    rollback: Callable[[str, str], str] | None = None


def ui_sources(
    api: Api,
    *,
    repo: str,
    shown_repo: str,
    branch: str,
    cache_dir: Path,
    env: str | None,
    subdir: str | None,
    trigger: Callable[[], None],
) -> UiSources:
    """The UI's actions over its own Git cache of ``repo`` at ``cache_dir``."""
    source = GitSource(repo, branch=branch, cache_dir=cache_dir)
    lock = threading.Lock()

    def plan(ref: str | None) -> str:
        with lock:
            try:
                source.fetch()
                head = source.resolve(ref or f"refs/heads/{branch}")
                base = read_sync_state(api).live_commit or head.sha
                made = make_plan(
                    source.git_dir,
                    base=base,
                    head=head.sha,
                    env=env,
                    subdir=subdir,
                    observed=from_reader(api, label="(live)"),
                )
            except (GitSourceError, GitReadError) as exc:
                raise ActionError(str(exc)) from exc
            return render_text(made)

    def preview() -> RollbackPreview:
        with lock:
            try:
                source.fetch()
                choice = choose_target(source, steps=1, records=list_sync_records(api))
                sha = make_revert(source, choice, reason="rollback from the web UI")
                made = make_plan(
                    source.git_dir,
                    base=choice.head.sha,
                    head=sha,
                    env=env,
                    subdir=subdir,
                    observed=from_reader(api, label="(live)"),
                )
            except (RollbackError, GitSourceError, GitReadError) as exc:
                raise ActionError(str(exc)) from exc
            return RollbackPreview(
                head=choice.head.sha,
                target=choice.target.sha,
                target_subject=choice.target.subject,
                reverted=tuple((c.short, c.subject) for c in choice.reverted),
                plan=render_text(made),
            )

    def rollback(head: str, target: str) -> str:
        with lock:
            try:
                source.fetch()
                if source.head().sha != head:
                    raise ActionError(
                        f"{branch} moved since the plan was shown: review the rollback again"
                    )
                choice = choose_target(source, to=target)
                sha = make_revert(source, choice, reason="rollback from the web UI")
                source.push()
            except (RollbackError, GitSourceError) as exc:
                raise ActionError(str(exc)) from exc
        trigger()
        return sha

    return UiSources(
        source=SourceInfo(repo=shown_repo, branch=branch),
        trigger=trigger,
        plan=plan,
        rollback_preview=preview,
        rollback=rollback,
    )
