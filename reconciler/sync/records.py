"""The sync log and the sync switches, kept through the API like any other state.

Written by the sync engine after each attempt and by the sync loop (the commit seen, the
commit live); read by `capstan status`, `capstan history` and `/capstan/v1/syncs`;
`capstan sync --suspend/--resume` flips `suspended`.

Storage form (as Helm keeps its releases): ConfigMaps in the `capstan-system` namespace,
which always exists and cannot be deleted. Each attempt is `sync-<id, 10 digits>` labelled
`capstan.io/sync-record: "true"` with the record as JSON under `record.json`; the last
`keep` (default 100) are kept. The switches and pointers are the ConfigMap
`capstan-sync-state`. None carries the managed-by label, so a sync never prunes them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler.api import AlreadyExists, Api, Conflict, NotFound
from schemas import ConfigMap, ObjectMeta

__all__ = [
    "RECORD_LABEL",
    "STATE_NAME",
    "SYSTEM_NAMESPACE",
    "RecordedChange",
    "SyncRecord",
    "SyncState",
    "list_sync_records",
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

    @property
    def subject(self) -> str:
        return self.message.splitlines()[0] if self.message else ""


@dataclass(frozen=True)
class SyncState:
    """The sync switches and pointers: suspended, the commit seen on the branch, the commit
    live (last applied successfully), and the last attempt's commit and outcome."""

    suspended: bool = False
    seen_commit: str | None = None
    live_commit: str | None = None
    last_attempt_commit: str | None = None
    last_outcome: str | None = None


def _record_name(record_id: int) -> str:
    return f"{_RECORD_PREFIX}{record_id:010d}"


def _records(api: Api) -> list[ConfigMap]:
    found = api.list(ConfigMap, namespace=SYSTEM_NAMESPACE,
                     label_selector={RECORD_LABEL: "true"}).items
    return sorted(found, key=lambda cm: cm.name)


def record_sync(api: Api, record: SyncRecord, *, keep: int = 100) -> SyncRecord:
    """Store `record` under the next id (its own `id` is ignored); drop the oldest beyond
    `keep`. Returns the record as stored."""
    trimmed = record.model_copy(update={
        "changes": [
            c.model_copy(update={"fields": c.fields[:_MAX_FIELDS]})
            for c in record.changes[:_MAX_CHANGES]
        ],
        "changes_total": max(record.changes_total, len(record.changes)),
        "errors": record.errors[:_MAX_ERRORS],
    })
    for _attempt in range(_RETRIES):
        existing = _records(api)
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
        for old in existing[: max(0, len(existing) + 1 - keep)]:
            with contextlib.suppress(NotFound):
                api.delete(ConfigMap, old.name, namespace=SYSTEM_NAMESPACE)
        return stored
    raise Conflict("could not allocate a sync record id")


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
    return SyncState(
        suspended=data.get("suspended") == "true",
        seen_commit=data.get("seenCommit") or None,
        live_commit=data.get("liveCommit") or None,
        last_attempt_commit=data.get("lastAttemptCommit") or None,
        last_outcome=data.get("lastOutcome") or None,
    )


def _state_data(state: SyncState) -> dict[str, str]:
    data = {"suspended": "true" if state.suspended else "false"}
    for key, value in (
        ("seenCommit", state.seen_commit),
        ("liveCommit", state.live_commit),
        ("lastAttemptCommit", state.last_attempt_commit),
        ("lastOutcome", state.last_outcome),
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
        return SyncState(
            suspended=state.suspended if suspended is None else suspended,
            seen_commit=seen_commit or state.seen_commit,
            live_commit=live_commit or state.live_commit,
            last_attempt_commit=last_attempt_commit or state.last_attempt_commit,
            last_outcome=last_outcome or state.last_outcome,
        )

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
    """`capstan sync --suspend` / `--resume`: a suspended loop still fetches (so status
    shows the commit seen) but applies nothing until resumed."""
    return update_sync_state(api, suspended=suspended)
