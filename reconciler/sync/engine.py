"""Applying one commit: diff desired (the commit) against observed (the API), plan, apply.

Called by the sync loop (``reconciler.sync.loop``) for each new head and on every resync, and
by ``capstan sync``. ``plan_sync`` is pure — desired and live objects in, a ``SyncPlan`` out — so
``capstan plan`` can diff two commits with it; ``sync_commit`` reads the live side through the
API, applies the plan in dependency order (what others refer to first, deletions last in
reverse order) and records the attempt.

Objects Capstan manages carry the label ``capstan.io/managed-by: capstan`` and the annotations
``capstan.io/source`` (file:line) and ``capstan.io/commit`` (the commit that last changed them).
Only managed objects are ever pruned, and never one annotated ``capstan.io/prune: "false"``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from reconciler.api import Api, ApiError, Conflict, NotFound, now_utc
from reconciler.diff import (
    COMMIT_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PRUNE_ANNOTATION,
    SOURCE_ANNOTATION,
    FieldChange,
    diff_objects,
    fill_server_defaults,
    is_ignored_annotation,
)
from reconciler.source import LoadedObject, LoadedRepository, ManifestErrors
from reconciler.source.git import CommitInfo
from reconciler.source.load import APPLY_ORDER
from reconciler.sync.records import HistoryLimits, RecordedChange, SyncRecord, record_sync
from reconciler.workloads.deployment import pod_template_hash
from schemas import SUPPORTED_KINDS, Deployment, KubeObject, ObjectKey, model_for

__all__ = [
    "APPLY_ORDER",
    "Action",
    "CachedKind",
    "ObjectChange",
    "Outcome",
    "SyncPlan",
    "SyncResult",
    "Trigger",
    "failed_commit",
    "list_managed",
    "managed_object",
    "plan_sync",
    "sync_commit",
]

#: Every object of a kind as a cache of this process holds it (the controllers' informers),
#: or None when it holds none of that kind: where a resync may read the live side instead of
#: ranging the store. Reads only: every write re-reads its object through the API first.
CachedKind = Callable[[type[KubeObject]], Sequence[KubeObject] | None]

Action = Literal["create", "update", "delete"]
Outcome = Literal["Succeeded", "Failed"]
Trigger = Literal["commit", "resync", "manual"]

# Writes follow the loader's APPLY_ORDER (a namespaced object needs its Namespace, a Pod its
# ServiceAccount, ConfigMaps and Secrets); deletions run in the reverse order, so a
# Namespace goes last.
_WRITE_RETRIES = 3
# Server-owned metadata an update must carry over from the live object.
_KEPT_METADATA = ("finalizers", "ownerReferences")


@dataclass(frozen=True)
class ObjectChange:
    """One planned write: what, to which object, which fields, and where Git defines it."""

    action: Action
    key: ObjectKey
    fields: tuple[FieldChange, ...] = ()
    source: str | None = None

    def describe(self) -> str:
        return f"{self.action} {self.key}"


@dataclass(frozen=True)
class SyncPlan:
    """What a sync would do: ``changes`` in apply order, plus what it leaves alone."""

    changes: tuple[ObjectChange, ...]
    unchanged: int
    kept: tuple[ObjectKey, ...] = ()  # out of Git but annotated capstan.io/prune: "false"
    refused: str | None = None

    @property
    def empty(self) -> bool:
        return not self.changes

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action == action)


@dataclass(frozen=True)
class SyncResult:
    """The outcome of one sync attempt (also kept as a ``SyncRecord`` unless a dry run)."""

    commit: CommitInfo
    outcome: Outcome
    plan: SyncPlan
    applied: tuple[ObjectChange, ...] = ()
    errors: tuple[str, ...] = ()
    dry_run: bool = False
    record: SyncRecord | None = field(default=None, compare=False)

    @property
    def changed(self) -> bool:
        return bool(self.applied)

    @property
    def succeeded(self) -> bool:
        return self.outcome == "Succeeded"


def managed_object(
    obj: KubeObject, *, source: str | None = None, commit: str | None = None
) -> KubeObject:
    """``obj`` as Capstan stores it: marked managed, and where and when Git defined it."""
    meta = obj.metadata
    annotations = dict(meta.annotations)
    if source is not None:
        annotations[SOURCE_ANNOTATION] = source
    if commit is not None:
        annotations[COMMIT_ANNOTATION] = commit
    labels = {**meta.labels, MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    new_meta = meta.model_copy(update={"labels": labels, "annotations": annotations})
    return obj.model_copy(update={"metadata": new_meta})


def _desired_objects(repo: LoadedRepository, commit: CommitInfo) -> list[tuple[KubeObject, str]]:
    return [(_managed(loaded, commit), str(loaded.source)) for loaded in repo.objects]


def _managed(loaded: LoadedObject, commit: CommitInfo) -> KubeObject:
    where = loaded.source.display()
    return managed_object(loaded.obj, source=where, commit=commit.sha)


def plan_sync(
    desired: Sequence[KubeObject],
    live: Iterable[KubeObject],
    *,
    prune: bool = True,
    allow_empty: bool = False,
    sources: Mapping[ObjectKey, str] | None = None,
) -> SyncPlan:
    """Pure: the changes that turn ``live`` into ``desired``.

    ``live`` holds every managed object plus any unmanaged one sharing a key with a desired
    object (which the sync then adopts). Objects are compared in their Git-owned form, so
    status, server-set metadata and bookkeeping annotations never count as changes.
    """
    # Desired objects are always compared as Capstan stores them (managed-by label added).
    desired = [managed_object(obj) for obj in desired]
    live_by_key = {obj.key: obj for obj in live}
    desired_keys = {obj.key for obj in desired}
    changes: list[ObjectChange] = []
    unchanged = 0
    for obj in sorted(desired, key=_apply_rank):
        where = (sources or {}).get(obj.key)
        current = live_by_key.get(obj.key)
        if current is None:
            changes.append(ObjectChange("create", obj.key, diff_objects(None, obj), where))
            continue
        fields = diff_objects(current, obj)
        if fields:
            changes.append(ObjectChange("update", obj.key, fields, where))
        else:
            unchanged += 1
    deletions: list[ObjectChange] = []
    kept: list[ObjectKey] = []
    managed_live = [o for o in live_by_key.values() if _is_managed(o)]
    for obj in managed_live:
        if obj.key in desired_keys or not prune:
            continue
        if obj.metadata.annotations.get(PRUNE_ANNOTATION) == "false":
            kept.append(obj.key)
        elif obj.metadata.deletion_timestamp is None:
            deletions.append(
                ObjectChange(
                    "delete",
                    obj.key,
                    diff_objects(obj, None),
                    obj.metadata.annotations.get(SOURCE_ANNOTATION),
                )
            )
    deletions.sort(key=lambda c: _apply_rank_key(c.key), reverse=True)
    refused = None
    survivors = unchanged + sum(1 for c in changes if c.action == "update") + len(kept)
    if deletions and not survivors and not allow_empty:
        refused = (
            f"this commit would delete every object Capstan manages ({len(deletions)}); "
            "refused: sync with allow_empty to do it anyway"
        )
    return SyncPlan(tuple(changes + deletions), unchanged, tuple(sorted(kept)), refused)


def _is_managed(obj: KubeObject) -> bool:
    # WARNING: an object a controller made (a ReplicaSet of a Deployment, a Pod of a
    # ReplicaSet) may inherit the managed-by label through copied labels. It belongs to its
    # owner and the garbage collector, never to prune.
    if any(ref.controller for ref in obj.metadata.owner_references):
        return False
    return obj.metadata.labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE


def _apply_rank(obj: KubeObject) -> tuple[int, str, str]:
    return _apply_rank_key(obj.key)


def _apply_rank_key(key: ObjectKey) -> tuple[int, str, str]:
    rank = APPLY_ORDER.index(key.kind) if key.kind in APPLY_ORDER else len(APPLY_ORDER)
    return rank, key.namespace, key.name


def _models() -> list[type[KubeObject]]:
    return [model_for(api_version, kind) for api_version, kind in SUPPORTED_KINDS]


def list_managed(api: Api, *, cached: CachedKind | None = None) -> list[KubeObject]:
    """Every object Capstan manages, of every kind, as the API has it now.

    ``cached``: kinds it answers for are read from that cache (objects already decoded, a
    few milliseconds behind the store) instead of a range of every object of the kind
    (all the pods of a fleet, to find the few managed ones)."""
    found: list[KubeObject] = []
    for model in _models():
        held = cached(model) if cached is not None else None
        listed = (
            api.list(model, label_selector={MANAGED_BY_LABEL: MANAGED_BY_VALUE}).items
            if held is None
            else held
        )
        found.extend(obj for obj in listed if _is_managed(obj))
    return found


def _observe(
    api: Api, desired: Sequence[KubeObject], cached: CachedKind | None = None
) -> list[KubeObject]:
    live = list_managed(api, cached=cached)
    seen = {obj.key for obj in live}
    for obj in desired:
        if obj.key not in seen:
            current = _get(api, obj)
            if current is not None:
                live.append(current)
    return live


def _get(api: Api, obj: KubeObject | ObjectKey) -> KubeObject | None:
    key = obj.key if isinstance(obj, KubeObject) else obj
    model = _model_of(key.kind)
    try:
        return api.get(model, key.name, namespace=key.namespace or None)
    except NotFound:
        return None


def _model_of(kind: str) -> type[KubeObject]:
    for api_version, name in SUPPORTED_KINDS:
        if name == kind:
            return model_for(api_version, name)
    raise KeyError(kind)


def sync_commit(
    api: Api,
    repo: LoadedRepository,
    *,
    commit: CommitInfo,
    prune: bool = True,
    allow_empty: bool = False,
    dry_run: bool = False,
    trigger: Trigger = "commit",
    history: HistoryLimits | None = None,
    record_unchanged: bool = True,
    cached: CachedKind | None = None,
) -> SyncResult:
    """Make the API hold what ``commit`` (already loaded into ``repo``) says. Idempotent: the
    same commit again plans no change. A write that loses a race re-reads and retries; one
    that still fails marks the sync Failed (the next sync tries again) and skips pruning.

    Every attempt is recorded, except a dry run, and, with ``record_unchanged=False`` (the
    loop's periodic resync), a successful one that changed nothing.

    ``cached`` (the loop's resync): the live side of the kinds it holds is read from it
    (:func:`list_managed`). The plan is then made from copies a few milliseconds old; every
    change re-reads its object through the API before writing, so a stale copy costs a write
    nothing, and drift a copy does not show yet is found by the next resync."""
    started = now_utc(api.clock)
    desired_pairs = _desired_objects(repo, commit)
    desired = [obj for obj, _ in desired_pairs]
    sources = {obj.key: where for obj, where in desired_pairs}
    plan = plan_sync(
        desired,
        _observe(api, desired, cached),
        prune=prune,
        allow_empty=allow_empty,
        sources=sources,
    )
    if dry_run:
        refusal = (plan.refused,) if plan.refused else ()
        return SyncResult(commit, "Failed" if refusal else "Succeeded", plan, (), refusal, True)
    if plan.refused:
        return _finish(
            api,
            SyncResult(commit, "Failed", plan, (), (plan.refused,)),
            started=started,
            trigger=trigger,
            history=history,
        )
    by_key = {obj.key: obj for obj in desired}
    applied: list[ObjectChange] = []
    errors: list[str] = []
    for change in plan.changes:
        if change.action == "delete" and errors:
            # Never remove the old while the new is not fully in place.
            break
        try:
            done = _apply(api, change, by_key.get(change.key))
        except ApiError as exc:
            errors.append(f"{change.describe()}: {exc}")
            continue
        if done is not None:
            applied.append(done)
    outcome: Outcome = "Failed" if errors else "Succeeded"
    result = SyncResult(commit, outcome, plan, tuple(applied), tuple(errors))
    if not record_unchanged and not applied and not errors:
        return result
    templates = {
        str(c.key): pod_template_hash(obj.spec.template)
        for c in applied
        if c.action != "delete" and isinstance(obj := by_key.get(c.key), Deployment)
    }
    return _finish(
        api, result, started=started, trigger=trigger, history=history, templates=templates
    )


def failed_commit(
    api: Api,
    errors: ManifestErrors,
    *,
    commit: CommitInfo,
    trigger: Trigger = "commit",
    history: HistoryLimits | None = None,
) -> SyncResult:
    """Record a commit that did not load: nothing is applied, the errors (file:line) are
    kept so ``capstan status`` can show them next to the commit still live."""
    started = now_utc(api.clock)
    # Repository-relative (`web.yaml:14:9: ...`): the checkout directory is gone by now.
    lines = tuple(error.display() for error in errors.errors)
    result = SyncResult(commit, "Failed", SyncPlan((), 0), (), lines)
    return _finish(api, result, started=started, trigger=trigger, history=history)


def _finish(
    api: Api,
    result: SyncResult,
    *,
    started: datetime,
    trigger: Trigger,
    history: HistoryLimits | None,
    templates: Mapping[str, str] | None = None,
) -> SyncResult:
    record = SyncRecord(
        id=0,
        commit=result.commit.sha,
        author=result.commit.author,
        message=result.commit.message,
        commit_time=result.commit.time,
        started_at=started,
        finished_at=now_utc(api.clock),
        outcome=result.outcome,
        trigger=trigger,
        changes=[
            RecordedChange(
                action=c.action,
                object=str(c.key),
                # A create or delete concerns the whole object: no field list.
                fields=[f.path for f in c.fields] if c.action == "update" else [],
            )
            for c in result.applied
        ],
        unchanged=result.plan.unchanged,
        errors=list(result.errors),
        templates=dict(templates or {}),
    )
    stored = record_sync(api, record, limits=history)
    return SyncResult(
        result.commit,
        result.outcome,
        result.plan,
        result.applied,
        result.errors,
        result.dry_run,
        stored,
    )


def _apply(api: Api, change: ObjectChange, desired: KubeObject | None) -> ObjectChange | None:
    """Carry out one change; returns what was actually done (None: nothing was needed)."""
    for _attempt in range(_WRITE_RETRIES):
        try:
            if change.action == "delete":
                return _delete(api, change)
            assert desired is not None
            current = _get(api, desired)
            if current is None:
                api.create(desired)
                return ObjectChange(
                    "create", change.key, diff_objects(None, desired), change.source
                )
            fields = diff_objects(current, desired)
            if not fields:
                return None
            api.update(_update_body(desired, current))
            return ObjectChange("update", change.key, fields, change.source)
        except Conflict:
            # Someone wrote meanwhile: read again and converge on what is there now.
            continue
    raise Conflict(f"{change.key} kept changing during the sync")


def _delete(api: Api, change: ObjectChange) -> ObjectChange | None:
    current = _get(api, change.key)
    if current is None or not _is_managed(current):
        return None
    if current.metadata.annotations.get(PRUNE_ANNOTATION) == "false":
        return None
    try:
        api.delete(
            type(current),
            current.name,
            namespace=current.namespace or None,
            resource_version=current.metadata.resource_version,
        )
    except NotFound:
        return None
    return change


def _update_body(desired: KubeObject, current: KubeObject) -> dict[str, Any]:
    body = desired.to_dict()
    live = current.to_dict()
    fill_server_defaults(body, live)
    meta = body["metadata"]
    live_meta = live.get("metadata", {})
    meta["resourceVersion"] = live_meta.get("resourceVersion")
    for name in _KEPT_METADATA:
        if live_meta.get(name):
            meta[name] = copy.deepcopy(live_meta[name])
    # Annotations Git does not own (a controller's) stay as they are.
    annotations = dict(meta.get("annotations") or {})
    for key, value in (live_meta.get("annotations") or {}).items():
        if is_ignored_annotation(key) and key not in annotations:
            annotations[key] = value
    meta["annotations"] = annotations
    return body
