"""From what an agent says to what the API stores: pod and node status, AgentConnected.

Called by the dispatcher (``reconciler.nodes.dispatch``) for every ``status`` message and
every connection state change. Pure functions of the current object, the report and the
time: they decide *what* to write; the dispatcher writes it (and handles Conflict).
:class:`HeldReports` keeps each node's last pod reports, from which the dispatcher restores
the pods of a node that comes back from Unknown.
"""

from __future__ import annotations

import sys
import threading
from datetime import datetime

from reconciler.nodes._packed import REPORT_JSON
from reconciler.nodes.connection import NodeState
from schemas import Node, Pod
from schemas.meta import Condition
from schemas.node import NodeStatus
from schemas.pod import PodStatus
from schemas.protocol import PodReport, Status

__all__ = [
    "HeldReports",
    "agent_condition",
    "node_status_update",
    "pod_report_applies",
    "pod_status_update",
    "with_condition",
]

#: Conditions the control plane owns on a pod: the agent's view of them never wins.
_CONTROL_PLANE_POD_CONDITIONS = frozenset({"PodScheduled"})


def pod_report_applies(pod: Pod | None, report: PodReport, *, node: str) -> bool:
    """Whether ``report`` from ``node``'s agent describes ``pod`` as it is now.

    A report about a pod that is gone, was recreated under the same name (another uid) or
    was rebound elsewhere is stale and changes nothing.
    """
    return (
        pod is not None
        and pod.metadata.uid == report.uid
        and pod.spec.node_name == node
        and pod.metadata.deletion_timestamp is None
    )


def pod_status_update(
    current: PodStatus | None, reported: PodStatus, *, received: datetime | None = None
) -> PodStatus | None:
    """The pod status to write, or None when the report changes nothing.

    The scheduler's ``PodScheduled`` condition stays as the scheduler wrote it (the agent's
    copy is used only when the pod has none); everything else is the agent's: it is the only
    one who sees the containers. With ``received`` (the control plane's clock when the report
    came), condition transition times are the control plane's: a condition keeps its stored
    time while its status stays, and takes ``received`` when it changes. The agent's stamps
    come from the node's clock, which may be minutes off, and ``minReadySeconds`` counts from
    Ready's transition with the control plane's clock.
    """
    conditions = list(reported.conditions)
    if current is not None:
        kept = {c.type: c for c in current.conditions if c.type in _CONTROL_PLANE_POD_CONDITIONS}
        conditions = [kept.pop(c.type, c) for c in conditions]
        conditions.extend(kept.values())
    if received is not None:
        conditions = [_stamped(c, current, received) for c in conditions]
    merged = reported.model_copy(update={"conditions": conditions})
    return None if merged == current else merged


def _stamped(condition: Condition, current: PodStatus | None, received: datetime) -> Condition:
    if condition.type in _CONTROL_PLANE_POD_CONDITIONS:
        return condition
    before = current.condition(condition.type) if current is not None else None
    if before is not None and before.status == condition.status:
        since = before.last_transition_time
    else:
        since = received
    return condition.model_copy(update={"last_transition_time": since})


def node_status_update(current: NodeStatus | None, reported: NodeStatus) -> NodeStatus | None:
    """The node status to write from an agent's report, or None when nothing changed.

    The agent's conditions replace those it reports (Ready...); conditions it does not
    report (``AgentConnected``, written from the connection) stay. A report that differs
    only by heartbeat times is not written: the heartbeat lease carries liveness, and
    rewriting the Node every few seconds would wake every Node watcher for nothing.
    """
    reported_types = {c.type for c in reported.conditions}
    kept = [c for c in (current.conditions if current else []) if c.type not in reported_types]
    merged = reported.model_copy(update={"conditions": [*reported.conditions, *kept]})
    if current is not None and current.without_heartbeats() == merged.without_heartbeats():
        return None
    return merged


def agent_condition(state: NodeState, previous: Condition | None, *, now: datetime) -> Condition:
    """The ``AgentConnected`` condition for a connection state.

    The transition time moves only when the status does. On a refused host key the message
    names both fingerprints, so the user can tell a reinstalled host from an impostor.
    """
    condition = state.condition()
    message = condition.message or ""
    for label, fingerprint in (
        ("expected", state.expected_fingerprint),
        ("offered", state.offered_fingerprint),
    ):
        if fingerprint and fingerprint not in message:
            message = f"{message}; {label} {fingerprint}" if message else f"{label} {fingerprint}"
    since = (
        previous.last_transition_time
        if previous is not None
        and previous.status == condition.status
        and previous.last_transition_time is not None
        else now
    )
    return condition.model_copy(update={"message": message, "last_transition_time": since})


def with_condition(node: Node, condition: Condition) -> NodeStatus | None:
    """``node``'s status with ``condition`` set (replacing its type), or None if unchanged."""
    status = node.status or NodeStatus()
    others = [c for c in status.conditions if c.type != condition.type]
    existing = status.condition(condition.type)
    if existing == condition:
        return None
    return status.model_copy(update={"conditions": [*others, condition]})


class HeldReports:
    """The last report of every pod each node's agent runs, as the agent said it.

    Fed every status the dispatcher writes (a complete one replaces the node's reports, a
    delta updates the pods it carries and drops those it removes). When a node comes back
    from Unknown over a link that survived the outage, its agent has nothing new to say
    about pods that did not change, yet the node controller marked them not Ready: these
    reports put them back (the kubelet's nodeStatusReportFrequency can then be minutes).
    Kept as packed wire JSON (``_packed.REPORT_JSON``), not as models: they are read only
    then. Keyed by the uid interned, the very string the informers' pods hold.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, dict[str, bytes]] = {}

    def note(self, node: str, status: Status) -> None:
        encoded = {
            sys.intern(r.uid): REPORT_JSON.pack(
                r.model_dump_json(by_alias=True, exclude_none=True).encode()
            )
            for r in status.pods
        }
        with self._lock:
            if status.complete:
                self._nodes[node] = encoded
                return
            held = self._nodes.setdefault(node, {})
            for uid in status.removed:
                held.pop(uid, None)
            held.update(encoded)

    def reports(self, node: str) -> list[PodReport]:
        """The last report of each pod ``node``'s agent runs (none when never heard)."""
        with self._lock:
            held = list(self._nodes.get(node, {}).values())
        return [PodReport.model_validate_json(REPORT_JSON.unpack(data)) for data in held]

    def forget(self, node: str) -> None:
        with self._lock:
            self._nodes.pop(node, None)
