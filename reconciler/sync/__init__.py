"""Sync: make the API hold what a commit says, keep doing it, and keep a log of it.

The step after ``reconciler.source`` in the data flow (desired(commit) vs observed(store) →
plan → API writes). Offers:

- ``sync_commit(api, repo, *, commit, prune, allow_empty, dry_run) -> SyncResult`` and the
  pure ``plan_sync(desired, live) -> SyncPlan`` (``capstan plan`` reuses it), ``failed_commit``
  for a commit that did not load, ``managed_object``, ``list_managed``;
- ``SyncLoop`` (a start/stop component for ``capstan up``) with ``SyncOptions``;
- the sync log and switches: ``SyncRecord``, ``list_sync_records``, ``HistoryLimits``,
  ``SyncState``, ``read_sync_state``, ``set_suspended``;
- per-object status: ``app_health(api, objects) -> [ObjectStatus]``, ``object_health``.

Field-level diffs live in ``reconciler.diff``.
"""

from reconciler.sync.engine import (
    APPLY_ORDER,
    ObjectChange,
    Outcome,
    SyncPlan,
    SyncResult,
    Trigger,
    failed_commit,
    list_managed,
    managed_object,
    plan_sync,
    sync_commit,
)
from reconciler.sync.health import Health, ObjectStatus, SyncStatus, app_health, object_health
from reconciler.sync.loop import DEFAULT_RESYNC_S, SyncLoop, SyncOptions
from reconciler.sync.records import (
    HistoryLimits,
    RecordedChange,
    SyncRecord,
    SyncState,
    list_sync_records,
    read_sync_state,
    record_sync,
    set_suspended,
    update_sync_state,
)

__all__ = [
    "APPLY_ORDER",
    "DEFAULT_RESYNC_S",
    "Health",
    "HistoryLimits",
    "ObjectChange",
    "ObjectStatus",
    "Outcome",
    "RecordedChange",
    "SyncLoop",
    "SyncOptions",
    "SyncPlan",
    "SyncRecord",
    "SyncResult",
    "SyncState",
    "SyncStatus",
    "Trigger",
    "app_health",
    "failed_commit",
    "list_managed",
    "list_sync_records",
    "managed_object",
    "object_health",
    "plan_sync",
    "read_sync_state",
    "record_sync",
    "set_suspended",
    "sync_commit",
    "update_sync_state",
]
