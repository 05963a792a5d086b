"""The planner, with plain data: desired pods + observed containers + a clock → actions."""

from __future__ import annotations

import dataclasses

from agent_testdata import desired, observed, pod, running_pod

from agent.kubelet.backoff import CrashLoopBackoff
from agent.kubelet.plan import (
    CreateSandbox,
    ImagePullFailure,
    PlanInputs,
    RemovePodDir,
    StartContainer,
    StopContainer,
    Wait,
    plan_node,
)
from agent.runtime.facts import SANDBOX_CONTAINER, ContainerID, PodUID

NOW = 2000.0
INPUTS = PlanInputs(now=NOW, backoff=CrashLoopBackoff(initial_s=10, max_s=300, reset_after_s=600))


def kinds(actions):
    return [type(a).__name__ for a in actions]


def test_empty_node_creates_sandbox_then_containers_in_order():
    d = desired(pod(containers=[{"name": "a", "image": "i:1"}, {"name": "b", "image": "i:1"}]))
    actions = plan_node([d], [], inputs=INPUTS)
    assert kinds(actions) == ["CreateSandbox", "StartContainer", "StartContainer"]
    assert [a.container for a in actions[1:]] == ["a", "b"]
    assert all(a.sandbox_id is None and a.attempt == 0 for a in actions[1:])


def test_converged_pod_needs_nothing():
    d = desired(pod())
    assert plan_node([d], running_pod(d), inputs=INPUTS) == []


def test_spec_change_replaces_only_that_container_of_that_pod():
    d1 = desired(pod("one"))
    d2 = desired(pod("two", containers=[{"name": "app", "image": "capstan.local/busybox:test-v2"}]))
    facts = [
        *running_pod(d1),
        observed(d2, SANDBOX_CONTAINER),
        observed(d2, "app", spec_hash="old-hash", attempt=3),
    ]
    actions = plan_node([d1, d2], facts, inputs=INPUTS)
    assert {a.pod_uid for a in actions} == {d2.uid}
    stop, start = actions
    assert isinstance(stop, StopContainer)
    assert stop.container_id == ContainerID(f"{d2.uid}-app-3")
    assert "spec changed" in stop.reason
    assert not stop.remove
    assert isinstance(start, StartContainer)
    assert start.attempt == 4
    assert start.sandbox_id == ContainerID(f"{d2.uid}-POD-0")


def test_orphans_are_removed_apps_before_sandbox_and_dir_last():
    gone = desired(pod("gone"))
    inputs = PlanInputs(now=NOW, pod_dirs=frozenset({gone.uid}))
    actions = plan_node([], running_pod(gone), inputs=inputs)
    assert kinds(actions) == ["StopContainer", "StopContainer", "RemovePodDir"]
    assert actions[0].container == "app"
    assert actions[1].container == SANDBOX_CONTAINER
    assert all(a.remove for a in actions[:2])
    assert actions[0].grace_seconds == 30


def test_leftover_pod_dir_without_containers_is_removed():
    actions = plan_node([], [], inputs=PlanInputs(now=NOW, pod_dirs=frozenset({PodUID("old")})))
    assert actions == [RemovePodDir(pod_uid=PodUID("old"), reason="pod is not in the desired set")]


def test_first_crash_restarts_at_once_as_kubernetes_does():
    d = desired(pod())
    crashed = observed(d, "app", state="exited", exit_code=1, started_at=1990.0, finished_at=1995.0)
    (start,) = plan_node([d], [observed(d, SANDBOX_CONTAINER), crashed], inputs=INPUTS)
    assert isinstance(start, StartContainer)
    assert (start.attempt, start.backoff_step) == (1, 1)


def test_crash_after_a_restart_waits_for_backoff_then_restarts_with_next_step():
    d = desired(pod())
    crashed = observed(
        d,
        "app",
        state="exited",
        exit_code=1,
        started_at=1990.0,
        finished_at=1995.0,
        attempt=1,
        backoff_step=1,
    )
    facts = [observed(d, SANDBOX_CONTAINER), crashed]
    (wait,) = plan_node([d], facts, inputs=INPUTS)
    assert isinstance(wait, Wait)
    assert wait.waiting_reason == "CrashLoopBackOff"
    assert wait.until == 2005.0
    assert "back-off 10s" in wait.reason
    later = PlanInputs(now=2006.0, backoff=INPUTS.backoff)
    (start,) = plan_node([d], facts, inputs=later)
    assert isinstance(start, StartContainer)
    assert start.attempt == 2
    assert start.backoff_step == 2


def test_backoff_doubles_with_consecutive_crashes():
    d = desired(pod())
    crashed = observed(
        d,
        "app",
        state="exited",
        exit_code=1,
        started_at=1990.0,
        finished_at=1995.0,
        attempt=3,
        backoff_step=3,
    )
    (wait,) = plan_node([d], [observed(d, SANDBOX_CONTAINER), crashed], inputs=INPUTS)
    assert wait.until == 1995.0 + 40.0


def test_backoff_counts_from_now_when_dockers_stamp_is_ahead_of_the_agents_clock():
    d = desired(pod())
    ahead = INPUTS.now + 600  # dockerd's clock 10 minutes ahead, or ours stepped back
    crashed = observed(
        d,
        "app",
        state="exited",
        exit_code=1,
        started_at=ahead - 5,
        finished_at=ahead,
        attempt=1,
        backoff_step=1,
    )
    (wait,) = plan_node([d], [observed(d, SANDBOX_CONTAINER), crashed], inputs=INPUTS)
    assert isinstance(wait, Wait)
    assert wait.until == INPUTS.now + 10.0


def test_long_run_resets_backoff():
    d = desired(pod())
    crashed = observed(
        d,
        "app",
        state="exited",
        exit_code=1,
        started_at=1000.0,
        finished_at=1995.0,
        attempt=5,
        backoff_step=5,
    )
    (start,) = plan_node([d], [observed(d, SANDBOX_CONTAINER), crashed], inputs=INPUTS)
    assert isinstance(start, StartContainer)
    assert (start.attempt, start.backoff_step) == (6, 1)


def test_restart_policies():
    for policy, code, restarts in [
        ("Never", 1, False),
        ("OnFailure", 0, False),
        ("OnFailure", 1, True),
        ("Always", 0, True),
    ]:
        d = desired(pod(restartPolicy=policy))
        done = observed(d, "app", state="exited", exit_code=code, finished_at=1000.0)
        actions = plan_node([d], [observed(d, SANDBOX_CONTAINER), done], inputs=INPUTS)
        assert bool(actions) is restarts, (policy, code)


def test_liveness_failure_kills_without_removing():
    d = desired(pod())
    facts = running_pod(d)
    app_id = facts[1].id
    inputs = PlanInputs(now=NOW, liveness_failures=frozenset({app_id}))
    (stop,) = plan_node([d], facts, inputs=inputs)
    assert isinstance(stop, StopContainer)
    assert stop.reason == "liveness probe failed"
    assert not stop.remove


def test_dead_sandbox_recreates_pod_and_restarts_running_containers():
    d = desired(pod())
    facts = [
        observed(
            d,
            SANDBOX_CONTAINER,
            state="exited",
            exit_code=137,
            started_at=100.0,
            finished_at=1000.0,
        ),
        observed(d, "app"),
    ]
    actions = plan_node([d], facts, inputs=INPUTS)
    assert kinds(actions) == ["StopContainer", "StopContainer", "CreateSandbox", "StartContainer"]
    create = actions[2]
    assert isinstance(create, CreateSandbox)
    assert create.attempt == 1
    assert actions[3].attempt == 1
    assert actions[3].sandbox_id is None


def test_failed_sandbox_backs_off():
    d = desired(pod())
    failed = observed(d, SANDBOX_CONTAINER, state="created", exit_code=128, started_at=None)
    failed = dataclasses.replace(failed, created_at=1999.0, error="port is in use")
    (wait,) = plan_node([d], [failed], inputs=INPUTS)
    assert isinstance(wait, Wait)
    assert wait.waiting_reason == "CreatePodSandboxError"
    assert wait.reason == "port is in use"


def test_image_pull_failure_backs_off():
    d = desired(pod())
    failure = ImagePullFailure(
        image="capstan.local/busybox:1",
        reason="ErrImagePull",
        message="pull access denied",
        failed_at=1999.0,
        failures=2,
    )
    inputs = PlanInputs(now=NOW, image_failures={(d.uid, "app"): failure})
    (wait,) = plan_node([d], [observed(d, SANDBOX_CONTAINER)], inputs=inputs)
    assert wait.waiting_reason == "ImagePullBackOff"
    assert "pull access denied" in wait.reason
    assert wait.until == 1999.0 + 20.0


def test_refused_pod_is_torn_down_and_not_started():
    d = desired(pod(hostNetwork=True))
    assert d.refused is not None
    assert "--allow-host-network" in d.refused
    assert plan_node([d], [], inputs=INPUTS) == []
    leftovers = running_pod(desired(pod()))
    assert kinds(plan_node([d], leftovers, inputs=INPUTS)) == ["StopContainer"] * 2


def test_a_running_container_outlives_its_configmap():
    # The ConfigMap a running pod mounts is pruned (a later commit replaced it): the
    # container keeps running with the files it has; only a new start waits for it.
    spec = pod(
        volumes=[{"name": "page", "configMap": {"name": "page-v1"}}],
        containers=[
            {
                "name": "app",
                "image": "i:1",
                "volumeMounts": [{"name": "page", "mountPath": "/www"}],
            }
        ],
    )
    d = desired(spec)
    assert "page-v1" in d.config_errors["app"]
    assert plan_node([d], running_pod(d), inputs=INPUTS) == []
    exited = [observed(d, SANDBOX_CONTAINER), observed(d, "app", state="exited", exit_code=1)]
    actions = plan_node([d], exited, inputs=INPUTS)
    assert kinds(actions) == ["Wait"]
    assert actions[0].waiting_reason == "CreateContainerConfigError"


def test_config_error_waits():
    d = desired(
        pod(
            containers=[
                {
                    "name": "app",
                    "image": "i:1",
                    "env": [
                        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}
                    ],
                }
            ]
        )
    )
    actions = plan_node([d], [observed(d, SANDBOX_CONTAINER)], inputs=INPUTS)
    assert kinds(actions) == ["Wait"]
    assert actions[0].waiting_reason == "CreateContainerConfigError"
    assert "configmap 'cm' not found" in actions[0].reason


def test_attempts_before_the_previous_one_are_removed():
    d = desired(pod())
    old = observed(d, "app", state="exited", exit_code=1, attempt=0, finished_at=10.0)
    previous = observed(d, "app", state="exited", exit_code=1, attempt=1, finished_at=20.0)
    facts = [observed(d, SANDBOX_CONTAINER), old, previous, observed(d, "app", attempt=2)]
    (stop,) = plan_node([d], facts, inputs=INPUTS)
    assert stop.container_id == old.id
    assert stop.remove
    assert plan_node([d], [facts[0], *facts[2:]], inputs=INPUTS) == []


def test_removed_container_of_pod_is_stopped():
    d = desired(pod())
    facts = [*running_pod(d), observed(d, "app", cid="x")]
    facts[-1] = dataclasses.replace(facts[-1], container="gone")
    (stop,) = plan_node([d], facts, inputs=INPUTS)
    assert stop.container == "gone"
    assert stop.remove


def test_stops_carry_the_spec_for_pre_stop_hooks_even_after_the_pod_left():
    hooked = {
        "name": "app",
        "image": "i:1",
        "lifecycle": {"preStop": {"exec": {"command": ["drain"]}}},
    }
    d = desired(pod(containers=[hooked]))
    facts = running_pod(d)
    inputs = PlanInputs(now=NOW, liveness_failures=frozenset({facts[1].id}))
    (kill,) = plan_node([d], facts, inputs=inputs)
    assert kill.pre_stop is not None
    assert kill.pre_stop.exec_.command == ["drain"]
    assert kill.sandbox_pid == 4242
    departed = plan_node([], facts, inputs=PlanInputs(now=NOW, departed={d.uid: d}))
    assert departed[0].pre_stop is not None
    forgotten = plan_node([], facts, inputs=PlanInputs(now=NOW))
    assert forgotten[0].pre_stop is None
