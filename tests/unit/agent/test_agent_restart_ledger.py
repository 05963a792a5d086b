"""A container removed from under the agent counts as a restart: the ledger notices, the
planner starts the next attempt, the status reports the removed one as the last state."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from agent_testdata import desired, observed, pod

from agent.kubelet.backoff import CrashLoopBackoff
from agent.kubelet.plan import PlanInputs, StartContainer, plan_node
from agent.kubelet.restarts import RestartLedger, present
from agent.kubelet.status import pod_status
from agent.runtime.facts import SANDBOX_CONTAINER, PodUID


def status_of(d, containers, ledger: RestartLedger):
    """The first container's status, with the ledger's removed attempts as the kubelet passes
    them."""
    removed = {name: seen for (uid, name), seen in ledger.removed().items() if uid == d.uid}
    status = pod_status(
        d,
        containers,
        waits={},
        probes={},
        host_ip="127.0.0.5",
        previous=None,
        now=3000.0,
        removed=removed,
    )
    return status.container_statuses[0]


def test_removed_running_container_is_restarted_counted_and_remembered(tmp_path: Path) -> None:
    d = desired(pod())
    uid = PodUID(d.uid)
    sandbox, app = observed(d, SANDBOX_CONTAINER), observed(d, "app", attempt=2)
    ledger = RestartLedger(tmp_path / "restarts.json")
    ledger.observe([sandbox, app], desired={uid}, settled={uid})
    assert ledger.removed_latest() == {}

    # A worker of the pod was acting when it vanished: perhaps its own doing, not judged.
    ledger.observe([sandbox], desired={uid}, settled=set())
    assert ledger.removed_latest() == {}
    ledger.observe([sandbox], desired={uid}, settled={uid})
    gone = ledger.removed_latest()[(uid, "app")]
    assert (gone.attempt, gone.running, gone.removed) == (2, True, True)
    ledger.save()

    inputs = PlanInputs(now=2000.0, backoff=CrashLoopBackoff(), removed=ledger.removed_latest())
    (start,) = plan_node([d], [sandbox], inputs=inputs)
    assert isinstance(start, StartContainer)
    assert start.attempt == 3
    assert "removed outside the agent" in start.reason

    def container_status(containers):
        return status_of(d, containers, ledger)

    waiting = container_status([sandbox])
    assert waiting.restart_count == 3
    assert waiting.state.waiting.reason == "ContainerCreating"
    assert waiting.last_state.terminated.reason == "ContainerStatusUnknown"
    assert waiting.last_state.terminated.exit_code == 137

    # Read back as a restarted agent would: the next attempt runs, the removal is its last state.
    reloaded = RestartLedger(tmp_path / "restarts.json")
    assert reloaded.removed_latest() == ledger.removed_latest()
    ledger = reloaded
    replacement = observed(d, "app", attempt=3)
    ledger.observe([sandbox, replacement], desired={uid}, settled={uid})
    assert ledger.removed_latest() == {}
    running = container_status([sandbox, replacement])
    assert running.restart_count == 3
    assert running.state.running is not None
    assert running.last_state.terminated.reason == "ContainerStatusUnknown"

    # The pod leaves and its containers are gone: forgotten.
    ledger.observe([], desired=set(), settled=set())
    assert ledger.removed() == {}


def test_container_seen_mid_removal_is_a_removal_not_a_crash(tmp_path: Path) -> None:
    # `docker rm -f` kills first: its `die` event wakes the kubelet while Docker still lists
    # the container, state "removing". Read as an exit, it was restarted as a crash, and once
    # it vanished the restarted attempt reported no last state at all.
    d = desired(pod())
    uid = PodUID(d.uid)
    sandbox = observed(d, SANDBOX_CONTAINER)
    ledger = RestartLedger(tmp_path / "restarts.json")
    inputs = PlanInputs(now=2000.0, backoff=CrashLoopBackoff())

    def pass_over(listed):
        """One sync pass as the kubelet makes it: ledger, then plan, then status."""
        containers = present(listed)
        ledger.observe(containers, desired={uid}, settled={uid})
        actions = plan_node(
            [d], containers, inputs=replace(inputs, removed=ledger.removed_latest())
        )
        return actions, status_of(d, containers, ledger)

    actions, status = pass_over([sandbox, observed(d, "app")])
    assert (actions, status.restart_count) == ([], 0)
    being_removed = observed(d, "app", state="removing", started_at=1000.0)
    (start,), _ = pass_over([sandbox, being_removed])
    assert isinstance(start, StartContainer)
    assert start.attempt == 1
    assert "removed outside the agent" in start.reason
    # The next attempt runs; Docker may or may not still list the old one.
    for listed in (
        [sandbox, being_removed, observed(d, "app", attempt=1)],
        [sandbox, observed(d, "app", attempt=1)],
    ):
        actions, status = pass_over(listed)
        assert actions == []
        assert status.restart_count == 1
        assert status.state.running is not None
        assert status.last_state.terminated is not None
        assert status.last_state.terminated.reason == "ContainerStatusUnknown"
        assert status.last_state.terminated.exit_code == 137
