"""Pod status from facts, waits and probe verdicts."""

from __future__ import annotations

from agent_testdata import desired, observed, pod

from agent.kubelet.plan import Wait
from agent.kubelet.status import ProbeView, pod_status, runtime_down_status
from agent.runtime.facts import SANDBOX_CONTAINER, PodUID, PortBinding


def status(d, containers, **kw):
    return pod_status(
        d,
        containers,
        waits=kw.get("waits", {}),
        probes=kw.get("probes", {}),
        host_ip="127.0.0.5",
        previous=kw.get("previous"),
        now=3000.0,
        acting=kw.get("acting", False),
    )


def test_running_and_ready_with_host_ports():
    d = desired(pod(containers=[{"name": "app", "image": "i:1", "ports": [{"containerPort": 80}]}]))
    binding = PortBinding(80, "tcp", "127.0.0.5", 32000)
    sandbox = observed(d, SANDBOX_CONTAINER, host_ports=(binding,))
    s = status(d, [sandbox, observed(d, "app", attempt=2)])
    assert s.phase == "Running"
    assert s.ready
    assert s.container_statuses[0].restart_count == 2
    (mapping,) = s.host_ports
    assert (mapping.container_name, mapping.host_port) == ("app", 32000)
    assert mapping.host_ip == "127.0.0.5"


def test_readiness_probe_verdict_and_transition_time_kept():
    d = desired(pod())
    facts = [observed(d, SANDBOX_CONTAINER), observed(d, "app")]
    not_ready = status(d, facts, probes={facts[1].id: ProbeView(started=True, ready=False)})
    assert not not_ready.ready
    assert not_ready.phase == "Running"
    again = status(
        d, facts, probes={facts[1].id: ProbeView(started=True, ready=False)}, previous=not_ready
    )
    assert again == not_ready


def test_crash_loop_reports_waiting_and_last_state():
    d = desired(pod())
    crashed = observed(d, "app", state="exited", exit_code=3, finished_at=2990.0, attempt=4)
    wait = Wait(
        pod_uid=PodUID(d.uid),
        container="app",
        until=3010.0,
        waiting_reason="CrashLoopBackOff",
        reason="back-off 20s",
    )
    s = status(d, [observed(d, SANDBOX_CONTAINER), crashed], waits={"app": wait})
    (c,) = s.container_statuses
    assert c.state.waiting.reason == "CrashLoopBackOff"
    assert c.last_state.terminated.exit_code == 3
    assert c.restart_count == 4
    assert s.phase == "Pending"
    assert not s.ready


def test_completed_pod_phases():
    d = desired(pod(restartPolicy="Never"))
    ok = observed(d, "app", state="exited", exit_code=0, finished_at=2000.0)
    assert status(d, [observed(d, SANDBOX_CONTAINER), ok]).phase == "Succeeded"
    bad = observed(d, "app", state="exited", exit_code=1, finished_at=2000.0)
    assert status(d, [observed(d, SANDBOX_CONTAINER), bad]).phase == "Failed"


def test_a_container_created_by_an_acting_worker_is_on_its_way_not_a_start_error():
    # A listing taken between the worker's create and start sees the container "created".
    d = desired(pod(restartPolicy="Never"))
    creating = observed(d, "app", state="created", exit_code=0)
    s = status(d, [observed(d, SANDBOX_CONTAINER), creating], acting=True)
    (c,) = s.container_statuses
    assert c.state.waiting.reason == "ContainerCreating"
    assert s.phase == "Pending"
    # With no worker acting, the same container is a start that never happened.
    idle = status(d, [observed(d, SANDBOX_CONTAINER), creating])
    assert idle.container_statuses[0].state.terminated.reason == "StartError"
    assert idle.phase == "Failed"
    # A failed start says so (Docker records the error) whether or not a worker is acting.
    failed = observed(d, "app", state="created", exit_code=127, error="exec: not found")
    s = status(d, [observed(d, SANDBOX_CONTAINER), failed], acting=True)
    terminated = s.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("StartError", 127)
    assert s.phase == "Failed"


def test_refused_pod_is_failed_with_reason():
    s = status(desired(pod(hostNetwork=True)), [])
    assert s.phase == "Failed"
    assert s.reason == "Refused"
    assert "hostNetwork" in s.message


def test_runtime_down_makes_every_pod_not_ready_and_says_why():
    d = desired(pod())
    running = status(d, [observed(d, SANDBOX_CONTAINER), observed(d, "app", attempt=1)])
    assert running.ready
    down = runtime_down_status(running, message="Docker is unreachable: refused", now=3100.0)
    assert not down.ready
    assert (down.reason, down.message) == ("ContainerRuntimeDown", "Docker is unreachable: refused")
    ready = down.condition("Ready")
    assert ready is not None
    assert ready.reason == "ContainerRuntimeDown"
    assert not any(c.ready for c in down.container_statuses)
    # The last known container states stay; a second pass while still down changes nothing.
    assert down.container_statuses[0].restart_count == 1
    assert runtime_down_status(down, message="Docker is unreachable: refused", now=3200.0) == down
