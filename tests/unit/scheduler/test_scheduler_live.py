"""The live scheduler on a real temp store with hollow nodes: bind, spread, park, retry."""

from __future__ import annotations

from collections import Counter

from reconciler.api import Api, ManualClock
from reconciler.controllers.manager import ControllerManager
from reconciler.controllers.replicaset import ReplicaSetController
from reconciler.scheduler import NodeName, Scheduler, pod_info, pod_key
from schemas import ObjectKey, Pod
from schemas.meta import Condition, ObjectMeta, OwnerReference
from schemas.pod import Container, ContainerPort, PodSpec, ResourceRequirements
from schemas.quantity import Quantity
from tests.fixtures.hollow import HollowCluster
from tests.fixtures.waiting import wait_until


def make_pod(
    name: str,
    *,
    cpu: str | None = None,
    memory: str | None = None,
    owner: str | None = None,
    node_selector: dict[str, str] | None = None,
    host_port: int | None = None,
) -> Pod:
    requests = {}
    if cpu:
        requests["cpu"] = Quantity(cpu)
    if memory:
        requests["memory"] = Quantity(memory)
    refs = (
        [
            OwnerReference(
                api_version="apps/v1",
                kind="ReplicaSet",
                name=owner,
                uid=f"uid-{owner}",
                controller=True,
            )
        ]
        if owner
        else []
    )
    ports = [ContainerPort(container_port=80, host_port=host_port)] if host_port else []
    return Pod(
        metadata=ObjectMeta(name=name, namespace="default", owner_references=refs),
        spec=PodSpec(
            containers=[
                Container(
                    name="app",
                    image="capstan.local/busybox:1",
                    resources=ResourceRequirements(requests=requests),
                    ports=ports,
                )
            ],
            node_selector=node_selector or {},
        ),
    )


def node_of(api: Api, name: str) -> str | None:
    return api.get(Pod, name, namespace="default").spec.node_name


def test_binds_and_spreads_replicas(
    api: Api, clock: ManualClock, hollow: HollowCluster, scheduler: Scheduler
) -> None:
    hollow.add_nodes(3)
    for i in range(6):
        api.create(make_pod(f"web-{i}", cpu="100m", owner="web"))
    wait_until(lambda: all(node_of(api, f"web-{i}") for i in range(6)), what="all pods bound")
    per_node = Counter(node_of(api, f"web-{i}") for i in range(6))
    assert sorted(per_node.values()) == [2, 2, 2]
    pod = api.get(Pod, "web-0", namespace="default")
    assert pod.status is not None
    scheduled = pod.status.condition("PodScheduled")
    assert scheduled is not None
    assert scheduled.status == "True"
    clock.advance(1.0)
    wait_until(lambda: len(hollow.running_pods()) == 6, what="hollow nodes run the pods")


def test_unschedulable_reports_counts_then_binds_when_a_node_is_added(
    api: Api, hollow: HollowCluster, scheduler: Scheduler
) -> None:
    hollow.add_node("small-1", memory="1Gi", labels={"disk": "hdd"})
    hollow.add_node("small-2", memory="1Gi", labels={"disk": "hdd"})
    hollow.add_node("big-ssd", memory="64Gi", labels={"disk": "ssd"})
    api.create(make_pod("db", memory="2Gi", node_selector={"disk": "hdd"}))
    expected = (
        "0/3 nodes are available: 2 Insufficient memory, "
        "1 node(s) didn't match Pod's node selector."
    )

    def condition_written() -> bool:
        status = api.get(Pod, "db", namespace="default").status
        condition = status.condition("PodScheduled") if status else None
        return condition is not None and condition.message == expected

    wait_until(condition_written, what="PodScheduled=False")
    pod = api.get(Pod, "db", namespace="default")
    assert pod.status is not None
    condition = pod.status.condition("PodScheduled")
    assert condition is not None
    assert (condition.status, condition.reason) == ("False", "Unschedulable")
    # (An attempt made before the node informer saw every node's status may have left an
    # event with another message; the one that matters is the settled one.)
    wait_until(
        lambda: any(e.message == expected for e in api.list_events(involved=pod)),
        what="FailedScheduling event",
    )
    [event] = [e for e in api.list_events(involved=pod) if e.message == expected]
    assert (event.reason, event.type, event.source) == (
        "FailedScheduling",
        "Warning",
        "capstan-scheduler",
    )

    hollow.add_node("big-hdd", memory="16Gi", labels={"disk": "hdd"})
    wait_until(lambda: node_of(api, "db") == "big-hdd", what="retry after a node was added")


def test_parked_pod_does_not_spin(api: Api, hollow: HollowCluster, scheduler: Scheduler) -> None:
    hollow.add_node("only", cpu="1")
    attempts: Counter[str] = Counter()
    schedule = scheduler.schedule

    def counted(key: ObjectKey) -> object:
        attempts[key.name] += 1
        return schedule(key)

    scheduler.schedule = counted  # type: ignore[method-assign]
    # Added after the scheduler's own handler, so it runs after it for every pod event.
    delivered: list[int] = []
    scheduler.pods.add_handler(
        lambda e: delivered.append(int(e.object.metadata.resource_version or 0))
    )
    api.create(make_pod("huge", cpu="2"))
    expected = "0/1 nodes are available: 1 Insufficient cpu."
    wait_until(lambda: any(e.message == expected for e in api.list_events()), what="first attempt")

    def parked() -> Pod | None:
        pod = api.get(Pod, "huge")
        condition = pod.status.condition("PodScheduled") if pod.status else None
        return pod if condition is not None and condition.status == "False" else None

    written = int(wait_until(parked, what="PodScheduled=False").metadata.resource_version)
    # The scheduler's handler has seen its own status write, and the queue is idle: had the
    # write woken the pod, its second attempt would have run (or be running) by now.
    wait_until(lambda: delivered and max(delivered) >= written, what="the status write seen")
    wait_until(lambda: scheduler.queue.idle, what="queue drained")
    assert attempts["huge"] == 1
    [event] = [e for e in api.list_events() if e.message == expected]
    assert event.count == 1


def test_deleting_a_pod_frees_room_for_a_parked_one(
    api: Api, hollow: HollowCluster, scheduler: Scheduler
) -> None:
    hollow.add_node("only", cpu="1")
    api.create(make_pod("first", cpu="800m"))
    wait_until(lambda: node_of(api, "first") == "only", what="first bound")
    api.create(make_pod("second", cpu="800m"))

    def parked() -> bool:
        status = api.get(Pod, "second", namespace="default").status
        condition = status.condition("PodScheduled") if status else None
        return condition is not None and condition.message == (
            "0/1 nodes are available: 1 Insufficient cpu."
        )

    wait_until(parked, what="second parked")
    api.delete(Pod, "first", namespace="default")
    wait_until(lambda: node_of(api, "second") == "only", what="second bound after the delete")


def test_host_port_conflicts_keep_pods_on_different_nodes(
    api: Api, hollow: HollowCluster, scheduler: Scheduler
) -> None:
    hollow.add_nodes(2)
    for i in range(3):
        api.create(make_pod(f"edge-{i}", host_port=8080))
    wait_until(
        lambda: sum(bool(node_of(api, f"edge-{i}")) for i in range(3)) == 2, what="two bound"
    )
    assert len({node_of(api, f"edge-{i}") for i in range(3)} - {None}) == 2
    unbound = next(f"edge-{i}" for i in range(3) if not node_of(api, f"edge-{i}"))
    wait_until(
        lambda: "free ports" in str(api.get(Pod, unbound, namespace="default").status),
        what="port conflict reported",
    )


def test_cache_matches_api_after_churn(
    api: Api, hollow: HollowCluster, scheduler: Scheduler
) -> None:
    hollow.add_nodes(4, cpu="2")
    for i in range(12):
        api.create(make_pod(f"c-{i}", cpu="300m", owner=f"o{i % 3}"))
    wait_until(lambda: all(node_of(api, f"c-{i}") for i in range(12)), what="bound")
    for i in range(0, 12, 3):
        last = api.delete(Pod, f"c-{i}", namespace="default")
    assert scheduler.pods.wait_for_revision(int(last.metadata.resource_version or 0), 10)
    expected: Counter[str] = Counter()
    for pod in api.list(Pod).items:
        assert pod.spec.node_name is not None
        expected[pod.spec.node_name] += 300

    def usage() -> dict[str, int]:
        return {n.name: scheduler.state.usage(n.name).cpu_milli for n in scheduler.state.nodes()}

    # The revision is visible to the cache just before its handlers run: poll briefly.
    wait_until(
        lambda: usage() == {name: expected.get(name, 0) for name in usage()},
        what="scheduler cache equal to a recount from the API",
    )


def test_overcommitted_replicaset_reports_the_pods_that_do_not_fit(
    api: Api, clock: ManualClock, hollow: HollowCluster
) -> None:
    hollow.add_nodes(2, cpu="1")
    components = [ReplicaSetController, Scheduler]
    with ControllerManager(api, clock=clock, components=components):
        labels = {"app": "busy"}
        api.create(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {"name": "busy", "namespace": "default"},
                "spec": {
                    "replicas": 5,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [
                                {
                                    "name": "app",
                                    "image": "capstan.local/busybox:1",
                                    "resources": {"requests": {"cpu": "400m"}},
                                }
                            ]
                        },
                    },
                },
            }
        )

        def settled() -> bool:
            pods = api.list(Pod).items
            bound = [p for p in pods if p.spec.node_name]
            pending = [p for p in pods if not p.spec.node_name]
            return (
                len(bound) == 4
                and len(pending) == 1
                and pending[0].status is not None
                and (
                    (
                        pending[0].status.condition("PodScheduled")
                        or Condition(type="x", status="True")
                    ).message
                    == "0/2 nodes are available: 2 Insufficient cpu."
                )
            )

        wait_until(settled, what="4 pods bound (2 per node), 1 reported unschedulable")
        per_node = Counter(p.spec.node_name for p in api.list(Pod).items if p.spec.node_name)
        assert sorted(per_node.values()) == [2, 2]


def test_assume_then_bind_loses_to_the_api(
    api: Api, clock: ManualClock, hollow: HollowCluster
) -> None:
    """A failed bind forgets the assumed pod; what the API says is bound is what counts."""
    hollow.add_nodes(2)
    with ControllerManager(api, clock=clock, components=[]) as manager:
        # Not started: no loop thread; the test plays the loop's part by hand.
        scheduler = Scheduler(manager.ctx)
        try:
            wait_until(
                lambda: sum(n.ready for n in scheduler.state.nodes()) == 2, what="nodes seen"
            )
            taken = api.create(make_pod("taken", cpu="500m"))
            gone = api.create(make_pod("gone", cpu="500m"))
            wait_until(lambda: scheduler.pods.get("gone", namespace="default"), what="pods seen")
            with scheduler._lock:
                scheduler.state.assume(pod_info(taken), NodeName("hollow-0"))
                scheduler.state.assume(pod_info(gone), NodeName("hollow-0"))
            assert scheduler.state.usage(NodeName("hollow-0")).cpu_milli == 1000

            api.bind(taken, "hollow-1")  # someone else was faster
            api.delete(Pod, "gone", namespace="default")
            scheduler._bind(taken, "hollow-0")  # stale copy: Conflict, already bound
            scheduler._bind(gone, "hollow-0")  # NotFound

            def settled() -> bool:
                placed = scheduler.state.placed(pod_key("default", "taken"))
                return (
                    placed is not None
                    and placed.node == "hollow-1"
                    and not placed.assumed
                    and scheduler.state.placed(pod_key("default", "gone")) is None
                )

            wait_until(settled, what="the API's binding in the cache, the failed ones forgotten")
            assert scheduler.state.usage(NodeName("hollow-0")).cpu_milli == 0
            assert scheduler.state.usage(NodeName("hollow-1")).cpu_milli == 500
            assert api.get(Pod, "taken", namespace="default").spec.node_name == "hollow-1"
        finally:
            scheduler.stop()


def test_a_failed_bind_backs_off_further_until_the_pod_is_bound(
    api: Api, clock: ManualClock, hollow: HollowCluster
) -> None:
    """While a pod's bind is in flight its failure count stays (each failed bind waits longer
    than the last); once the pod is bound its count is forgotten."""
    hollow.add_nodes(1)
    with ControllerManager(api, clock=clock, components=[]) as manager:
        # Not started: the test plays the worker's part (process) by hand.
        scheduler = Scheduler(manager.ctx)
        try:
            web = api.create(make_pod("web", cpu="100m"))
            db = api.create(make_pod("db", cpu="100m"))
            wait_until(lambda: scheduler.pods.get("db", namespace="default"), what="pods seen")
            wait_until(lambda: any(True for _ in scheduler.state.nodes()), what="node seen")
            web_key, db_key = ObjectKey("Pod", "default", "web"), ObjectKey("Pod", "default", "db")

            # web: assumed on its node, its bind in flight after one that failed.
            with scheduler._lock:
                scheduler.state.assume(pod_info(web), NodeName("hollow-0"))
            scheduler.queue.backoff(web_key)  # what a failed bind records
            scheduler.process(web_key)
            assert scheduler.queue.failures(web_key) == 1

            # db: bound by someone else; the scheduler's bind of its stale copy conflicts.
            api.bind(db, "hollow-0")
            scheduler._bind(db, "hollow-0")
            assert scheduler.queue.failures(db_key) == 1
            wait_until(
                lambda: (
                    (placed := scheduler.state.placed(pod_key("default", "db"))) is not None
                    and not placed.assumed
                ),
                what="the API's binding in the cache",
            )
            scheduler.process(db_key)  # bound: nothing to do, nothing in flight
            assert scheduler.queue.failures(db_key) == 0
        finally:
            scheduler.stop()
