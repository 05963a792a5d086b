"""The sync log and the sync switches, kept through the API like any other state.

Written by the sync engine after each attempt and by the sync loop (the commit seen, the
commit live); read by ``capstan status``, ``capstan history`` and ``/capstan/v1/syncs``;
``capstan sync --suspend/--resume`` flips ``suspended``.

What is kept: every commit applied or refused, every auto-rollback, and every resync that
changed something (repaired drift) or failed. A resync repeating the newest record exactly
(same commit, outcome, changes and errors: a fight with something that keeps undoing it)
only bumps that record's ``repeats``. A resync that changes nothing writes no record: it
updates the "last resync" fields of the sync state. The history is bounded in every case
(``HistoryLimits``): at most ``keep`` records (default 100, like Helm's and Argo CD's history
limits), and none older than ``max_age`` (default 30 days) beyond the newest ``min_keep`` (10),
so the last good commit of a quiet cluster is never forgotten.

Storage form (as Helm keeps its releases): ConfigMaps in the ``capstan-system`` namespace,
which always exists and cannot be deleted. Each record is ``sync-<id, 10 digits>`` labelled
``capstan.io/sync-record: "true"`` with the record as JSON under ``record.json``. The switches
and pointers are the ConfigMap ``capstan-sync-state``. None carries the managed-by label, so
a sync never prunes them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler.api import AlreadyExists, Api, Conflict, NotFound
from schemas import ConfigMap, ObjectMeta

__all__ = [
    "RECORD_LABEL",
    "STATE_NAME",
    "SYSTEM_NAMESPACE",
    "FetchProblem",
    "HistoryLimits",
    "RecordedChange",
    "SyncRecord",
    "SyncState",
    "list_sync_records",
    "note_fetch",
    "note_resync",
    "note_warnings",
    "prune_sync_records",
    "read_sync_state",
    "record_sync",
    "set_suspended",
    "update_sync_state",
]

SYSTEM_NAMESPACE = "capstan-system"
RECORD_LABEL = "capstan.io/sync-record"
STATE_NAME = "capstan-sync-state"
_RECORD_KEY = "record.json"
_RECORD_PREFIX = "sync-"
# One record stays far below the store's value limit even for a sync of thousands of objects.
_MAX_CHANGES = 500
_MAX_FIELDS = 50
_MAX_ERRORS = 200
_RETRIES = 5


@dataclass(frozen=True)
class HistoryLimits:
    """How much of the sync log is kept: at most ``keep`` records, and none older than
    ``max_age`` except the newest ``min_keep``."""

    keep: int = 100
    max_age: timedelta = timedelta(days=30)
    min_keep: int = 10

    def __post_init__(self) -> None:
        if self.keep < 1 or self.min_keep < 0 or self.max_age <= timedelta(0):
            raise ValueError(
                f"history limits need keep >= 1, min_keep >= 0 and a positive "
                f"max_age (got {self.keep}, {self.min_keep}, {self.max_age})"
            )


class RecordedChange(BaseModel):
    """One object a sync wrote, and the field paths it changed (never values)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Literal["create", "update", "delete"]
    object: str
    fields: list[str] = Field(default_factory=list)


class SyncRecord(BaseModel):
    """One sync attempt: which commit, when, how it ended, what changed, what went wrong."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    commit: str
    author: str
    message: str
    commit_time: datetime
    started_at: datetime
    finished_at: datetime
    outcome: Literal["Succeeded", "Failed"]
    trigger: Literal["commit", "resync", "manual", "rollback"]
    changes: list[RecordedChange] = Field(default_factory=list)
    changes_total: int = 0
    unchanged: int = 0
    errors: list[str] = Field(default_factory=list)
    # Deployments this sync created or updated -> the pod-template hash it applied: how
    # `capstan history` finds the Deployment revision (ReplicaSet) a commit produced.
    templates: dict[str, str] = Field(default_factory=dict)
    # How many attempts in a row this record stands for (identical resyncs fold into one);
    # `started_at` is the first one's start, `finished_at` the last one's end.
    repeats: int = 1

    @property
    def subject(self) -> str:
        return self.message.splitlines()[0] if self.message else ""

    def repeats_of(self, other: SyncRecord) -> bool:
        """``self`` (a resync) did exactly what ``other`` did: same commit, outcome and result."""
        return (
            self.trigger == other.trigger == "resync"
            and self.commit == other.commit
            and self.outcome == other.outcome
            and self.changes == other.changes
            and self.errors == other.errors
            and self.templates == other.templates
        )


@dataclass(frozen=True)
class FetchProblem:
    """Fetching the branch keeps failing: since when (the first failure of the run), how
    many attempts in a row, the last error, the back-off step, and when the next try is."""

    error: str
    failures: int
    since: datetime
    backoff_s: float
    next_attempt_at: datetime


@dataclass(frozen=True)
class SyncState:
    """The sync switches and pointers: suspended, the commit seen on the branch, the commit
    live (last applied successfully), the last attempt's commit and outcome, and the last
    periodic resync: when, of which commit, and how many in a row found nothing to change;
    while fetching the branch fails, how (``fetch_problem``); and the loader's warnings about
    the last commit they were said for (``warned_commit``: each commit's are said once)."""

    suspended: bool = False
    seen_commit: str | None = None
    live_commit: str | None = None
    last_attempt_commit: str | None = None
    last_outcome: str | None = None
    last_resync_at: datetime | None = None
    last_resync_commit: str | None = None
    quiet_resyncs: int = 0
    fetch_problem: FetchProblem | None = None
    warned_commit: str | None = None
    warnings: tuple[str, ...] = ()


def _record_name(record_id: int) -> str:
    return f"{_RECORD_PREFIX}{record_id:010d}"


def _records(api: Api) -> list[ConfigMap]:
    found = api.list(
        ConfigMap, namespace=SYSTEM_NAMESPACE, label_selector={RECORD_LABEL: "true"}
    ).items
    return sorted(found, key=lambda cm: cm.name)


def record_sync(
    api: Api, record: SyncRecord, *, keep: int | None = None, limits: HistoryLimits | None = None
) -> SyncRecord:
    """Store ``record`` under the next id (its own ``id`` is ignored), or fold it into the newest
    record when it repeats it (``SyncRecord.repeats_of``); then prune to ``limits`` (``keep``
    overrides its count). Returns the record as stored."""
    limits = limits or HistoryLimits()
    if keep is not None:
        limits = HistoryLimits(
            keep=keep, max_age=limits.max_age, min_keep=min(limits.min_keep, keep)
        )
    trimmed = record.model_copy(
        update={
            "changes": [
                c.model_copy(update={"fields": c.fields[:_MAX_FIELDS]})
                for c in record.changes[:_MAX_CHANGES]
            ],
            "changes_total": max(record.changes_total, len(record.changes)),
            "errors": record.errors[:_MAX_ERRORS],
        }
    )
    for _attempt in range(_RETRIES):
        existing = _records(api)
        newest = _parse(existing[-1]) if existing else None
        if newest is not None and trimmed.repeats_of(newest):
            folded = newest.model_copy(
                update={"repeats": newest.repeats + 1, "finished_at": trimmed.finished_at}
            )
            try:
                api.update(
                    existing[-1].model_copy(
                        update={"data": {_RECORD_KEY: folded.model_dump_json()}}
                    )
                )
            except (Conflict, NotFound):
                continue
            return folded
        next_id = int(existing[-1].name.removeprefix(_RECORD_PREFIX)) + 1 if existing else 1
        stored = trimmed.model_copy(update={"id": next_id})
        cm = ConfigMap(
            metadata=ObjectMeta(
                name=_record_name(next_id),
                namespace=SYSTEM_NAMESPACE,
                labels={RECORD_LABEL: "true"},
            ),
            data={_RECORD_KEY: stored.model_dump_json()},
        )
        try:
            api.create(cm)
        except AlreadyExists:
            continue  # another writer took this id: take the next one
        _prune(api, [*existing, cm], limits=limits, now=stored.finished_at)
        return stored
    raise Conflict("could not allocate a sync record id")


def _parse(cm: ConfigMap) -> SyncRecord | None:
    raw = cm.data.get(_RECORD_KEY)
    return SyncRecord.model_validate_json(raw) if raw is not None else None


def _prune(api: Api, records: list[ConfigMap], *, limits: HistoryLimits, now: datetime) -> int:
    """Delete, oldest first, the records beyond ``limits.keep`` and those older than
    ``limits.max_age`` beyond the newest ``limits.min_keep``. Returns how many went."""
    oldest_kept = now - limits.max_age
    doomed: list[ConfigMap] = []
    for age_rank, cm in enumerate(reversed(records)):  # newest first
        if age_rank >= limits.keep:
            doomed.append(cm)
            continue
        if age_rank < limits.min_keep:
            continue
        parsed = _parse(cm)
        if parsed is None or parsed.finished_at < oldest_kept:
            doomed.append(cm)
    for cm in doomed:
        with contextlib.suppress(NotFound):
            api.delete(ConfigMap, cm.name, namespace=SYSTEM_NAMESPACE)
    return len(doomed)


def prune_sync_records(api: Api, *, limits: HistoryLimits, now: datetime) -> int:
    """Bound the stored history to ``limits`` as of ``now`` (the sync loop calls it now and
    then, so records age out even when nothing new is recorded). Returns how many went."""
    return _prune(api, _records(api), limits=limits, now=now)


def list_sync_records(api: Api, *, limit: int | None = None) -> list[SyncRecord]:
    """Sync records, newest first."""
    records = [
        SyncRecord.model_validate_json(cm.data[_RECORD_KEY])
        for cm in reversed(_records(api))
        if _RECORD_KEY in cm.data
    ]
    return records[:limit] if limit is not None else records


def read_sync_state(api: Api) -> SyncState:
    try:
        cm = api.get(ConfigMap, STATE_NAME, namespace=SYSTEM_NAMESPACE)
    except NotFound:
        return SyncState()
    return _state_from(cm)


def _state_from(cm: ConfigMap) -> SyncState:
    data = cm.data
    resync_at = data.get("lastResync")
    return SyncState(
        suspended=data.get("suspended") == "true",
        seen_commit=data.get("seenCommit") or None,
        live_commit=data.get("liveCommit") or None,
        last_attempt_commit=data.get("lastAttemptCommit") or None,
        last_outcome=data.get("lastOutcome") or None,
        last_resync_at=datetime.fromisoformat(resync_at) if resync_at else None,
        last_resync_commit=data.get("lastResyncCommit") or None,
        quiet_resyncs=int(data.get("quietResyncs") or 0),
        fetch_problem=_fetch_problem_from(data),
        warned_commit=data.get("warnedCommit") or None,
        warnings=tuple(json.loads(data.get("warnings") or "[]")),
    )


def _fetch_problem_from(data: dict[str, str]) -> FetchProblem | None:
    error = data.get("fetchError")
    if not error:
        return None
    return FetchProblem(
        error=error,
        failures=int(data.get("fetchFailures") or 1),
        since=datetime.fromisoformat(data["fetchFailingSince"]),
        backoff_s=float(data.get("fetchBackoffSeconds") or 0),
        next_attempt_at=datetime.fromisoformat(data["fetchNextAttempt"]),
    )


def _state_data(state: SyncState) -> dict[str, str]:
    data = {"suspended": "true" if state.suspended else "false"}
    for key, value in (
        ("seenCommit", state.seen_commit),
        ("liveCommit", state.live_commit),
        ("lastAttemptCommit", state.last_attempt_commit),
        ("lastOutcome", state.last_outcome),
        ("lastResync", state.last_resync_at.isoformat() if state.last_resync_at else None),
        ("lastResyncCommit", state.last_resync_commit),
        ("quietResyncs", str(state.quiet_resyncs) if state.last_resync_at else None),
        ("warnedCommit", state.warned_commit),
        ("warnings", json.dumps(list(state.warnings)) if state.warnings else None),
    ):
        if value:
            data[key] = value
    problem = state.fetch_problem
    for key, value in (
        ("fetchError", problem.error if problem else None),
        ("fetchFailures", str(problem.failures) if problem else None),
        ("fetchFailingSince", problem.since.isoformat() if problem else None),
        ("fetchBackoffSeconds", f"{problem.backoff_s:g}" if problem else None),
        ("fetchNextAttempt", problem.next_attempt_at.isoformat() if problem else None),
    ):
        if value:
            data[key] = value
    return data


def update_sync_state(
    api: Api,
    *,
    suspended: bool | None = None,
    seen_commit: str | None = None,
    live_commit: str | None = None,
    last_attempt_commit: str | None = None,
    last_outcome: str | None = None,
) -> SyncState:
    """Change the given fields (None leaves one as it is), retrying on a concurrent write."""

    def changed(state: SyncState) -> SyncState:
        return replace(
            state,
            suspended=state.suspended if suspended is None else suspended,
            seen_commit=seen_commit or state.seen_commit,
            live_commit=live_commit or state.live_commit,
            last_attempt_commit=last_attempt_commit or state.last_attempt_commit,
            last_outcome=last_outcome or state.last_outcome,
        )

    return _edit_state(api, changed)


def note_fetch(api: Api, problem: FetchProblem | None) -> SyncState:
    """The sync loop's fetch of the branch failed again (``problem``), or worked (None clears
    what an outage left). Only the fetch fields change."""

    def noted(state: SyncState) -> SyncState:
        return replace(state, fetch_problem=problem)

    return _edit_state(api, noted)


def note_resync(api: Api, *, commit: str, at: datetime, changed: bool, quiet: int = 1) -> SyncState:
    """A periodic resync of ``commit`` ran at ``at``: the one place a resync that found nothing
    to change leaves a trace (``quiet_resyncs`` counts those of this commit in a row: the
    first resync of a new commit starts the count again). With ``changed`` False, ``quiet``
    says how many quiet resyncs of ``commit`` this note stands for (the sync loop writes
    them in groups, the last one's time as ``at``)."""

    def noted(state: SyncState) -> SyncState:
        kept = state.quiet_resyncs if state.last_resync_commit == commit else 0
        return replace(
            state,
            last_resync_at=at,
            last_resync_commit=commit,
            quiet_resyncs=0 if changed else kept + quiet,
        )

    return _edit_state(api, noted)


def note_warnings(api: Api, *, commit: str, warnings: Sequence[str]) -> SyncState:
    """The sync loop said the loader's ``warnings`` (file:line: field: message) about ``commit``:
    ``capstan status`` shows them, and no pass over the same commit says them again."""

    def noted(state: SyncState) -> SyncState:
        return replace(state, warned_commit=commit, warnings=tuple(warnings))

    return _edit_state(api, noted)


def _edit_state(api: Api, changed: Callable[[SyncState], SyncState]) -> SyncState:
    for _attempt in range(_RETRIES):
        try:
            cm = api.get(ConfigMap, STATE_NAME, namespace=SYSTEM_NAMESPACE)
        except NotFound:
            state = changed(SyncState())
            fresh = ConfigMap(
                metadata=ObjectMeta(name=STATE_NAME, namespace=SYSTEM_NAMESPACE),
                data=_state_data(state),
            )
            try:
                api.create(fresh)
            except AlreadyExists:
                continue
            return state
        state = changed(_state_from(cm))
        try:
            api.update(cm.model_copy(update={"data": _state_data(state)}))
        except (Conflict, NotFound):
            continue
        return state
    raise Conflict("the sync state kept changing")


def set_suspended(api: Api, suspended: bool) -> SyncState:
    """``capstan sync --suspend`` / ``--resume``: a suspended loop still fetches (so status
    shows the commit seen) but applies nothing until resumed."""
    return update_sync_state(api, suspended=suspended)
