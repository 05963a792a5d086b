"""Defaults are Kubernetes' own."""

import pytest

from schemas import (
    Deployment,
    Pod,
    ReplicaSet,
    Secret,
    Service,
    parse_object,
    resolve_int_or_percent,
)


def test_deployment_defaults(deployment):
    obj = parse_object(deployment)
    assert isinstance(obj, Deployment)
    spec = obj.spec
    assert spec.replicas == 1
    assert spec.strategy.type == "RollingUpdate"
    assert spec.strategy.rolling_update is not None
    assert spec.strategy.rolling_update.max_surge == "25%"
    assert spec.strategy.rolling_update.max_unavailable == "25%"
    assert spec.revision_history_limit == 10
    assert spec.progress_deadline_seconds == 600
    assert spec.min_ready_seconds == 0
    assert spec.paused is False


def test_rolling_update_fields_default_separately(deployment):
    deployment["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": 1}}
    strategy = parse_object(deployment).spec.strategy
    assert strategy.type == "RollingUpdate"
    assert strategy.rolling_update.max_surge == 1
    assert strategy.rolling_update.max_unavailable == "25%"


def test_recreate_has_no_rolling_update(deployment):
    deployment["spec"]["strategy"] = {"type": "Recreate"}
    strategy = parse_object(deployment).spec.strategy
    assert strategy.type == "Recreate"
    assert strategy.rolling_update is None


def test_pod_spec_defaults(pod):
    obj = parse_object(pod)
    assert isinstance(obj, Pod)
    assert obj.spec.restart_policy == "Always"
    assert obj.spec.termination_grace_period_seconds == 30
    assert obj.spec.host_network is False
    assert obj.status is None


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("busybox", "Always"),
        ("busybox:latest", "Always"),
        ("registry.local:5000/busybox", "Always"),
        ("registry.local:5000/busybox:latest", "Always"),
        ("registry.local:5000/busybox:1.36", "IfNotPresent"),
        ("capstan.local/busybox:1", "IfNotPresent"),
        ("busybox@sha256:" + "a" * 64, "IfNotPresent"),
    ],
)
def test_image_pull_policy_follows_the_tag(pod, image, policy):
    pod["spec"]["containers"][0]["image"] = image
    assert parse_object(pod).spec.containers[0].image_pull_policy == policy


def test_explicit_image_pull_policy_wins(pod):
    pod["spec"]["containers"][0].update(image="busybox:latest", imagePullPolicy="Never")
    assert parse_object(pod).spec.containers[0].image_pull_policy == "Never"


def test_probe_defaults(deployment):
    container = parse_object(deployment).spec.template.spec.containers[0]
    probe = container.readiness_probe
    assert probe is not None
    assert (probe.period_seconds, probe.timeout_seconds) == (10, 1)
    assert (probe.failure_threshold, probe.success_threshold) == (3, 1)
    assert probe.initial_delay_seconds == 0
    assert probe.http_get.scheme == "HTTP"


def test_service_defaults(service):
    service["spec"]["ports"] = [{"port": 80}]
    obj = parse_object(service)
    assert isinstance(obj, Service)
    assert obj.spec.type == "ClusterIP"
    (port,) = obj.spec.ports
    assert port.protocol == "TCP"
    assert port.target_port == 80
    assert port.node_port is None


def test_named_target_port_is_kept(service):
    assert parse_object(service).spec.ports[0].target_port == "http"


def test_secret_type_defaults_to_opaque():
    obj = parse_object({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})
    assert isinstance(obj, Secret)
    assert obj.type == "Opaque"


def test_replicaset_defaults(deployment):
    spec = deployment["spec"]
    doc = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-abc"},
        "spec": {"selector": spec["selector"], "template": spec["template"]},
    }
    obj = parse_object(doc)
    assert isinstance(obj, ReplicaSet)
    assert obj.spec.replicas == 1
    assert obj.spec.min_ready_seconds == 0


def test_requests_default_to_limits(pod):
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}}
    resources = parse_object(pod).spec.containers[0].resources
    assert resources.requests["cpu"].millicores == 1000
    assert resources.requests["memory"].bytes == 2**30


def test_container_port_protocol_defaults_to_tcp(deployment):
    port = parse_object(deployment).spec.template.spec.containers[0].ports[0]
    assert port.protocol == "TCP"


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [
        ("25%", 3, True, 1),
        ("25%", 3, False, 0),
        ("25%", 4, False, 1),
        ("50%", 5, True, 3),
        (2, 10, True, 2),
        ("0%", 10, True, 0),
        ("100%", 7, False, 7),
    ],
)
def test_resolve_int_or_percent(value, total, round_up, expected):
    assert resolve_int_or_percent(value, total, round_up=round_up) == expected
