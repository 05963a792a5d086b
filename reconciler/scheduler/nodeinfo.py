"""The scheduler's plain data: what it needs to know about a node and about a pod.

Everything the placement core (``reconciler.scheduler.placement``) reads is here, as frozen
dataclasses built from the API objects by :func:`node_info` and :func:`pod_info`. ``capstan
plan`` builds the same values from a commit's manifests and hands them to
:func:`reconciler.scheduler.plan`, so the answer "which pod starts on which node" comes from the
same code that binds pods in the running cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NewType

from schemas import Node, Pod
from schemas.node import Taint
from schemas.pod import Container, Toleration
from schemas.quantity import Quantity
from schemas.scheduling import Affinity, TopologySpreadConstraint

__all__ = [
    "DEFAULT_CPU_REQUEST_MILLI",
    "DEFAULT_MAX_PODS",
    "DEFAULT_MEMORY_REQUEST_BYTES",
    "HARD_TAINT_EFFECTS",
    "HOSTNAME_LABEL",
    "HostPort",
    "NodeInfo",
    "NodeName",
    "PodInfo",
    "PodKey",
    "node_info",
    "pod_info",
    "pod_key",
]

#: The label every node carries with its own name (Kubernetes' well-known label).
HOSTNAME_LABEL = "kubernetes.io/hostname"

NodeName = NewType("NodeName", str)
PodKey = NewType("PodKey", str)
"""``namespace/name`` of a pod."""

DEFAULT_MAX_PODS = 110
"""Pod slots of a node that reports none (the kubelet's default ``maxPods``)."""

# Kubernetes scores a pod without requests as if it asked for 100m CPU and 200 MiB
# (``schedutil.DefaultMilliCPURequest``): otherwise LeastAllocated would pile every
# request-less pod onto one node, since such pods change no node's score.
DEFAULT_CPU_REQUEST_MILLI = 100
DEFAULT_MEMORY_REQUEST_BYTES = 200 * 1024 * 1024

HARD_TAINT_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
"""Taint effects that keep a pod that does not tolerate them off the node."""


@dataclass(frozen=True, slots=True)
class HostPort:
    """A port a pod binds on its node: ``host_ip`` ``0.0.0.0`` means every address."""

    port: int
    protocol: str = "TCP"
    host_ip: str = "0.0.0.0"  # noqa: S104 - a port spec, not a listening socket

    def conflicts(self, other: HostPort) -> bool:
        if self.port != other.port or self.protocol != other.protocol:
            return False
        wildcard = "0.0.0.0"  # noqa: S104
        return self.host_ip == other.host_ip or wildcard in (self.host_ip, other.host_ip)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node as the scheduler sees it: allocatable resources, labels, taints, readiness."""

    name: NodeName
    cpu_milli: int
    memory_bytes: int
    max_pods: int = DEFAULT_MAX_PODS
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    taints: tuple[Taint, ...] = ()
    ready: bool = True
    unschedulable: bool = False

    @property
    def hard_taints(self) -> tuple[Taint, ...]:
        return tuple(t for t in self.taints if t.effect in HARD_TAINT_EFFECTS)


@dataclass(frozen=True, slots=True)
class PodInfo:
    """A pod's scheduling needs. ``node_name`` is set for a pod already bound to a node."""

    key: PodKey
    cpu_milli: int = 0
    memory_bytes: int = 0
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    host_ports: tuple[HostPort, ...] = ()
    owner: str | None = None
    """uid of the controlling owner (a ReplicaSet): replicas of one owner are spread."""
    node_name: NodeName | None = None
    labels: tuple[tuple[str, str], ...] = ()
    """What other pods' affinity terms and spread constraints match."""
    affinity: Affinity | None = field(default=None, hash=False, compare=False)
    spread: tuple[TopologySpreadConstraint, ...] = field(default=(), hash=False, compare=False)
    priority: int = 0
    """spec.priority, or the value of its PriorityClass: higher is scheduled first, and may
    preempt lower ones."""
    preempts: bool = True
    """False for preemptionPolicy Never: the pod waits rather than evicting others."""

    @property
    def score_cpu_milli(self) -> int:
        return self.cpu_milli or DEFAULT_CPU_REQUEST_MILLI

    @property
    def score_memory_bytes(self) -> int:
        return self.memory_bytes or DEFAULT_MEMORY_REQUEST_BYTES

    @property
    def signature(self) -> tuple[tuple[tuple[str, str], ...], tuple[Toleration, ...], str]:
        """What the node-dependent static filters read: pods sharing it share a node mask."""
        node_affinity = self.affinity.node_affinity if self.affinity is not None else None
        required = (
            node_affinity.required_during_scheduling_ignored_during_execution
            if node_affinity is not None
            else None
        )
        key = required.model_dump_json() if required is not None else ""
        return (self.node_selector, self.tolerations, key)


def pod_key(namespace: str, name: str) -> PodKey:
    return PodKey(f"{namespace}/{name}")


def _quantity(node: Node, resource: str) -> int | None:
    """spec.capacity overrides what the agent measured; allocatable beats capacity."""
    override: Quantity | None = (
        getattr(node.spec.capacity, resource) if node.spec.capacity is not None else None
    )
    if override is not None:
        return override.millicores if resource == "cpu" else override.bytes
    status = node.status
    if status is None:
        return None
    quantity = status.allocatable.get(resource) or status.capacity.get(resource)
    if quantity is None:
        return None
    return quantity.millicores if resource == "cpu" else quantity.bytes


def node_info(node: Node) -> NodeInfo:
    """The scheduler's view of a Node object. A node that never reported is not Ready."""
    ready = False
    if node.status is not None:
        condition = node.status.condition("Ready")
        ready = condition is not None and condition.status == "True"
    pods = _quantity(node, "pods")
    return NodeInfo(
        name=NodeName(node.name),
        cpu_milli=_quantity(node, "cpu") or 0,
        memory_bytes=_quantity(node, "memory") or 0,
        max_pods=DEFAULT_MAX_PODS if pods is None else pods,
        # Every node answers to its name, as kubelets label it; claim pinning selects on it.
        labels={HOSTNAME_LABEL: node.name, **node.labels},
        taints=tuple(node.spec.taints),
        ready=ready,
        unschedulable=node.spec.unschedulable,
    )


def _request(pod: Pod, resource: str) -> int:
    """Kubernetes' effective request: the larger of the containers' sum and any init container
    (init containers run one at a time, before the others)."""

    def one(container: Container) -> int:
        quantity = container.resources.requests.get(resource)
        if quantity is None:
            return 0
        return quantity.millicores if resource == "cpu" else quantity.bytes

    total = sum(one(c) for c in pod.spec.containers)
    init = max((one(c) for c in pod.spec.init_containers), default=0)
    return max(total, init)


def _host_ports(pod: Pod) -> tuple[HostPort, ...]:
    ports: list[HostPort] = []
    for container in pod.spec.containers:
        for port in container.ports:
            # On the host's network every container port is a host port.
            number = port.container_port if pod.spec.host_network else port.host_port
            if number is not None:
                ports.append(
                    HostPort(port=number, protocol=port.protocol, host_ip=port.host_ip or "0.0.0.0")  # noqa: S104
                )
    return tuple(ports)


def pod_info(pod: Pod) -> PodInfo:
    """The scheduler's view of a Pod object."""
    owner = next((ref.uid for ref in pod.metadata.owner_references if ref.controller), None)
    node = pod.spec.node_name
    return PodInfo(
        key=pod_key(pod.namespace, pod.name),
        cpu_milli=_request(pod, "cpu"),
        memory_bytes=_request(pod, "memory"),
        node_selector=tuple(sorted(pod.spec.node_selector.items())),
        tolerations=tuple(pod.spec.tolerations),
        host_ports=_host_ports(pod),
        owner=owner,
        node_name=NodeName(node) if node else None,
        labels=tuple(sorted(pod.labels.items())),
        affinity=pod.spec.affinity,
        spread=tuple(pod.spec.topology_spread_constraints),
        priority=pod.spec.priority or 0,
        preempts=pod.spec.preemption_policy != "Never",
    )
