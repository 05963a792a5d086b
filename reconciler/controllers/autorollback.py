"""Auto-rollback: a Deployment that opts in is taken back to its last good commit when its
rollout fails.

A controller beside the Deployment controller. It watches Deployments annotated
`capstan.io/auto-rollback: "true"`, their ReplicaSets and pods. A rollout has failed when
the Deployment's `Progressing` condition says `ProgressDeadlineExceeded`, or when a pod of
the *new* ReplicaSet (the current template's, by pod-template hash) is crash-looping: a
container waiting with reason `CrashLoopBackOff`, or restarted `crashloop_restarts` times.

Then it finds the last good commit for that Deployment in the sync log (the newest
successful sync before the one that applied the failing template), and:

1. pins the Deployment at that commit (`reconciler.sync.pins`): the sync loop applies the
   pinned commit's version of this Deployment instead of the head's, so the Deployment
   controller scales the old ReplicaSet back up (same hash: reused, no new image pull);
2. records why: a Warning Event `AutoRollback` on the Deployment and a sync record
   (trigger `rollback`);
3. with push access (`git` given and `push=True`), commits `git revert` of the bad commit on
   the tracked branch and pushes it, so Git says what runs; the pin then lapses by itself
   once the sync loop sees the revert.

While a pin holds the Deployment is never rolled back again (no rollback of a rollback); a
new template from Git (a fix) drops the pin and re-arms it.

Registered like every component: `AutoRollbackController` in `default_components()`, or
`functools.partial(AutoRollbackController, git=source, push=True)` where the Git source is
known (`capstan up`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import ClassVar

from reconciler.api import ApiError, now_utc
from reconciler.controllers._pods import deployment_keys_of_pod, owner_keys
from reconciler.controllers.deployment import HASH_LABEL, pod_template_hash
from reconciler.controllers.runtime import Controller, ControllerContext, Result
from reconciler.diff import COMMIT_ANNOTATION
from reconciler.source.git import GitSource, GitSourceError
from reconciler.sync.pins import Pin, read_pins, set_pin
from reconciler.sync.records import RecordedChange, SyncRecord, list_sync_records, record_sync
from schemas import Deployment, ObjectKey, Pod, ReplicaSet

__all__ = ["AUTO_ROLLBACK_ANNOTATION", "AutoRollbackController", "rollout_failure"]

log = logging.getLogger(__name__)

AUTO_ROLLBACK_ANNOTATION = "capstan.io/auto-rollback"
_CRASH_REASON = "CrashLoopBackOff"
_AUTHOR = "Capstan <capstan@localhost>"


def rollout_failure(d: Deployment, new_pods: Iterable[Pod], *, crashloop_restarts: int
                    ) -> str | None:
    """Why the rollout of `d` has failed, or None. `new_pods` are the current template's."""
    d_status = d.status
    # A condition written for an older spec says nothing about this template (right after
    # a rollback the old "deadline exceeded" is still there until the controller catches up).
    current = d_status is not None and d_status.observed_generation == d.metadata.generation
    conditions = d_status.conditions if d_status is not None and current else []
    progressing = next((c for c in conditions if c.type == "Progressing"), None)
    if progressing is not None and progressing.reason == "ProgressDeadlineExceeded":
        return (f"progress deadline exceeded ({d.spec.progress_deadline_seconds}s without "
                "progress)")
    for pod in sorted(new_pods, key=lambda p: p.name):
        for status in pod.status.container_statuses if pod.status else ():
            waiting = status.state.waiting
            if waiting is not None and waiting.reason == _CRASH_REASON:
                return (f"pod {pod.name} container {status.name} is in CrashLoopBackOff "
                        f"({status.restart_count} restarts)")
            if status.restart_count >= crashloop_restarts:
                return (f"pod {pod.name} container {status.name} restarted "
                        f"{status.restart_count} times")
    return None


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
        template_hash = pod_template_hash(d.spec.template)
        name = str(d.key)
        if name in read_pins(self.api):
            # Rolled back already: the pinned version runs until the head moves on (the
            # pin then lapses). Never roll back a rollback.
            return None
        new_rs = next(
            (rs for rs in self.replicasets.by_index("owner", d.metadata.uid or "")
             if rs.metadata.labels.get(HASH_LABEL) == template_hash
             or rs.name == f"{d.name}-{template_hash}"), None)
        pods = self.pods.by_index("owner", new_rs.metadata.uid or "") if new_rs else []
        why = rollout_failure(d, pods, crashloop_restarts=self.crashloop_restarts)
        if why is None:
            return None
        good = self._last_good_commit(name, template_hash)
        if good is None:
            self._event(d, f"rollout failed ({why}) but no earlier good commit is known; "
                           "nothing to roll back to")
            return None
        bad = d.metadata.annotations.get(COMMIT_ANNOTATION)
        pin = Pin(deployment=name, commit=good, bad_commit=bad, bad_template=template_hash,
                  reason=why, at=now_utc(self.clock))
        set_pin(self.api, pin)
        summary = (f"auto-rollback of Deployment {d.namespace}/{d.name} to commit {good[:12]}: "
                   f"{why}" + (f" (template of commit {bad[:12]})" if bad else ""))
        self._event(d, summary)
        now = now_utc(self.clock)
        record_sync(self.api, SyncRecord(
            id=0, commit=good, author=_AUTHOR, message=summary, commit_time=now,
            started_at=now, finished_at=now, outcome="Succeeded", trigger="rollback",
            changes=[RecordedChange(action="update", object=name, fields=["spec.template"])],
        ))
        log.warning("%s", summary)
        if self.push and bad:
            self._revert(d, bad=bad, good=good, why=why)
        return None

    def _last_good_commit(self, name: str, bad_template: str) -> str | None:
        """The newest successful sync older than the one that applied `bad_template`."""
        seen_bad = False
        for record in list_sync_records(self.api):
            if record.trigger == "rollback":
                continue
            if not seen_bad:
                seen_bad = record.templates.get(name) == bad_template
                continue
            if record.outcome == "Succeeded" and record.templates.get(name) != bad_template:
                return record.commit
        return None

    def _revert(self, d: Deployment, *, bad: str, good: str, why: str) -> None:
        assert self.git is not None
        message = (f"Revert {bad[:12]}: auto-rollback of Deployment {d.namespace}/{d.name}\n\n"
                   f"The rollout of {bad[:12]} failed: {why}.\n"
                   f"Capstan pinned the Deployment to {good[:12]} and reverts {bad[:12]} so "
                   "Git says what runs.")
        try:
            self.git.fetch()
            sha = self.git.revert([bad], message=message)
            self.git.push()
        except GitSourceError as exc:
            self._event(d, f"could not commit the revert of {bad[:12]}: {exc}; the pin holds")
            return
        self._event(d, f"committed and pushed revert {sha[:12]} of {bad[:12]}")

    def _event(self, d: Deployment, message: str) -> None:
        try:
            self.api.record_event(d, reason="AutoRollback", message=message, type="Warning",
                                  source="auto-rollback")
        except ApiError:
            log.warning("could not record event for %s: %s", d.key, message)
