"""The node's own status: capacity read from the host, versions, conditions.

Called by the server for every ``status`` message. Capacity is what the host has
(``os.cpu_count()``, ``MemTotal`` of ``/proc/meminfo``); allocatable is the same minus nothing
reserved, which the scheduler may narrow with the Node manifest's ``spec.capacity``.

The host's identities (:func:`system_info`: kernel, machine and boot ids, OS image) are read
once per process: none changes while the agent runs. ``MemTotal`` is read again at most once
a minute (it moves only with memory hotplug); the CPU count, the addresses and the
conditions on every call. The status built from the same values is made once and copied
with each call's heartbeat time.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from schemas.meta import Condition
from schemas.node import NodeAddress, NodeStatus, NodeSystemInfo
from schemas.quantity import Quantity

MAX_PODS = 110
#: How long a reading of ``MemTotal`` stands.
_MEMORY_READ_S = 60.0


def memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"{meminfo} has no MemTotal line")


def _first_line(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip().splitlines()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return ""


def _os_image(os_release: Path = Path("/etc/os-release")) -> str:
    try:
        lines = os_release.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    for line in lines:
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip().strip('"')
    return ""


@functools.lru_cache(maxsize=4)
def system_info(*, docker_version: str, agent_version: str) -> NodeSystemInfo:
    """The host's versions and identities, in Capstan's fields and Kubernetes' (``kubectl
    get nodes -o wide`` and the Kubernetes clients read the latter)."""
    uname = platform.uname()
    # Kubernetes reports Go's architecture names.
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine)
    return NodeSystemInfo(
        docker_version=docker_version,
        agent_version=agent_version,
        kernel=uname.release,
        os=uname.system.lower(),
        architecture=arch,
        machine_id=_first_line(Path("/etc/machine-id")),
        system_uuid=_first_line(Path("/sys/class/dmi/id/product_uuid")),
        boot_id=_first_line(Path("/proc/sys/kernel/random/boot_id")),
        kernel_version=uname.release,
        os_image=_os_image(),
        container_runtime_version=f"docker://{docker_version}",
        kubelet_version=f"v{agent_version}-capstan",
        operating_system=uname.system.lower(),
    )


def node_status(
    *,
    bind_address: str,
    docker_version: str,
    agent_version: str,
    ready_since: datetime,
    heartbeat: datetime,
    problem: str | None = None,
    conditions: Sequence[Condition] = (),
) -> NodeStatus:
    """``problem`` (e.g. Docker unreachable) turns the Ready condition False with that message;
    ``conditions`` follow Ready (e.g. the proxy's ``ProxyReady``)."""
    base = _node_status(
        cpus=os.cpu_count() or 1,
        memory=_memory_in(int(time.monotonic() // _MEMORY_READ_S)),
        bind_address=bind_address,
        hostname=socket.gethostname(),
        docker_version=docker_version,
        agent_version=agent_version,
        ready_since=ready_since,
        problem=problem,
        conditions=tuple(conditions),
    )
    ready = base.conditions[0].model_copy(update={"last_heartbeat_time": heartbeat})
    return base.model_copy(update={"conditions": [ready, *base.conditions[1:]]})


@functools.lru_cache(maxsize=1)
def _memory_in(_period: int) -> int:
    """``MemTotal`` as read once in a period of ``_MEMORY_READ_S`` (the argument)."""
    return memory_bytes()


@functools.lru_cache(maxsize=8)
def _node_status(
    *,
    cpus: int,
    memory: int,
    bind_address: str,
    hostname: str,
    docker_version: str,
    agent_version: str,
    ready_since: datetime,
    problem: str | None,
    conditions: tuple[Condition, ...],
) -> NodeStatus:
    """The node status of these values, validated once; no heartbeat time yet."""
    capacity = {
        "cpu": Quantity(cpus),
        "memory": Quantity(memory),
        "pods": Quantity(MAX_PODS),
    }
    return NodeStatus(
        capacity=capacity,
        allocatable=dict(capacity),
        conditions=[
            Condition(
                type="Ready",
                status="True" if problem is None else "False",
                reason="AgentReady" if problem is None else "RuntimeUnavailable",
                message=problem or "agent is running",
                last_transition_time=ready_since,
            ),
            *conditions,
        ],
        node_info=system_info(docker_version=docker_version, agent_version=agent_version),
        addresses=[
            NodeAddress(type="InternalIP", address=bind_address),
            NodeAddress(type="Hostname", address=hostname),
        ],
    )
