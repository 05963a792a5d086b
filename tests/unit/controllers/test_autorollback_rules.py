"""Auto-rollback's decision as plain data: which evidence counts, and once per bad commit.

``decide`` and ``rollout_failure`` are pure; the claim (``claim_rollback``) is checked against a
real store, as the controller uses it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from reconciler.api import Api
from reconciler.sync.autorollback import (
    REVERT_TRAILER,
    Act,
    Hold,
    decide,
    find_rollout,
    reverted_by,
    rollout_failure,
)
from reconciler.sync.pins import Pin, RollbackClaim, claim_rollback, finish_step, read_claims
from reconciler.sync.records import SyncRecord
from reconciler.workloads.deployment import HASH_LABEL, pod_template_hash
from schemas import Deployment, DeploymentStatus, ObjectMeta, Pod, parse_object
from schemas.meta import Condition
from schemas.pod import (
    ContainerState,
    ContainerStateRunning,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
    PodSpec,
    PodStatus,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GOOD, BAD = "a" * 40, "b" * 40
NAME = "Deployment/default/web"


def web(image: str) -> Deployment:
    d = parse_object(
        yaml.safe_load(f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  generation: 2
  annotations: {{capstan.io/auto-rollback: "true"}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: main, image: "{image}"}}]
""")
    )
    assert isinstance(d, Deployment)
    return d


GOOD_D, BAD_D = web("busybox:1"), web("busybox:crash")
GOOD_T, BAD_T = pod_template_hash(GOOD_D.spec.template), pod_template_hash(BAD_D.spec.template)


def record(
    commit: str,
    *,
    template: str | None,
    minute: int,
    message: str = "change",
    trigger: str = "commit",
    outcome: str = "Succeeded",
) -> SyncRecord:
    at = T0 + timedelta(minutes=minute)
    return SyncRecord(
        id=minute,
        commit=commit,
        author="Ada <ada@example.com>",
        message=message,
        commit_time=at,
        started_at=at,
        finished_at=at,
        outcome=outcome,  # type: ignore[arg-type]
        trigger=trigger,  # type: ignore[arg-type]
        templates={NAME: template} if template else {},
    )


# Newest first, as list_sync_records gives them: v1 (good) at minute 1, v2 (bad) at minute 10.
RECORDS = [
    record(BAD, template=BAD_T, minute=10),
    record("c" * 40, template=None, minute=5),
    record(GOOD, template=GOOD_T, minute=1),
]


def pod(
    template: str,
    *,
    minute: int,
    restarts: int,
    waiting: str | None = None,
    exit_code: int | None = 3,
    reason: str = "Error",
    name: str = "web-x",
) -> Pod:
    last = (
        ContainerState(terminated=ContainerStateTerminated(exit_code=exit_code, reason=reason))
        if exit_code is not None
        else ContainerState()
    )
    state = (
        ContainerState(waiting=ContainerStateWaiting(reason=waiting))
        if waiting
        else ContainerState(running=ContainerStateRunning())
    )
    return Pod(
        metadata=ObjectMeta(
            name=name,
            namespace="default",
            labels={"app": "web", HASH_LABEL: template},
            creation_timestamp=T0 + timedelta(minutes=minute),
        ),
        spec=PodSpec.model_validate({"containers": [{"name": "main", "image": "busybox"}]}),
        status=PodStatus(
            container_statuses=[
                ContainerStatus(
                    name="main",
                    image="busybox",
                    restart_count=restarts,
                    state=state,
                    last_state=last,
                )
            ]
        ),
    )


def verdict(d: Deployment, pods: list[Pod]) -> str | None:
    rollout = find_rollout(RECORDS, NAME, pod_template_hash(d.spec.template))
    assert rollout is not None
    return rollout_failure(d, pods, rollout=rollout, crashloop_restarts=3)


def test_the_rollout_is_the_newest_sync_of_the_template_and_good_is_the_one_before() -> None:
    rollout = find_rollout(RECORDS, NAME, BAD_T)
    assert rollout is not None
    assert (rollout.commit, rollout.good_commit, rollout.started_at) == (
        BAD,
        "c" * 40,
        T0 + timedelta(minutes=10),
    )
    assert find_rollout(RECORDS, NAME, "unknown") is None


def test_crash_loop_after_a_restart_is_a_failure() -> None:
    why = verdict(BAD_D, [pod(BAD_T, minute=11, restarts=1, waiting="CrashLoopBackOff")])
    assert why == ("pod web-x container main is in CrashLoopBackOff (1 restarts, last exit code 3)")
    assert "restarted 3 times" in str(verdict(BAD_D, [pod(BAD_T, minute=11, restarts=3)]))


def test_crash_loop_at_zero_restarts_is_not_trusted() -> None:
    assert verdict(BAD_D, [pod(BAD_T, minute=11, restarts=0, waiting="CrashLoopBackOff")]) is None
    # Nor without a failed last run: a restart that was not a crash.
    assert (
        verdict(BAD_D, [pod(BAD_T, minute=11, restarts=1, waiting="CrashLoopBackOff", exit_code=0)])
        is None
    )
    assert (
        verdict(
            BAD_D,
            [pod(BAD_T, minute=11, restarts=4, exit_code=137, reason="ContainerStatusUnknown")],
        )
        is None
    )


def test_only_pods_of_the_current_template_created_by_this_rollout_count() -> None:
    crashing_old_template = pod(GOOD_T, minute=11, restarts=5, waiting="CrashLoopBackOff")
    assert verdict(BAD_D, [crashing_old_template]) is None
    # A pod of this template created before the rollout (an earlier rollout of it) with old
    # restarts: its status says nothing about this rollout.
    before = pod(BAD_T, minute=9, restarts=5, waiting="CrashLoopBackOff")
    assert verdict(BAD_D, [before]) is None
    terminating = pod(BAD_T, minute=11, restarts=5, waiting="CrashLoopBackOff")
    terminating = terminating.model_copy(
        update={
            "metadata": terminating.metadata.model_copy(
                update={"deletion_timestamp": T0 + timedelta(minutes=12)}
            )
        }
    )
    assert verdict(BAD_D, [terminating]) is None


def test_progress_deadline_counts_only_for_this_generation_and_rollout() -> None:
    def with_deadline(generation: int, minute: int) -> Deployment:
        return BAD_D.model_copy(
            update={
                "status": DeploymentStatus(
                    observed_generation=generation,
                    conditions=[
                        Condition(
                            type="Progressing",
                            status="False",
                            reason="ProgressDeadlineExceeded",
                            last_transition_time=T0 + timedelta(minutes=minute),
                        )
                    ],
                )
            }
        )

    assert str(verdict(with_deadline(2, 11), [])).startswith("progress deadline exceeded")
    assert verdict(with_deadline(1, 11), []) is None  # written for an older spec
    assert verdict(with_deadline(2, 9), []) is None  # written before this rollout


def test_decide_acts_once_per_bad_commit() -> None:
    crashing = [pod(BAD_T, minute=11, restarts=1, waiting="CrashLoopBackOff")]
    first = decide(BAD_D, crashing, records=RECORDS, pins={}, claims={}, crashloop_restarts=3)
    assert isinstance(first, Act)
    assert (first.rollout.commit, first.rollout.good_commit) == (BAD, "c" * 40)
    claim = RollbackClaim(bad_commit=BAD, deployment=NAME, good_commit=GOOD, reason="x", at=T0)
    again = decide(
        BAD_D, crashing, records=RECORDS, pins={}, claims={BAD: claim}, crashloop_restarts=3
    )
    assert again == Hold(f"commit {BAD[:12]} was rolled back already")
    pin = Pin(deployment=NAME, commit=GOOD, bad_commit=BAD, bad_template=BAD_T, reason="x", at=T0)
    assert decide(
        BAD_D, crashing, records=RECORDS, pins={NAME: pin}, claims={}, crashloop_restarts=3
    ) == Hold("pinned")


def test_decide_never_reverts_capstans_own_revert() -> None:
    revert = "d" * 40
    message = f"Revert {BAD[:12]}: auto-rollback\n\nwhy\n\n{REVERT_TRAILER}: {BAD}\n"
    assert reverted_by(message) == BAD
    assert reverted_by('Revert "v2"\n\nThis reverts commit x.') is None
    # The revert's template is the good one; suppose its pods crash as well.
    records = [record(revert, template=GOOD_T, minute=20, message=message), *RECORDS]
    crashing = [pod(GOOD_T, minute=21, restarts=1, waiting="CrashLoopBackOff")]
    decision = decide(GOOD_D, crashing, records=records, pins={}, claims={}, crashloop_restarts=3)
    assert isinstance(decision, Hold)
    assert decision.event is not None
    assert "never reverted" in decision.event


def test_claim_is_a_compare_and_swap_in_the_store(api: Api, tmp_path: Path) -> None:
    claim = RollbackClaim(bad_commit=BAD, deployment=NAME, good_commit=GOOD, reason="x", at=T0)
    assert claim_rollback(api, claim) is True
    assert claim_rollback(api, claim.model_copy(update={"reason": "late report"})) is False
    finish_step(api, BAD, "revert", revert="e" * 40)
    stored = read_claims(api)[BAD]
    assert (stored.reason, stored.revert) == ("x", "e" * 40)


def test_no_good_commit_before_the_deployment_existed_or_while_it_ran_the_bad_template() -> None:
    # A Deployment that crashes from its first commit has nothing to go back to.
    first = [record(BAD, template=BAD_T, minute=10), record("c" * 40, template=None, minute=5)]
    rollout = find_rollout(first, NAME, BAD_T)
    assert rollout is not None
    assert rollout.good_commit is None
    crashing = [pod(BAD_T, minute=11, restarts=1, waiting="CrashLoopBackOff")]
    decision = decide(BAD_D, crashing, records=first, pins={}, claims={}, crashloop_restarts=3)
    assert isinstance(decision, Hold)
    assert decision.event is not None
    assert "no earlier good commit" in decision.event
    # The bad template applied again later: the good commit is from before its first time.
    again = [
        record("e" * 40, template=BAD_T, minute=30),
        record("d" * 40, template=None, minute=20),
        *RECORDS,
    ]
    rollout = find_rollout(again, NAME, BAD_T)
    assert rollout is not None
    assert (rollout.commit, rollout.good_commit) == ("e" * 40, "c" * 40)
