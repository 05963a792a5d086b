"""What the web UI's buttons do beyond reading: sync now, plan a ref, and roll back.

Built once by ``capstan up`` (:func:`ui_sources`) around the tracked repository, the sync
loop's trigger and a Git cache of the UI's own (the sync loop's is busy on its thread).
The rollback is the one ``capstan rollback`` makes (``reconciler.rollback``): a revert
commit of everything after the previous synced commit, planned first, pushed on confirm.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.api import Api, NotFound
from reconciler.nodes.logs import LogsError, pod_log_source
from reconciler.plan import GitReadError, from_reader, make_plan, render_text
from reconciler.rollback import RollbackError, choose_target, make_revert
from reconciler.source.git import GitSource, GitSourceError
from reconciler.sync import list_sync_records, read_sync_state
from reconciler.ui._views import SourceInfo
from schemas import Pod

__all__ = ["ActionError", "LogStream", "RollbackPreview", "UiSources", "ui_sources"]

#: ``(namespace, pod, tail, follow) -> text chunks`` of the pod's first container.
LogStream = Callable[[str, str, int, bool], Generator[str, None, None]]


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
    #: ``(ref, base)``: what syncing ``ref`` does now (base None: from the live commit,
    #: against the live cluster), or what a past sync from ``base`` to ``ref`` changed.
    plan: Callable[[str | None, str | None], str] | None = None
    rollback_preview: Callable[[], RollbackPreview] | None = None
    rollback: Callable[[str, str], str] | None = None
    logs: LogStream | None = None


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
    local_agent_command: str,
) -> UiSources:
    """The UI's actions over its own Git cache of ``repo`` at ``cache_dir``; pod logs come
    from the node's agent as for ``capstan logs`` (``local_agent_command`` for the local
    node)."""
    source = GitSource(repo, branch=branch, cache_dir=cache_dir)
    lock = threading.Lock()

    def plan(ref: str | None, base: str | None = None) -> str:
        with lock:
            try:
                source.fetch()
                head = source.resolve(ref or f"refs/heads/{branch}")
                if base is not None:
                    # A past sync: commit against commit, the cluster as the base describes it.
                    made = make_plan(
                        source.git_dir,
                        base=source.resolve(base).sha,
                        head=head.sha,
                        env=env,
                        subdir=subdir,
                        no_cluster="a past sync, compared commit to commit",
                    )
                    return render_text(made)
                live = read_sync_state(api).live_commit or head.sha
                made = make_plan(
                    source.git_dir,
                    base=live,
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
                # From what runs (the live commit), as the cluster will see the revert.
                base = read_sync_state(api).live_commit or choice.head.sha
                made = make_plan(
                    source.git_dir,
                    base=base,
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

    open_log = pod_log_source(api, local_agent_command=local_agent_command)

    def logs(namespace: str, pod: str, tail: int, follow: bool) -> Generator[str, None, None]:
        try:
            found = api.get(Pod, pod, namespace=namespace)
            stream = open_log(found, found.spec.containers[0].name, tail, follow, False)
        except (NotFound, LogsError) as exc:
            raise ActionError(str(exc)) from exc
        try:
            yield from stream
        except LogsError as exc:
            raise ActionError(str(exc)) from exc
        finally:
            stream.close()

    return UiSources(
        source=SourceInfo(repo=shown_repo, branch=branch),
        trigger=trigger,
        plan=plan,
        rollback_preview=preview,
        rollback=rollback,
        logs=logs,
    )
