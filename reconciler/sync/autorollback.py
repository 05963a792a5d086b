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
   whatever the timing of status reports, controller restarts or a second control plane.
   The claim lists the steps below as pending;
2. pins the Deployment at the good commit (``reconciler.sync.pins``): the sync loop applies the
   pinned commit's version of this Deployment instead of the head's, so the Deployment
   controller scales the old ReplicaSet back up (same hash: reused, no new image pull);
3. records why: a Warning Event ``AutoRollback`` on the Deployment and a sync record
   (trigger ``rollback``);
4. with push access (``git`` given and ``push=True``), commits ``git revert`` of the bad commit on
   the tracked branch, with the trailer ``Capstan-Auto-Rollback-Of: <bad sha>``, and pushes
   it, so Git says what runs; the pin lapses by itself once the sync loop sees the revert.

Each step is marked done on the claim (``finish_step``) once it is done, and a claim with
steps pending wakes its Deployment (the claims ConfigMap is watched): whoever leads next —
this process after an error, another replica after a crash — finishes the rollback. A step
begun but not marked is looked for before it is done again: the pin as stored, the Event
and the sync record by their message, the revert on the branch by its trailer. So a crash
at any point leaves one pin, one Event, one record and at most one revert, and a finished
rollback is never redone, however much of the sync log was pruned since. Every write goes
through the controller's API, fenced by the leader's term like the rest.

A bad commit whose message carries that trailer is Capstan's own revert: it is never
reverted (no rollback of a rollback); an event says so. A new template from Git (a fix)
drops the pin and is a new rollout, judged afresh.

The fault suite kills the leader at a chosen point of a rollback through one documented
seam (docs/ha.md): with ``CAPSTAN_FAULT_KILL_AFTER=<step>`` in its environment (``claim``,
``pin``, ``event``, ``record`` or ``revert``) the process sends itself SIGKILL right after it
has done that step, before the step is marked done. Unset, it does nothing.

Registered like every component: ``AutoRollbackController`` in ``default_components()``, or
``functools.partial(AutoRollbackController, git=source, push=True)`` where the Git source is
known (``capstan up``).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, assert_never

from reconciler.api import ApiError, now_utc
from reconciler.controllers.runtime import Controller, ControllerContext, Result
from reconciler.source.git import GitSource, GitSourceError
from reconciler.sync.pins import (
    CLAIMS_NAME,
    Pin,
    RollbackClaim,
    RollbackStep,
    claim_rollback,
    finish_step,
    read_claims,
    read_pins,
    set_pin,
    unfinished_claims,
)
from reconciler.sync.records import (
    SYSTEM_NAMESPACE,
    RecordedChange,
    SyncRecord,
    list_sync_records,
    record_sync,
)
from reconciler.workloads.deployment import HASH_LABEL, pod_template_hash
from reconciler.workloads.owners import deployment_keys_of_pod, owner_keys
from schemas import ConfigMap, Deployment, ObjectKey, Pod, ReplicaSet

__all__ = [
    "AUTO_ROLLBACK_ANNOTATION",
    "KILL_AFTER_ENV",
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
#: The fault suite's seam: the step of a rollback after which the process kills itself.
KILL_AFTER_ENV = "CAPSTAN_FAULT_KILL_AFTER"
_KILL_POINTS = ("claim", "pin", "event", "record", "revert")
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


def _deployment_key(name: str) -> ObjectKey:
    kind, namespace, short = name.split("/", 2)
    return ObjectKey(kind, namespace, short)


def _unfinished_deployments(cm: ConfigMap) -> list[ObjectKey]:
    """The Deployments whose rollback has steps left, when ``cm`` is the claims ConfigMap."""
    if cm.namespace != SYSTEM_NAMESPACE or cm.name != CLAIMS_NAME:
        return []
    return [_deployment_key(claim.deployment) for claim in unfinished_claims(cm)]


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
        # A claim with steps pending wakes its Deployment; the informer's first list does so
        # for every such claim, so a new leader finishes what the last one began.
        self.config_maps = self.watch(ConfigMap, _unfinished_deployments)
        self._unfinished: tuple[str | None, set[str]] = (None, set())
        self._kill_after = os.environ.get(KILL_AFTER_ENV) or None
        if self._kill_after not in (None, *_KILL_POINTS):
            raise ValueError(
                f"{KILL_AFTER_ENV}={self._kill_after!r}: not a step of a rollback "
                f"(one of {', '.join(_KILL_POINTS)})"
            )

    def reconcile(self, key: ObjectKey) -> Result | None:
        d = self.deployments.get(key.name, namespace=key.namespace)
        if d is None:
            return None
        self._finish_claims(d)
        if d.metadata.annotations.get(AUTO_ROLLBACK_ANNOTATION) != "true":
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

    def _finish_claims(self, d: Deployment) -> None:
        """Finish every rollback of ``d`` that was claimed and not completed."""
        name = str(d.key)
        cached = self.config_maps.get(CLAIMS_NAME, namespace=SYSTEM_NAMESPACE)
        if cached is None:
            return
        # This runs on every reconcile: parse the claims once per version of the ConfigMap.
        version = cached.metadata.resource_version
        if version is None or self._unfinished[0] != version:
            self._unfinished = (version, {c.deployment for c in unfinished_claims(cached)})
        if name not in self._unfinished[1]:
            return
        # The cache says where to look; what to do comes from the claims as stored now.
        for claim in sorted(read_claims(self.api).values(), key=lambda c: c.at):
            if claim.deployment == name and claim.pending:
                self._finish(d, claim)

    def _roll_back(self, d: Deployment, rollout: Rollout, why: str) -> None:
        name = str(d.key)
        bad, good = rollout.commit, rollout.good_commit
        assert good is not None
        steps: tuple[RollbackStep, ...] = ("pin", "event", "record")
        claim = RollbackClaim(
            bad_commit=bad,
            deployment=name,
            good_commit=good,
            reason=why,
            at=now_utc(self.clock),
            bad_template=rollout.template,
            pending=(*steps, "revert") if self.push else steps,
        )
        # The order matters: the claim is durable before anything is pinned or pushed, so a
        # second verdict for this commit (a late status report, a restart) finds it and stops;
        # and it lists every step, so whoever leads after a crash finishes them (_finish).
        if not claim_rollback(self.api, claim):
            return
        self._did("claim")
        self._finish(d, claim)

    def _finish(self, d: Deployment, claim: RollbackClaim) -> None:
        """Do the steps of ``claim``'s rollback still pending, in order, marking each done.

        WARNING: a crash can fall between a step and its mark, so every step first looks
        whether it is done already and does only what is missing."""
        for step in claim.pending:
            match step:
                case "pin":
                    self._pin(claim)
                    finish_step(self.api, claim.bad_commit, step)
                case "event":
                    if self._event_once(d, _summary(d, claim)):
                        self._did("event")
                    finish_step(self.api, claim.bad_commit, step)
                case "record":
                    self._record(d, claim)
                    finish_step(self.api, claim.bad_commit, step)
                case "revert":
                    if self.push:
                        self._revert(d, claim)
                    else:
                        # Claimed by a replica with push access (they share one config as a rule).
                        _log.warning("no revert of %s: no push access", claim.bad_commit[:12])
                        finish_step(self.api, claim.bad_commit, step)
                case _:
                    assert_never(step)

    def _pin(self, claim: RollbackClaim) -> None:
        pin = Pin(
            deployment=claim.deployment,
            commit=claim.good_commit,
            bad_commit=claim.bad_commit,
            bad_template=claim.bad_template,
            reason=claim.reason,
            at=claim.at,
        )
        if read_pins(self.api).get(claim.deployment) != pin:
            set_pin(self.api, pin)
            self._did("pin")

    def _record(self, d: Deployment, claim: RollbackClaim) -> None:
        summary = _summary(d, claim)
        if any(
            r.trigger == "rollback" and r.commit == claim.good_commit and r.message == summary
            for r in list_sync_records(self.api)
        ):
            return
        record_sync(
            self.api,
            SyncRecord(
                id=0,
                commit=claim.good_commit,
                author=_AUTHOR,
                message=summary,
                commit_time=claim.at,
                started_at=claim.at,
                finished_at=now_utc(self.clock),
                outcome="Succeeded",
                trigger="rollback",
                changes=[
                    RecordedChange(
                        action="update", object=claim.deployment, fields=["spec.template"]
                    )
                ],
            ),
        )
        _log.warning("%s", summary)
        self._did("record")

    def _revert(self, d: Deployment, claim: RollbackClaim) -> None:
        """Commit and push the revert of the bad commit, unless the branch has it already (a
        leader died after pushing it) or no longer needs it (the pin lapsed: the head moved
        on). One attempt: when Git refuses, an Event says why and the pin holds."""
        assert self.git is not None
        bad, good = claim.bad_commit, claim.good_commit
        message = (
            f"Revert {bad[:12]}: auto-rollback of Deployment {d.namespace}/{d.name}\n\n"
            f"The rollout of {bad[:12]} failed: {claim.reason}.\n"
            f"Capstan pinned the Deployment to {good[:12]} and reverts {bad[:12]} so "
            "Git says what runs.\n\n"
            f"{REVERT_TRAILER}: {bad}"
        )
        try:
            self.git.fetch()
            pushed = self._pushed_revert(bad)
            if pushed is None:
                pin = read_pins(self.api).get(claim.deployment)
                if pin is None or pin.bad_commit != bad:
                    finish_step(self.api, bad, "revert")
                    return
                sha: str = self.git.revert([bad], message=message)
                self.git.push()
                self._did("revert")
            else:
                sha = pushed
        except GitSourceError as exc:
            self._event_once(d, f"could not commit the revert of {bad[:12]}: {exc}; the pin holds")
            finish_step(self.api, bad, "revert")
            return
        self._event_once(d, f"committed and pushed revert {sha[:12]} of {bad[:12]}")
        finish_step(self.api, bad, "revert", revert=sha)

    def _pushed_revert(self, bad: str) -> str | None:
        """This controller's revert of ``bad`` on the branch as last fetched, if there is one."""
        assert self.git is not None
        found = self.git.log_since(bad, grep=f"{REVERT_TRAILER}: {bad}")
        return next((c.sha for c in found if reverted_by(c.message) == bad), None)

    def _event_once(self, d: Deployment, message: str) -> bool:
        """Record ``message`` unless ``d`` has it already (a step redone after a crash); True
        when this call recorded it."""
        try:
            seen = self.api.list_events(namespace=d.namespace, involved=d)
        except ApiError:
            seen = []
        if any(e.reason == "AutoRollback" and e.message == message for e in seen):
            return False
        self._event(d, message)
        return True

    def _did(self, step: str) -> None:
        """``step`` was just done (not yet marked): the fault suite's kill point."""
        if step == self._kill_after:
            _log.warning("%s=%s: killing this process (fault suite)", KILL_AFTER_ENV, step)
            os.kill(os.getpid(), signal.SIGKILL)

    def _event(self, d: Deployment, message: str) -> None:
        try:
            self.api.record_event(
                d, reason="AutoRollback", message=message, type="Warning", source="auto-rollback"
            )
        except ApiError:
            _log.warning("could not record event for %s: %s", d.key, message)


def _summary(d: Deployment, claim: RollbackClaim) -> str:
    """What the Event and the sync record of ``claim``'s rollback say (one text: found again
    by it after a crash)."""
    return (
        f"auto-rollback of Deployment {d.namespace}/{d.name} to commit {claim.good_commit[:12]}: "
        f"{claim.reason} (template of commit {claim.bad_commit[:12]})"
    )
