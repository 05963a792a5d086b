"""Endpoints: computed from pods and nodes (plain data), and kept current by the controller on a
real temp store with hollow nodes: readiness flips, pod deletion, Service deletion."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from reconciler.api import Api, ManualClock
from reconciler.controllers.endpoints import (
    ENDPOINTS_LABEL,
    EndpointsController,
    compute_endpoints,
    endpoints_config_map_name,
    read_endpoints,
)
from reconciler.controllers.manager import ControllerManager
from reconciler.controllers.runtime import InformerEvent, TransientError
from reconciler.scheduler import Scheduler
from schemas import ConfigMap, Namespace, Node, ObjectKey, Pod, Service
from schemas.meta import Condition, ObjectMeta
from schemas.node import NodeAddress, NodeSpec, NodeStatus
from schemas.pod import Container, ContainerPort, HostPortMapping, PodSpec, PodStatus
from tests.fixtures.hollow import HollowCluster

READY = Condition(type="Ready", status="True")


def service(
    *, ports: list[dict[str, object]] | None = None, selector: dict[str, str] | None = None
) -> Service:
    return Service.model_validate(
        {
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid"},
            "spec": {
                "selector": {"app": "web"} if selector is None else selector,
                "ports": ports or [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        }
    )


def pod(
    name: str,
    *,
    node: str | None = "n1",
    ready: bool = True,
    labels: dict[str, str] | None = None,
    namespace: str = "default",
    host_ports: list[HostPortMapping] | None = None,
    host_network: bool = False,
    deleting: bool = False,
) -> Pod:
    ports = [
        ContainerPort(name="http", container_port=8080),
        ContainerPort(name="dns", container_port=53, protocol="UDP"),
    ]
    return Pod(
        metadata=ObjectMeta(
            name=name,
            namespace=namespace,
            labels={"app": "web"} if labels is None else labels,
            deletion_timestamp=datetime(2030, 1, 1, tzinfo=UTC) if deleting else None,
        ),
        spec=PodSpec(
            containers=[Container(name="app", image="i", ports=ports)],
            node_name=node,
            host_network=host_network,
        ),
        status=PodStatus(
            phase="Running",
            conditions=[READY if ready else Condition(type="Ready", status="False")],
            host_ports=host_ports
            if host_ports is not None
            else [
                HostPortMapping(
                    container_name="app", container_port=8080, host_ip="0.0.0.0", host_port=30001
                ),
                HostPortMapping(
                    container_name="app",
                    container_port=53,
                    protocol="UDP",
                    host_ip="0.0.0.0",
                    host_port=30053,
                ),
            ],
        ),
    )


NODES = {
    "n1": Node(
        metadata=ObjectMeta(name="n1"),
        spec=NodeSpec(address="node1.example"),
        status=NodeStatus(addresses=[NodeAddress(type="InternalIP", address="10.0.0.1")]),
    ),
    "n2": Node(metadata=ObjectMeta(name="n2"), spec=NodeSpec(address="10.0.0.2")),
}


def targets(svc: Service, pods: list[Pod]) -> list[list[tuple[str, str, int]]]:
    result = compute_endpoints(svc, pods, nodes=NODES)
    return [[(t.pod, t.address, t.host_port) for t in port.targets] for port in result.ports]


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        ([pod("a")], [[("a", "10.0.0.1", 30001)]]),
        ([pod("b", node="n2"), pod("a")], [[("a", "10.0.0.1", 30001), ("b", "10.0.0.2", 30001)]]),
        ([pod("a", ready=False)], [[]]),
        ([pod("a", node=None)], [[]]),
        ([pod("a", deleting=True)], [[]]),
        ([pod("a", labels={"app": "other"})], [[]]),
        ([pod("a", namespace="elsewhere")], [[]]),
        ([pod("a", host_ports=[])], [[]]),  # nothing published: unreachable
        (
            [
                pod(
                    "a",
                    host_ports=[
                        HostPortMapping(
                            container_name="app",
                            container_port=8080,
                            host_ip="127.0.0.7",
                            host_port=9000,
                        )
                    ],
                )
            ],
            [[("a", "127.0.0.7", 9000)]],
        ),
        ([pod("a", host_network=True, host_ports=[])], [[("a", "10.0.0.1", 8080)]]),
    ],
)
def test_compute_endpoints(pods: list[Pod], expected: list[list[tuple[str, str, int]]]) -> None:
    assert targets(service(), pods) == expected


def test_target_port_by_number_and_protocol() -> None:
    svc = service(
        ports=[
            {"name": "web", "port": 80, "targetPort": 8080},
            {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
            {"name": "missing", "port": 81, "targetPort": "nope"},
        ]
    )
    assert targets(svc, [pod("a")]) == [
        [("a", "10.0.0.1", 30001)],
        [("a", "10.0.0.1", 30053)],
        [],
    ]


def test_selectorless_service_has_no_endpoints() -> None:
    assert targets(service(selector={}), [pod("a")]) == [[]]


def test_to_service_rule() -> None:
    rule = compute_endpoints(service(), [pod("a")], nodes=NODES).to_service_rule()
    assert (rule.namespace, rule.name) == ("default", "web")
    [port] = rule.ports
    assert (port.port, port.name) == (80, "http")
    assert [(e.address, e.port) for e in port.endpoints] == [("10.0.0.1", 30001)]


# --- live ------------------------------------------------------------------------------------


@pytest.fixture
def hollow(api: Api, clock: ManualClock) -> Iterator[HollowCluster]:
    with HollowCluster(api, clock=clock, start_delay_s=1.0) as cluster:
        yield cluster


@pytest.fixture
def manager(api: Api, clock: ManualClock) -> Iterator[ControllerManager]:
    with ControllerManager(api, clock=clock, components=[Scheduler, EndpointsController]) as mgr:
        yield mgr


def app_pod(name: str, *, labels: dict[str, str] | None = None, namespace: str = "default") -> Pod:
    return Pod(
        metadata=ObjectMeta(
            name=name, namespace=namespace, labels={"app": "web"} if labels is None else labels
        ),
        spec=PodSpec(
            containers=[
                Container(
                    name="app",
                    image="capstan.local/busybox:1",
                    ports=[ContainerPort(name="http", container_port=8080)],
                )
            ]
        ),
    )


def stored(api: Api) -> list[tuple[str, str, int]] | None:
    try:
        cm = api.get(ConfigMap, endpoints_config_map_name("web"), namespace="default")
    except Exception:
        return None
    endpoints = read_endpoints(cm)
    assert endpoints is not None
    [port] = endpoints.ports
    return [(t.pod, t.node, t.host_port) for t in port.targets]


def test_endpoints_follow_readiness_and_deletion(
    api: Api,
    clock: ManualClock,
    hollow: HollowCluster,
    manager: ControllerManager,
    wait_for: Callable[..., None],
) -> None:
    hollow.add_nodes(2)
    api.create(
        service().model_copy(update={"metadata": ObjectMeta(name="web", namespace="default")})
    )
    wait_for(lambda: stored(api) == [], what="empty endpoints for a new Service")
    cm = api.get(ConfigMap, endpoints_config_map_name("web"), namespace="default")
    assert cm.labels == {ENDPOINTS_LABEL: "web"}
    assert cm.metadata.owner_references[0].kind == "Service"

    for name in ("a", "b"):
        api.create(app_pod(name))
    wait_for(
        lambda: all(api.get(Pod, n, namespace="default").spec.node_name for n in "ab"),
        what="pods bound",
    )
    assert stored(api) == []  # bound but not ready yet
    clock.advance(1.0)
    wait_for(lambda: [t[0] for t in stored(api) or []] == ["a", "b"], what="both ready")

    pods = {p.name: p for p in api.list(Pod).items}
    for name, node, host_port in stored(api) or []:
        status = pods[name].status
        assert status is not None
        assert node == pods[name].spec.node_name
        assert [m.host_port for m in status.host_ports] == [host_port]

    hollow.set_pod_ready("a", ready=False)
    wait_for(lambda: [t[0] for t in stored(api) or []] == ["b"], what="a dropped when not ready")
    hollow.set_pod_ready("a", ready=True)
    wait_for(lambda: [t[0] for t in stored(api) or []] == ["a", "b"], what="a back when ready")
    api.delete(Pod, "b", namespace="default")
    wait_for(lambda: [t[0] for t in stored(api) or []] == ["a"], what="b dropped when deleted")

    api.delete(Service, "web", namespace="default")
    wait_for(lambda: stored(api) is None, what="endpoints removed with the Service")


def test_endpoints_are_the_pods_carrying_every_selector_label_and_follow_relabelling(
    api: Api,
    clock: ManualClock,
    hollow: HollowCluster,
    manager: ControllerManager,
    wait_for: Callable[..., None],
) -> None:
    hollow.add_nodes(1)
    api.create(Namespace(metadata=ObjectMeta(name="elsewhere")))
    front = {"app": "web", "tier": "front"}
    api.create(
        service(selector=front).model_copy(
            update={"metadata": ObjectMeta(name="web", namespace="default")}
        )
    )
    api.create(app_pod("a", labels=front))
    api.create(app_pod("b"))  # app=web only: not selected
    api.create(app_pod("c", labels=front, namespace="elsewhere"))  # another namespace
    wait_for(lambda: all(p.spec.node_name for p in api.list(Pod).items), what="the pods bound")
    clock.advance(1.0)
    wait_for(lambda: [t[0] for t in stored(api) or []] == ["a"], what="only a")

    def relabel(name: str, labels: dict[str, str]) -> None:
        current = api.get(Pod, name, namespace="default")
        meta = current.metadata.model_copy(update={"labels": labels})
        api.update(current.model_copy(update={"metadata": meta}))

    relabel("b", {**front, "extra": "x"})
    wait_for(lambda: [t[0] for t in stored(api) or []] == ["a", "b"], what="b selected")
    relabel("a", {"app": "web", "tier": "back"})
    wait_for(lambda: [t[0] for t in stored(api) or []] == ["b"], what="a no longer selected")


def test_a_users_configmap_is_never_overwritten(
    api: Api,
    manager: ControllerManager,
    wait_for: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    mine = api.create(
        ConfigMap(
            metadata=ObjectMeta(name=endpoints_config_map_name("web"), namespace="default"),
            data={"k": "v"},
        )
    )
    api.create(
        service().model_copy(update={"metadata": ObjectMeta(name="web", namespace="default")})
    )
    wait_for(
        lambda: "is not managed by the endpoints controller" in caplog.text,
        what="the collision reported",
    )
    after = api.get(ConfigMap, mine.name, namespace="default")
    assert after.data == {"k": "v"}
    assert after.metadata.resource_version == mine.metadata.resource_version


def test_a_headless_services_endpoints_name_the_pods_that_name_it_as_subdomain() -> None:
    headless = Service.model_validate(
        {**service().to_dict(), "spec": {**service().to_dict()["spec"], "clusterIP": "None"}}
    )
    own = pod("web-0").model_copy(deep=True)
    own = own.model_copy(
        update={"spec": own.spec.model_copy(update={"hostname": "web-0", "subdomain": "web"})}
    )
    other = pod("x").model_copy(
        update={"spec": pod("x").spec.model_copy(update={"hostname": "x", "subdomain": "db"})}
    )
    computed = compute_endpoints(headless, [own, other], nodes=NODES)
    assert [(t.pod, t.hostname) for t in computed.ports[0].targets] == [
        ("web-0", "web-0"),
        ("x", None),
    ]
    wire = computed.to_service_rule().ports[0].endpoints
    assert [e.hostname for e in wire] == ["web-0", None]
    # The same pods behind a Service with a cluster address get no per-pod names.
    assert {
        t.hostname for t in compute_endpoints(service(), [own], nodes=NODES).ports[0].targets
    } == {None}


def test_a_statefulsets_pods_get_their_hostnames_in_the_headless_services_endpoints(
    api: Api,
    clock: ManualClock,
    hollow: HollowCluster,
    wait_for: Callable[..., None],
) -> None:
    from reconciler.controllers.statefulset import StatefulSetController

    components = [Scheduler, EndpointsController, StatefulSetController]
    with ControllerManager(api, clock=clock, components=components):
        _statefulset_scenario(api, clock, hollow, wait_for)


def _statefulset_scenario(
    api: Api, clock: ManualClock, hollow: HollowCluster, wait_for: Callable[..., None]
) -> None:
    from schemas import parse_object

    hollow.add_nodes(1)
    api.create(
        parse_object(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "clusterIP": "None",
                    "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                },
            }
        )
    )
    api.create(
        parse_object(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "replicas": 2,
                    "serviceName": "web",
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {
                            "containers": [
                                {"name": "app", "image": "i", "ports": [{"containerPort": 8080}]}
                            ]
                        },
                    },
                },
            }
        )
    )

    def hostnames() -> list[str | None]:
        try:
            cm = api.get(ConfigMap, endpoints_config_map_name("web"), namespace="default")
        except Exception:
            return []
        endpoints = read_endpoints(cm)
        assert endpoints is not None
        return [t.hostname for t in endpoints.ports[0].targets]

    def named(wanted: list[str | None]) -> bool:
        clock.advance(0.5)  # the hollow node makes each pod Ready a clock second after its bind
        return hostnames() == wanted

    # OrderedReady: web-1 is made only once web-0 is Ready.
    wait_for(lambda: named(["web-0", "web-1"]), what="both pods named in the endpoints")
    assert {p.spec.subdomain for p in api.list(Pod).items} == {"web"}


def test_publish_not_ready_addresses_lists_pods_before_they_are_ready() -> None:
    """As Argo CD's redis-ha Services ask, so that the peers find each other while starting."""
    plain = service()
    svc = plain.model_copy(
        update={"spec": plain.spec.model_copy(update={"publish_not_ready_addresses": True})}
    )
    starting = pod("a", ready=False)
    stopped = pod("b", ready=False)
    assert stopped.status is not None
    finished = stopped.model_copy(
        update={"status": stopped.status.model_copy(update={"phase": "Succeeded"})}
    )
    assert targets(svc, [starting, finished, pod("c", deleting=True)]) == [
        [("a", "10.0.0.1", 30001)]
    ]
    assert targets(plain, [starting]) == [[]]


def serve_one_ready_pod(api: Api, clock: ManualClock, wait_for: Callable[..., None]) -> None:
    """Service ``web`` and its one pod ``a``, bound (a node must exist) and Ready."""
    api.create(
        service().model_copy(update={"metadata": ObjectMeta(name="web", namespace="default")})
    )
    api.create(app_pod("a"))
    wait_for(lambda: api.get(Pod, "a", namespace="default").spec.node_name, what="pod bound")
    clock.advance(1.0)
    wait_for(lambda: [t[0] for t in stored(api) or []] == ["a"], what="a ready")


def test_a_node_write_wakes_its_services_only_when_its_address_moves(
    api: Api,
    clock: ManualClock,
    hollow: HollowCluster,
    manager: ControllerManager,
    wait_for: Callable[..., None],
) -> None:
    [node] = hollow.add_nodes(1)
    serve_one_ready_pod(api, clock, wait_for)
    controller = manager.component(EndpointsController)
    before = api.get(Node, node.name)
    assert before.status is not None
    web = ObjectKey("Service", "default", "web")

    # A status write that leaves the address alone (a condition) wakes no Service.
    conditions = [*before.status.conditions, Condition(type="DiskPressure", status="False")]
    quiet = before.model_copy(
        update={"status": before.status.model_copy(update={"conditions": conditions})}
    )
    assert controller.services_to_wake(InformerEvent("MODIFIED", quiet, before)) == []
    # A node's arrival or departure, or a new address, wakes the Services of its pods.
    assert controller.services_to_wake(InformerEvent("ADDED", before)) == [web]
    assert controller.services_to_wake(InformerEvent("DELETED", before)) == [web]
    moved_status = before.status.model_copy(
        update={"addresses": [NodeAddress(type="InternalIP", address="127.9.9.9")]}
    )
    moved = before.model_copy(update={"status": moved_status})
    assert controller.services_to_wake(InformerEvent("MODIFIED", moved, before)) == [web]


def test_a_pod_write_wakes_its_services_only_when_an_endpoint_reads_what_changed(
    api: Api,
    clock: ManualClock,
    hollow: HollowCluster,
    manager: ControllerManager,
    wait_for: Callable[..., None],
) -> None:
    hollow.add_nodes(1)
    serve_one_ready_pod(api, clock, wait_for)
    controller = manager.component(EndpointsController)
    before = api.get(Pod, "a", namespace="default")
    assert before.status is not None
    web = ObjectKey("Service", "default", "web")

    def with_status(**update: object) -> Pod:
        assert before.status is not None
        return before.model_copy(update={"status": before.status.model_copy(update=update)})

    # A status write of what no endpoint reads (conditions' times, start time) wakes nothing.
    later = datetime(2030, 1, 1, tzinfo=UTC)
    restamped = with_status(
        start_time=later,
        conditions=[
            c.model_copy(update={"last_transition_time": later}) for c in before.status.conditions
        ],
    )
    assert controller.pods_to_wake(InformerEvent("MODIFIED", restamped, before)) == []
    # Readiness, the published ports, labels, arrival and departure do.
    not_ready = with_status(conditions=[Condition(type="Ready", status="False")])
    assert controller.pods_to_wake(InformerEvent("MODIFIED", not_ready, before)) == [web]
    moved = HostPortMapping(
        container_name="app", container_port=8080, host_ip="0.0.0.0", host_port=30999
    )
    republished = with_status(host_ports=[moved])
    assert controller.pods_to_wake(InformerEvent("MODIFIED", republished, before)) == [web]
    relabelled = before.model_copy(
        update={"metadata": before.metadata.model_copy(update={"labels": {"app": "other"}})}
    )
    assert controller.pods_to_wake(InformerEvent("MODIFIED", relabelled, before)) == [web]
    assert controller.pods_to_wake(InformerEvent("ADDED", before)) == [web]
    assert controller.pods_to_wake(InformerEvent("DELETED", before)) == [web]


def test_a_reconcile_waits_for_the_cache_to_show_its_own_last_write(
    api: Api,
    clock: ManualClock,
    hollow: HollowCluster,
    manager: ControllerManager,
    wait_for: Callable[..., None],
) -> None:
    hollow.add_nodes(1)
    serve_one_ready_pod(api, clock, wait_for)
    controller = manager.component(EndpointsController)
    web = ObjectKey("Service", "default", "web")
    # Hold the informers once they have delivered "a" turning not Ready: the controller
    # writes the endpoints that drop it, and its cache never sees that write.
    gate = threading.Event()

    def hold(event: InformerEvent[Pod]) -> None:
        status = event.object.status
        if event.object.name == "a" and status is not None and not status.ready:
            gate.wait(30)

    pods = manager.ctx.informers.informer(Pod)
    pods.add_handler(hold)
    try:
        hollow.set_pod_ready("a", ready=False)
        wait_for(lambda: stored(api) == [], what="a dropped from the stored endpoints")
        # Reconciled again meanwhile (any event, a resync), the Service waits for the cache
        # instead of writing the same endpoints against the stale resourceVersion it holds.
        with pytest.raises(TransientError, match="cache is behind"):
            controller.reconcile(web)
    finally:
        gate.set()
        pods.remove_handler(hold)
    assert controller.reconcile(web) is None
