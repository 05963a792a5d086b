"""A container removed from under the agent counts as a restart: the ledger notices, the
planner starts the next attempt, the status reports the removed one as the last state."""

from __future__ import annotations

from pathlib import Path

from agent_testdata import desired, observed, pod

from agent.kubelet.backoff import CrashLoopBackoff
from agent.kubelet.plan import PlanInputs, StartContainer, plan_node
from agent.kubelet.restarts import RestartLedger
from agent.kubelet.status import pod_status
from agent.runtime.facts import SANDBOX_CONTAINER, PodUID


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
        removed = {name: seen for (u, name), seen in ledger.removed().items() if u == uid}
        s = pod_status(
            d,
            containers,
            waits={},
            probes={},
            host_ip="127.0.0.5",
            previous=None,
            now=3000.0,
            removed=removed,
        )
        return s.container_statuses[0]

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
