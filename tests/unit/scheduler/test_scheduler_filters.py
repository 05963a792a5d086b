"""Filters and scores on plain data (table tests), and the Kubernetes-style failure message."""

from __future__ import annotations

import pytest

from reconciler.scheduler import (
    HostPort,
    NodeInfo,
    NodeName,
    NodeUsage,
    PodInfo,
    PodKey,
    filter_reasons,
    least_allocated,
    spread,
    unschedulable_message,
)
from schemas.node import Taint
from schemas.pod import Toleration

GI = 1024**3
NODE = NodeInfo(
    name=NodeName("n1"),
    cpu_milli=4000,
    memory_bytes=8 * GI,
    max_pods=3,
    labels={"disk": "ssd", "zone": "a"},
)
UNREACHABLE = Taint(key="node.kubernetes.io/unreachable", effect="NoExecute")
GPU = Taint(key="gpu", value="true", effect="NoSchedule")
SOFT = Taint(key="soft", effect="PreferNoSchedule")


def pod(**kwargs: object) -> PodInfo:
    return PodInfo(key=PodKey("default/p"), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("node", "usage", "candidate", "expected"),
    [
        (NODE, NodeUsage(), pod(cpu_milli=1000, memory_bytes=GI), ()),
        (NODE, NodeUsage(), pod(cpu_milli=4000, memory_bytes=8 * GI), ()),
        (NODE, NodeUsage(), pod(cpu_milli=4001), ("Insufficient cpu",)),
        (NODE, NodeUsage(memory_bytes=7 * GI), pod(memory_bytes=2 * GI), ("Insufficient memory",)),
        (
            NODE,
            NodeUsage(cpu_milli=4000, memory_bytes=8 * GI, pods=3),
            pod(cpu_milli=1, memory_bytes=1),
            ("Too many pods", "Insufficient cpu", "Insufficient memory"),
        ),
        # A zero request fits an overcommitted node (Kubernetes does the same).
        (NODE, NodeUsage(cpu_milli=9000, memory_bytes=20 * GI, pods=1), pod(), ()),
        (
            NodeInfo(name=NodeName("n"), cpu_milli=1, memory_bytes=1, ready=False),
            NodeUsage(),
            pod(),
            ("node(s) were not ready",),
        ),
        (
            NodeInfo(name=NodeName("n"), cpu_milli=1, memory_bytes=1, unschedulable=True),
            NodeUsage(),
            pod(),
            ("node(s) were unschedulable",),
        ),
        (NODE, NodeUsage(), pod(node_selector=(("disk", "ssd"),)), ()),
        (
            NODE,
            NodeUsage(),
            pod(node_selector=(("disk", "hdd"),)),
            ("node(s) didn't match Pod's node selector",),
        ),
        (
            NODE,
            NodeUsage(),
            pod(node_selector=(("gpu", "yes"),)),
            ("node(s) didn't match Pod's node selector",),
        ),
        (
            NodeInfo(name=NodeName("n"), cpu_milli=1, memory_bytes=1, taints=(UNREACHABLE,)),
            NodeUsage(),
            pod(),
            ("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",),
        ),
        (
            NodeInfo(name=NodeName("n"), cpu_milli=1, memory_bytes=1, taints=(SOFT,)),
            NodeUsage(),
            pod(),
            (),
        ),
        (
            NodeInfo(name=NodeName("n"), cpu_milli=1, memory_bytes=1, taints=(GPU,)),
            NodeUsage(),
            pod(tolerations=(Toleration(key="gpu", operator="Exists"),)),
            (),
        ),
        (
            NodeInfo(name=NodeName("n"), cpu_milli=1, memory_bytes=1, taints=(GPU,)),
            NodeUsage(),
            pod(tolerations=(Toleration(key="gpu", value="false"),)),
            ("node(s) had untolerated taint {gpu: true}",),
        ),
        (
            NodeInfo(name=NodeName("n"), cpu_milli=1, memory_bytes=1, taints=(GPU,)),
            NodeUsage(),
            pod(tolerations=(Toleration(operator="Exists"),)),
            (),
        ),
        (
            NODE,
            NodeUsage(host_ports=(HostPort(8080),)),
            pod(host_ports=(HostPort(8080),)),
            ("node(s) didn't have free ports for the requested pod ports",),
        ),
        (
            NODE,
            NodeUsage(host_ports=(HostPort(8080, host_ip="127.0.0.1"),)),
            pod(host_ports=(HostPort(8080, host_ip="127.0.0.2"),)),
            (),
        ),
        (
            NODE,
            NodeUsage(host_ports=(HostPort(8080, host_ip="127.0.0.1"),)),
            pod(host_ports=(HostPort(8080),)),
            ("node(s) didn't have free ports for the requested pod ports",),
        ),
        (
            NODE,
            NodeUsage(host_ports=(HostPort(53, protocol="UDP"),)),
            pod(host_ports=(HostPort(53),)),
            (),
        ),
    ],
)
def test_filter_reasons(
    node: NodeInfo, usage: NodeUsage, candidate: PodInfo, expected: tuple[str, ...]
) -> None:
    assert filter_reasons(node, candidate, usage=usage) == expected


@pytest.mark.parametrize(
    ("cpu", "memory", "cpu_req", "mem_req", "expected"),
    [
        (4000, 8000, 0, 0, 100),
        (4000, 8000, 2000, 4000, 50),
        (4000, 8000, 1000, 8000, 37),  # (75 + 0) // 2
        (4000, 8000, 5000, 0, 50),  # over-requested resource scores 0
        (0, 0, 0, 0, 0),
        (3, 3, 1, 1, 66),  # integer arithmetic, like kube-scheduler
    ],
)
def test_least_allocated(cpu: int, memory: int, cpu_req: int, mem_req: int, expected: int) -> None:
    score = least_allocated(
        cpu_allocatable=cpu,
        memory_allocatable=memory,
        cpu_requested=cpu_req,
        memory_requested=mem_req,
    )
    assert score == expected


@pytest.mark.parametrize(
    ("count", "max_count", "expected"),
    [(0, 0, 100), (0, 4, 100), (2, 4, 50), (4, 4, 0), (1, 3, 66)],
)
def test_spread(count: int, max_count: int, expected: int) -> None:
    assert spread(count, max_count) == expected


def test_message_counts_and_order() -> None:
    message = unschedulable_message(
        3, {"node(s) didn't match Pod's node selector": 1, "Insufficient memory": 2}
    )
    assert message == (
        "0/3 nodes are available: 2 Insufficient memory, "
        "1 node(s) didn't match Pod's node selector."
    )


def test_message_orders_counts_as_numbers_then_reasons_as_text() -> None:
    message = unschedulable_message(
        14, {"Insufficient cpu": 2, "Insufficient memory": 2, "Too many pods": 10}
    )
    assert message == (
        "0/14 nodes are available: 10 Too many pods, 2 Insufficient cpu, 2 Insufficient memory."
    )


def test_message_without_nodes() -> None:
    assert unschedulable_message(0, {}) == "no nodes available to schedule pods"
