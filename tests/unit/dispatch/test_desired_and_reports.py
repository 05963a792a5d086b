"""The dispatcher's pure parts: a node's desired set, and agent reports turned into status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.nodes import NodeName, NodeState, Phase
from reconciler.nodes.desired import (
    PodWireCache,
    bound_pods,
    desired_set,
    referenced_names,
    service_rule,
)
from reconciler.nodes.reports import (
    agent_condition,
    node_status_update,
    pod_report_applies,
    pod_status_update,
    with_condition,
)
from schemas import ConfigMap, Node, Pod, Secret, Service, parse_object
from schemas.meta import Condition
from schemas.node import NodeStatus
from schemas.pod import PodStatus
from schemas.protocol import Endpoint, PodReport, ServicePortRule, ServiceRule, Sync

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pod(name: str, node: str | None = "n1", *, uid: str | None = None, **spec: Any) -> Pod:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": uid or f"uid-{name}",
            "resourceVersion": "7",
        },
        "spec": {"containers": [{"name": "c", "image": "img"}], **spec},
    }
    if node:
        doc["spec"]["nodeName"] = node
    parsed = parse_object(doc)
    assert isinstance(parsed, Pod)
    return parsed


def cm(name: str) -> ConfigMap:
    found = parse_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "3"},
            "data": {"k": "v"},
        }
    )
    assert isinstance(found, ConfigMap)
    return found


def secret(name: str) -> Secret:
    found = parse_object(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": "default"},
            "stringData": {"k": "hunter2"},
        }
    )
    assert isinstance(found, Secret)
    return found


def test_bound_pods_skips_other_nodes_unbound_and_terminating() -> None:
    gone = pod("c")
    gone = gone.model_copy(
        update={"metadata": gone.metadata.model_copy(update={"deletion_timestamp": T0})}
    )
    chosen = bound_pods([pod("b"), pod("a"), pod("x", "n2"), pod("u", None), gone], "n1")
    assert [p.name for p in chosen] == ["a", "b"]


def test_referenced_names_cover_env_env_from_and_volumes() -> None:
    spec = pod(
        "a",
        initContainers=[{"name": "i", "image": "img", "envFrom": [{"secretRef": {"name": "s1"}}]}],
        containers=[
            {
                "name": "c",
                "image": "img",
                "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm1", "key": "k"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}},
                    {"name": "C", "value": "plain"},
                ],
                "envFrom": [{"configMapRef": {"name": "cm2"}}],
            }
        ],
        volumes=[
            {"name": "v1", "configMap": {"name": "cm3"}},
            {"name": "v2", "secret": {"secretName": "s3"}},
            {"name": "v3", "emptyDir": {}},
        ],
    ).spec
    assert referenced_names(spec) == ({"cm1", "cm2", "cm3"}, {"s1", "s2", "s3"})


def lookup(objs: list[Any]) -> Any:
    table = {(o.namespace, o.name): o for o in objs}
    return lambda ns, name: table.get((ns, name))


def test_desired_set_carries_referenced_config_only_and_no_status() -> None:
    a = pod(
        "a",
        volumes=[
            {"name": "v", "configMap": {"name": "used"}},
            {"name": "s", "secret": {"secretName": "creds"}},
            {"name": "m", "configMap": {"name": "missing"}},
        ],
    )
    a = a.model_copy(update={"status": PodStatus(phase="Running")})
    desired = desired_set(
        [a],
        config_map=lookup([cm("used"), cm("other")]),
        secret=lookup([secret("creds")]),
        services=[],
    )
    assert [c.name for c in desired.config_maps] == ["used"]
    assert [s.name for s in desired.secrets] == ["creds"]
    assert desired.pods[0].status is None
    assert desired.pods[0].metadata.resource_version is None
    assert desired.config_maps[0].metadata.resource_version is None
    assert "hunter2" not in repr(desired)


def test_a_status_write_does_not_change_the_desired_set() -> None:
    before = pod("a")
    after = before.model_copy(
        update={
            "status": PodStatus(phase="Running"),
            "metadata": before.metadata.model_copy(update={"resource_version": "99"}),
        }
    )
    args: dict[str, Any] = {"config_map": lookup([]), "secret": lookup([]), "services": []}
    assert desired_set([before], **args) == desired_set([after], **args)


def service(**spec: Any) -> Service:
    found = parse_object(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, **spec},
        }
    )
    assert isinstance(found, Service)
    return found


def test_the_wire_cache_keeps_a_pod_until_it_is_forgotten_or_not_retained() -> None:
    cache = PodWireCache()
    a, b = pod("a"), pod("b")
    wired_a, wired_b = cache.wire(a)[0], cache.wire(b)[0]
    assert cache.wire(a)[0] is wired_a  # same resourceVersion: the kept wire form
    cache.forget("uid-a")
    assert cache.wire(a)[0] is not wired_a
    assert cache.wire(b)[0] is wired_b
    cache.retain({"uid-a"})
    assert cache.wire(b)[0] is not wired_b


def test_service_rule_uses_the_service_ports_and_known_endpoints() -> None:
    svc = service(
        type="NodePort",
        ports=[
            {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
            {"name": "metrics", "port": 9100},
        ],
    )
    assert [p.endpoints for p in service_rule(svc, None).ports] == [[], []]
    endpoints = ServiceRule(
        namespace="default",
        name="web",
        ports=[ServicePortRule(port=80, endpoints=[Endpoint(address="127.0.0.2", port=32001)])],
    )
    rule = service_rule(svc, endpoints)
    assert rule.type == "NodePort"
    assert rule.ports[0].node_port == 30080
    assert rule.ports[0].endpoints == [Endpoint(address="127.0.0.2", port=32001)]
    assert rule.ports[1].endpoints == []


@pytest.mark.parametrize(
    ("cluster_ip", "pinned"),
    [("10.96.0.10", "10.96.0.10"), ("None", None), ("", None), ("web\n-A X", None)],
)
def test_only_a_cluster_ip_that_is_an_address_goes_on_the_wire(
    cluster_ip: str, pinned: str | None
) -> None:
    # The wire refuses anything else; a headless Service ("None") must not stop the push.
    svc = service(clusterIP=cluster_ip, ports=[{"port": 80}])
    rule = service_rule(svc, None)
    assert rule.cluster_ip == pinned
    assert Sync(generation=1, services=[rule]).services == [rule]


def ready_status(ready: bool, *, at: datetime = T0) -> PodStatus:
    flag = "True" if ready else "False"
    return PodStatus(
        phase="Running",
        conditions=[
            Condition(type="PodScheduled", status="True", last_transition_time=at),
            Condition(type="Ready", status=flag, last_transition_time=at),
        ],
    )


def test_stale_reports_are_ignored() -> None:
    current = pod("a", uid="new")
    report = PodReport(namespace="default", name="a", uid="old", status=ready_status(True))
    assert not pod_report_applies(current, report, node="n1")
    assert not pod_report_applies(None, report, node="n1")
    same = PodReport(namespace="default", name="a", uid="new", status=ready_status(True))
    assert pod_report_applies(current, same, node="n1")
    assert not pod_report_applies(current, same, node="n2")


def test_pod_status_keeps_the_schedulers_condition_and_skips_no_ops() -> None:
    scheduled_at = T0 - timedelta(minutes=5)
    current = PodStatus(
        phase="Pending",
        conditions=[
            Condition(
                type="PodScheduled",
                status="True",
                reason="Bound",
                last_transition_time=scheduled_at,
            )
        ],
    )
    merged = pod_status_update(current, ready_status(True))
    assert merged is not None
    assert merged.phase == "Running"
    scheduled = merged.condition("PodScheduled")
    assert scheduled is not None
    assert scheduled.reason == "Bound"
    assert scheduled.last_transition_time == scheduled_at
    assert merged.ready
    assert pod_status_update(merged, ready_status(True)) is None
    assert pod_status_update(None, ready_status(False)) == ready_status(False)


def test_pod_condition_times_are_the_control_planes_not_the_skewed_nodes() -> None:
    """A node 10 minutes ahead stamps Ready in the future; minReadySeconds must not wait it out."""
    received = T0 + timedelta(seconds=30)
    skewed = T0 + timedelta(minutes=10)
    became_ready = pod_status_update(
        ready_status(False), ready_status(True, at=skewed), received=received
    )
    assert became_ready is not None
    ready = became_ready.condition("Ready")
    assert ready is not None
    assert ready.last_transition_time == received
    # Still Ready in a later report with yet another node stamp: the stored time stays, and
    # a report that only differs by the node's stamps writes nothing.
    later = ready_status(True, at=skewed + timedelta(minutes=1))
    assert pod_status_update(became_ready, later, received=received + timedelta(seconds=5)) is None
    # The scheduler's condition keeps its own time.
    scheduled = became_ready.condition("PodScheduled")
    assert scheduled is not None
    assert scheduled.last_transition_time == T0


def node_status(*, heartbeat: datetime, cpu: str = "2") -> NodeStatus:
    found = parse_object(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1"},
            "spec": {"address": "local"},
            "status": {
                "capacity": {"cpu": cpu},
                "allocatable": {"cpu": cpu},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "lastTransitionTime": T0.isoformat(),
                        "lastHeartbeatTime": heartbeat.isoformat(),
                    }
                ],
            },
        }
    )
    assert isinstance(found, Node)
    assert found.status is not None
    return found.status


def test_node_status_ignores_heartbeat_only_changes_and_keeps_agent_connected() -> None:
    connected = Condition(type="AgentConnected", status="True", reason="Connected")
    first = node_status_update(None, node_status(heartbeat=T0))
    assert first is not None
    stored = first.model_copy(update={"conditions": [*first.conditions, connected]})
    later = T0 + timedelta(seconds=5)
    assert node_status_update(stored, node_status(heartbeat=later)) is None
    changed = node_status_update(stored, node_status(heartbeat=later, cpu="4"))
    assert changed is not None
    assert changed.condition("AgentConnected") == connected
    assert str(changed.allocatable["cpu"].value) == "4"


def test_agent_condition_names_both_fingerprints_and_keeps_transition_time() -> None:
    state = NodeState(
        NodeName("n1"),
        Phase.HOST_KEY_REJECTED,
        "host key for n1 refused",
        expected_fingerprint="SHA256:expected",
        offered_fingerprint="SHA256:bad",
    )
    condition = agent_condition(state, None, now=T0)
    assert condition.status == "False"
    assert condition.reason == "HostKeyRejected"
    assert condition.message is not None
    assert "SHA256:expected" in condition.message
    assert "SHA256:bad" in condition.message
    again = agent_condition(state, condition, now=T0 + timedelta(seconds=30))
    assert again.last_transition_time == T0
    up = agent_condition(
        NodeState(NodeName("n1"), Phase.CONNECTED, "agent"), again, now=T0 + timedelta(seconds=60)
    )
    assert up.status == "True"
    assert up.last_transition_time == T0 + timedelta(seconds=60)


def test_with_condition_is_none_when_unchanged() -> None:
    node = parse_object(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1"},
            "spec": {"address": "local"},
        }
    )
    assert isinstance(node, Node)
    condition = Condition(type="AgentConnected", status="True", last_transition_time=T0)
    status = with_condition(node, condition)
    assert status is not None
    assert with_condition(node.model_copy(update={"status": status}), condition) is None
