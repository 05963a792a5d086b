"""Auto-rollback: a Deployment that opts in is taken back to its last good commit when its
rollout fails — once per bad commit, and never by undoing Capstan's own revert.

A controller beside the Deployment controller. It watches Deployments annotated
``capstan.io/auto-rollback: "true"``, their ReplicaSets and pods, and reads the sync log
(``reconciler.sync.records``) for the rollout of the Deployment's current pod template: the
newest sync that applied that template (its commit is the *bad* commit if the rollout fails,
its start time bounds what counts as evidence) and the newest successful sync before it
that applied another one (the *good* commit).

Deciding is a pure function (``decide``) over plain data: the Deployment, its pods, that
rollout, the pins and the claims. A rollout has failed when

- the Deployment's ``Progressing`` condition says ``ProgressDeadlineExceeded``, written for the
  current generation after the rollout began; or
- a pod of the current template (by its ``pod-template-hash`` label), created by this rollout
  and not terminating, has a container that crashed and was restarted: waiting in
  ``CrashLoopBackOff`` with at least one restart and a non-zero last exit, or restarted
  ``crashloop_restarts`` times. (As in Kubernetes, the kubelet enters CrashLoopBackOff only
  after a restart; a report of it at 0 restarts is not trusted.)

Acting (``reconcile``), in this order:

1. claims the bad commit (``reconciler.sync.pins.claim_rollback``): a durable record in the
   store, written with a compare-and-swap, so each bad commit is acted on at most once,
   whatever the timing of status reports, controller restarts or a second control plane;
2. pins the Deployment at the good commit (``reconciler.sync.pins``): the sync loop applies the
   pinned commit's version of this Deployment instead of the head's, so the Deployment
   controller scales the old ReplicaSet back up (same hash: reused, no new image pull);
3. records why: a Warning Event ``AutoRollback`` on the Deployment and a sync record
   (trigger ``rollback``);
4. with push access (``git`` given and ``push=True``), commits ``git revert`` of the bad commit on
   the tracked branch, with the trailer ``Capstan-Auto-Rollback-Of: <bad sha>``, and pushes
   it, so Git says what runs; the pin lapses by itself once the sync loop sees the revert.

A bad commit whose message carries that trailer is Capstan's own revert: it is never
reverted (no rollback of a rollback); an event says so. A new template from Git (a fix)
drops the pin and is a new rollout, judged afresh.

Registered like every component: ``AutoRollbackController`` in ``default_components()``, or
``functools.partial(AutoRollbackController, git=source, push=True)`` where the Git source is
known (``capstan up``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from reconciler.api import ApiError, now_utc
from reconciler.controllers.runtime import Controller, ControllerContext, Result
from reconciler.source.git import GitSource, GitSourceError
from reconciler.sync.pins import (
    Pin,
    RollbackClaim,
    claim_rollback,
    read_claims,
    read_pins,
    record_revert,
    set_pin,
)
from reconciler.sync.records import RecordedChange, SyncRecord, list_sync_records, record_sync
from reconciler.workloads.deployment import HASH_LABEL, pod_template_hash
from reconciler.workloads.owners import deployment_keys_of_pod, owner_keys
from schemas import Deployment, ObjectKey, Pod, ReplicaSet

__all__ = [
    "AUTO_ROLLBACK_ANNOTATION",
    "REVERT_TRAILER",
    "Act",
    "AutoRollbackController",
    "Hold",
    "Rollout",
    "decide",
    "find_rollout",
    "reverted_by",
    "rollout_failure",
]

_log = logging.getLogger(__name__)

AUTO_ROLLBACK_ANNOTATION = "capstan.io/auto-rollback"
#: The trailer on every revert commit this controller makes: `Capstan-Auto-Rollback-Of: <sha>`.
REVERT_TRAILER = "Capstan-Auto-Rollback-Of"
_CRASH_REASON = "CrashLoopBackOff"
_AUTHOR = "Capstan <capstan@localhost>"
_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Rollout:
    """The rollout of one Deployment's current template, as the sync log has it.

    ``commit`` is the commit whose sync last applied ``template`` (``message`` its message),
    ``started_at`` when that sync began: pods created earlier, and conditions written
    earlier, are not evidence about this rollout. ``good_commit`` is the newest commit synced
    successfully before it with another template (None: none is known)."""

    template: str
    commit: str
    message: str
    started_at: datetime
    good_commit: str | None


@dataclass(frozen=True)
class Act:
    """Roll back: pin ``rollout.good_commit`` (known) and revert ``rollout.commit``."""

    rollout: Rollout
    why: str


@dataclass(frozen=True)
class Hold:
    """Do nothing; ``event`` (if any) says why a failed rollout is left as it is."""

    reason: str
    event: str | None = None


def reverted_by(message: str) -> str | None:
    """The bad commit a revert commit of this controller undid (its trailer), else None."""
    for line in reversed(message.strip().splitlines()):
        key, sep, value = line.partition(":")
        if sep and key.strip() == REVERT_TRAILER:
            return value.strip() or None
    return None


def find_rollout(records: Sequence[SyncRecord], name: str, template: str) -> Rollout | None:
    """The rollout of ``template`` for Deployment ``name`` (``Deployment/ns/name``) from the sync
    log (newest first), or None when no kept record applied it.

    The good commit is the newest one synced successfully before the rollout while the
    Deployment ran another template: a record only lists the Deployments it changed, so a
    candidate counts once an older record shows the Deployment with another template (never
    a commit from before the Deployment existed, which would roll it back to nothing)."""
    rollout: SyncRecord | None = None
    candidate: str | None = None
    for record in records:
        if record.trigger == "rollback":
            continue  # the controller's own note: it applied nothing
        applied = record.templates.get(name)
        if rollout is None:
            if applied == template:
                rollout = record
            continue
        if applied == template:
            candidate = None  # the Deployment ran this very template back then
            continue
        if candidate is None and record.outcome == "Succeeded" and record.commit != rollout.commit:
            candidate = record.commit
        if applied is not None and candidate is not None:
            return Rollout(template, rollout.commit, rollout.message, rollout.started_at, candidate)
    if rollout is None:
        return None
    return Rollout(template, rollout.commit, rollout.message, rollout.started_at, None)


def _crash(pod: Pod, *, crashloop_restarts: int) -> str | None:
    for status in pod.status.container_statuses if pod.status else ():
        last = status.last_state.terminated
        # A restart the kubelet made after the container exited with an error; a container
        # removed from under the agent (ContainerStatusUnknown) is not the app crashing.
        if (
            last is None
            or last.exit_code == 0
            or last.reason == "ContainerStatusUnknown"
            or status.restart_count < 1
        ):
            continue
        waiting = status.state.waiting
        if waiting is not None and waiting.reason == _CRASH_REASON:
            return (
                f"pod {pod.name} container {status.name} is in CrashLoopBackOff "
                f"({status.restart_count} restarts, last exit code {last.exit_code})"
            )
        if status.restart_count >= crashloop_restarts:
            return (
                f"pod {pod.name} container {status.name} restarted "
                f"{status.restart_count} times (last exit code {last.exit_code})"
            )
    return None


def rollout_failure(
    d: Deployment, pods: Iterable[Pod], *, rollout: Rollout, crashloop_restarts: int
) -> str | None:
    """Why the rollout of ``d``'s current template has failed, or None.

    Only evidence that belongs to this rollout counts: the deadline condition written for the
    current generation since the rollout began, and pods with the current template's hash
    created since then and not terminating."""
    d_status = d.status
    current = d_status is not None and d_status.observed_generation == d.metadata.generation
    conditions = d_status.conditions if d_status is not None and current else []
    progressing = next((c for c in conditions if c.type == "Progressing"), None)
    if progressing is not None and progressing.reason == "ProgressDeadlineExceeded":
        since = progressing.last_transition_time
        if since is None or since >= rollout.started_at:
            return (
                f"progress deadline exceeded ({d.spec.progress_deadline_seconds}s without progress)"
            )
    for pod in sorted(pods, key=lambda p: p.name):
        created = pod.metadata.creation_timestamp
        if (
            pod.metadata.labels.get(HASH_LABEL) != rollout.template
            or pod.metadata.deletion_timestamp is not None
            or created is None
            or created < rollout.started_at
        ):
            continue
        why = _crash(pod, crashloop_restarts=crashloop_restarts)
        if why is not None:
            return why
    return None


def decide(
    d: Deployment,
    pods: Iterable[Pod],
    *,
    records: Sequence[SyncRecord],
    pins: Mapping[str, Pin],
    claims: Mapping[str, RollbackClaim],
    crashloop_restarts: int,
) -> Act | Hold:
    """Pure: whether to roll Deployment ``d`` back now. ``records`` is the sync log, newest
    first; ``pins`` and ``claims`` as stored (``reconciler.sync.pins``)."""
    name = str(d.key)
    if d.metadata.annotations.get(AUTO_ROLLBACK_ANNOTATION) != "true":
        return Hold("not opted in")
    if name in pins:
        # Rolled back already: the pinned version runs until the head moves on.
        return Hold("pinned")
    rollout = find_rollout(records, name, pod_template_hash(d.spec.template))
    if rollout is None:
        return Hold("no sync of the current template is recorded")
    why = rollout_failure(d, pods, rollout=rollout, crashloop_restarts=crashloop_restarts)
    if why is None:
        return Hold("the rollout has not failed")
    if rollout.commit in claims:
        return Hold(f"commit {rollout.commit[:12]} was rolled back already")
    own = reverted_by(rollout.message)
    if own is not None:
        return Hold(
            "the template comes from Capstan's own revert",
            event=(
                f"rollout failed ({why}) with the template of commit {rollout.commit[:12]}, "
                f"Capstan's own revert of {own[:12]}; a revert is never reverted: fix it in Git"
            ),
        )
    if rollout.good_commit is None:
        return Hold(
            "no good commit known",
            event=(
                f"rollout failed ({why}) but no earlier good commit is known; "
                "nothing to roll back to"
            ),
        )
    return Act(rollout, why)


class AutoRollbackController(Controller):
    name: ClassVar[str] = "auto-rollback"
    workers: ClassVar[int] = 1

    def __init__(
        self,
        ctx: ControllerContext,
        *,
        crashloop_restarts: int = 3,
        git: GitSource | None = None,
        push: bool = False,
    ) -> None:
        super().__init__(ctx)
        self.crashloop_restarts = crashloop_restarts
        self.git = git
        self.push = push and git is not None
        self.deployments = self.watch_own(Deployment)
        self.replicasets = self.watch(ReplicaSet, lambda rs: owner_keys(rs, "Deployment"))
        self.pods = self.watch(Pod, lambda pod: deployment_keys_of_pod(self.replicasets, pod))

    def reconcile(self, key: ObjectKey) -> Result | None:
        d = self.deployments.get(key.name, namespace=key.namespace)
        if d is None or d.metadata.annotations.get(AUTO_ROLLBACK_ANNOTATION) != "true":
            return None
        pods = [
            pod
            for rs in self.replicasets.by_index("owner", d.metadata.uid or "")
            for pod in self.pods.by_index("owner", rs.metadata.uid or "")
        ]
        # Cheap first: with no sign of failure at all (whatever the rollout's start), the
        # sync log need not be read — this runs on every status report of the pods.
        anytime = Rollout(pod_template_hash(d.spec.template), "", "", _EPOCH, None)
        if (
            rollout_failure(d, pods, rollout=anytime, crashloop_restarts=self.crashloop_restarts)
            is None
        ):
            return None
        decision = decide(
            d,
            pods,
            records=list_sync_records(self.api),
            pins=read_pins(self.api),
            claims=read_claims(self.api),
            crashloop_restarts=self.crashloop_restarts,
        )
        match decision:
            case Hold(event=None):
                pass
            case Hold(event=str(message)):
                self._event(d, message)
            case Act(rollout=rollout, why=why):
                self._roll_back(d, rollout, why)
        return None

    def _roll_back(self, d: Deployment, rollout: Rollout, why: str) -> None:
        name = str(d.key)
        bad, good = rollout.commit, rollout.good_commit
        assert good is not None
        now = now_utc(self.clock)
        claim = RollbackClaim(bad_commit=bad, deployment=name, good_commit=good, reason=why, at=now)
        # The order matters: the claim is durable before anything is pinned or pushed, so a
        # second verdict for this commit (a late status report, a restart) finds it and stops.
        if not claim_rollback(self.api, claim):
            return
        set_pin(
            self.api,
            Pin(
                deployment=name,
                commit=good,
                bad_commit=bad,
                bad_template=rollout.template,
                reason=why,
                at=now,
            ),
        )
        summary = (
            f"auto-rollback of Deployment {d.namespace}/{d.name} to commit {good[:12]}: "
            f"{why} (template of commit {bad[:12]})"
        )
        self._event(d, summary)
        record_sync(
            self.api,
            SyncRecord(
                id=0,
                commit=good,
                author=_AUTHOR,
                message=summary,
                commit_time=now,
                started_at=now,
                finished_at=now,
                outcome="Succeeded",
                trigger="rollback",
                changes=[RecordedChange(action="update", object=name, fields=["spec.template"])],
            ),
        )
        _log.warning("%s", summary)
        if self.push:
            self._revert(d, bad=bad, good=good, why=why)

    def _revert(self, d: Deployment, *, bad: str, good: str, why: str) -> None:
        assert self.git is not None
        message = (
            f"Revert {bad[:12]}: auto-rollback of Deployment {d.namespace}/{d.name}\n\n"
            f"The rollout of {bad[:12]} failed: {why}.\n"
            f"Capstan pinned the Deployment to {good[:12]} and reverts {bad[:12]} so "
            "Git says what runs.\n\n"
            f"{REVERT_TRAILER}: {bad}"
        )
        try:
            self.git.fetch()
            sha = self.git.revert([bad], message=message)
            self.git.push()
        except GitSourceError as exc:
            self._event(d, f"could not commit the revert of {bad[:12]}: {exc}; the pin holds")
            return
        record_revert(self.api, bad, sha)
        self._event(d, f"committed and pushed revert {sha[:12]} of {bad[:12]}")

    def _event(self, d: Deployment, message: str) -> None:
        try:
            self.api.record_event(
                d, reason="AutoRollback", message=message, type="Warning", source="auto-rollback"
            )
        except ApiError:
            _log.warning("could not record event for %s: %s", d.key, message)
