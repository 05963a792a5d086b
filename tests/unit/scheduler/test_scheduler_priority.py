"""Pod priority in the live scheduler (real temp store, hollow nodes): PriorityClass values
resolved, higher-priority pending pods placed first, lower-priority pods preempted."""

from __future__ import annotations

from reconciler.api import Api
from reconciler.scheduler import Scheduler
from schemas import Pod, PriorityClass
from schemas.meta import ObjectMeta
from schemas.pod import Container, PodSpec, ResourceRequirements
from schemas.quantity import Quantity
from tests.fixtures.hollow import HollowCluster
from tests.fixtures.waiting import wait_until


def priority_class(name: str, value: int, *, never: bool = False) -> PriorityClass:
    return PriorityClass(
        metadata=ObjectMeta(name=name),
        value=value,
        preemption_policy="Never" if never else None,
    )


def make_pod(name: str, *, cpu: str, priority_class_name: str | None = None) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace="default"),
        spec=PodSpec(
            containers=[
                Container(
                    name="app",
                    image="capstan.local/busybox:1",
                    resources=ResourceRequirements(requests={"cpu": Quantity(cpu)}),
                )
            ],
            priority_class_name=priority_class_name,
        ),
    )


def node_of(api: Api, name: str) -> str | None:
    return api.get(Pod, name, namespace="default").spec.node_name


def unschedulable(api: Api, name: str) -> bool:
    status = api.get(Pod, name, namespace="default").status
    condition = status.condition("PodScheduled") if status else None
    return condition is not None and condition.status == "False"


def test_higher_priority_pending_pod_is_placed_first(
    api: Api, hollow: HollowCluster, scheduler: Scheduler
) -> None:
    api.create(priority_class("high", 1000))
    api.create(priority_class("low", 10))
    hollow.add_node("small", cpu="1")
    api.create(make_pod("filler", cpu="1", priority_class_name="high"))
    wait_until(lambda: node_of(api, "filler") == "small", what="the node is full")
    # Low first, then high: both wait for room (neither may preempt the high filler).
    api.create(make_pod("low-job", cpu="600m", priority_class_name="low"))
    api.create(make_pod("high-job", cpu="600m", priority_class_name="high"))
    wait_until(lambda: unschedulable(api, "low-job"), what="low-job waits")
    wait_until(lambda: unschedulable(api, "high-job"), what="high-job waits")
    # Room for one of them: the higher priority gets it, though it came second.
    api.delete(Pod, "filler", namespace="default")
    wait_until(lambda: node_of(api, "high-job") == "small", what="high-job placed")
    assert node_of(api, "low-job") is None


def test_a_pod_that_fits_nowhere_preempts_lower_priority_pods(
    api: Api, hollow: HollowCluster, scheduler: Scheduler
) -> None:
    api.create(priority_class("critical", 1_000_000))
    api.create(priority_class("batch", 100))
    hollow.add_node("only", cpu="1")
    api.create(make_pod("batch-a", cpu="400m", priority_class_name="batch"))
    api.create(make_pod("best-effort", cpu="400m"))  # no class: priority 0
    wait_until(
        lambda: node_of(api, "batch-a") == node_of(api, "best-effort") == "only",
        what="the low pods placed",
    )
    api.create(make_pod("critical", cpu="500m", priority_class_name="critical"))
    wait_until(lambda: node_of(api, "critical") == "only", what="the critical pod placed")
    # The fewest, lowest-priority victims: only the priority-0 pod had to go.
    names = {pod.name for pod in api.list(Pod, namespace="default").items}
    assert names == {"batch-a", "critical"}
    events = [e for e in api.list_events(namespace="default") if e.reason == "Preempted"]
    assert [e.involved_object.name for e in events] == ["best-effort"]
    assert "Preempted by pod default/critical" in events[0].message


def test_preemption_policy_never_waits_instead(
    api: Api, hollow: HollowCluster, scheduler: Scheduler
) -> None:
    api.create(priority_class("polite", 1000, never=True))
    hollow.add_node("only", cpu="1")
    api.create(make_pod("low", cpu="800m"))
    wait_until(lambda: node_of(api, "low") == "only", what="low placed")
    api.create(make_pod("polite", cpu="500m", priority_class_name="polite"))
    wait_until(lambda: unschedulable(api, "polite"), what="the polite pod waits")
    assert node_of(api, "low") == "only", "nothing was preempted"
