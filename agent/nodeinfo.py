"""The node's own status: capacity read from the host, versions, conditions.

Called by the server for every ``status`` message. Capacity is what the host has
(``os.cpu_count()``, ``MemTotal`` of ``/proc/meminfo``); allocatable is the same minus nothing
reserved, which the scheduler may narrow with the Node manifest's ``spec.capacity``.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from schemas.meta import Condition
from schemas.node import NodeAddress, NodeStatus, NodeSystemInfo
from schemas.quantity import Quantity

MAX_PODS = 110


def memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"{meminfo} has no MemTotal line")


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
    capacity = {
        "cpu": Quantity(os.cpu_count() or 1),
        "memory": Quantity(memory_bytes()),
        "pods": Quantity(MAX_PODS),
    }
    uname = platform.uname()
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
                last_heartbeat_time=heartbeat,
            ),
            *conditions,
        ],
        node_info=NodeSystemInfo(
            docker_version=docker_version,
            agent_version=agent_version,
            kernel=uname.release,
            os=uname.system.lower(),
            architecture=uname.machine,
        ),
        addresses=[
            NodeAddress(type="InternalIP", address=bind_address),
            NodeAddress(type="Hostname", address=socket.gethostname()),
        ],
    )
