"""API objects → the scheduler's plain data: requests, host ports, owners, allocatable."""

from __future__ import annotations

from reconciler.scheduler import HostPort, node_info, pod_info
from schemas import Node, Pod


def make_pod(spec: dict[str, object], **meta: object) -> Pod:
    return Pod.model_validate({"metadata": {"name": "p", "namespace": "ns", **meta}, "spec": spec})


def container(name: str, **fields: object) -> dict[str, object]:
    return {"name": name, "image": "i", **fields}


def test_requests_sum_containers_and_take_the_largest_init_container() -> None:
    pod = make_pod(
        {
            "containers": [
                container("a", resources={"requests": {"cpu": "250m", "memory": "64Mi"}}),
                container("b", resources={"limits": {"cpu": "1", "memory": "1Gi"}}),
            ],
            "initContainers": [container("init", resources={"requests": {"cpu": "2"}})],
        }
    )
    info = pod_info(pod)
    assert info.key == "ns/p"
    assert info.cpu_milli == 2000
    assert info.memory_bytes == 64 * 2**20 + 2**30


def test_pod_without_requests_scores_with_kubernetes_defaults() -> None:
    info = pod_info(make_pod({"containers": [container("a")]}))
    assert (info.cpu_milli, info.memory_bytes) == (0, 0)
    assert (info.score_cpu_milli, info.score_memory_bytes) == (100, 200 * 2**20)


def test_host_ports_selector_tolerations_owner_and_node() -> None:
    pod = make_pod(
        {
            "containers": [
                container(
                    "a",
                    ports=[
                        {"containerPort": 80, "hostPort": 8080},
                        {"containerPort": 81},
                        {
                            "containerPort": 53,
                            "hostPort": 53,
                            "protocol": "UDP",
                            "hostIP": "127.0.0.2",
                        },
                    ],
                ),
            ],
            "nodeSelector": {"zone": "a", "disk": "ssd"},
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "nodeName": "n1",
        },
        ownerReferences=[
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "rs",
                "uid": "u1",
                "controller": True,
            }
        ],
    )
    info = pod_info(pod)
    assert info.host_ports == (HostPort(8080), HostPort(53, "UDP", "127.0.0.2"))
    assert info.node_selector == (("disk", "ssd"), ("zone", "a"))
    assert len(info.tolerations) == 1
    assert info.owner == "u1"
    assert info.node_name == "n1"


def test_host_network_container_ports_are_host_ports() -> None:
    pod = make_pod(
        {"containers": [container("a", ports=[{"containerPort": 9100}])], "hostNetwork": True}
    )
    assert pod_info(pod).host_ports == (HostPort(9100),)


def test_node_allocatable_readiness_and_overrides() -> None:
    node = Node.model_validate(
        {
            "metadata": {"name": "n1", "labels": {"zone": "a"}},
            "spec": {
                "address": "10.0.0.1",
                "capacity": {"cpu": "2"},
                "taints": [{"key": "k", "effect": "NoSchedule"}],
            },
            "status": {
                "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "7500m", "memory": "15Gi", "pods": "100"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
    )
    info = node_info(node)
    assert info.cpu_milli == 2000  # spec.capacity overrides what the agent measured
    assert info.memory_bytes == 15 * 2**30
    assert info.max_pods == 100
    assert info.ready
    assert info.labels == {"zone": "a", "kubernetes.io/hostname": "n1"}
    assert [t.key for t in info.hard_taints] == ["k"]


def test_node_that_never_reported_is_not_ready() -> None:
    node = Node.model_validate({"metadata": {"name": "n1"}, "spec": {"address": "local"}})
    info = node_info(node)
    assert not info.ready
    assert (info.cpu_milli, info.memory_bytes, info.max_pods) == (0, 0, 110)
