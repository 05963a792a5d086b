"""Objects the API keeps that are not manifests: Events and node heartbeat leases.

Neither kind is in Git, so neither is in ``schemas``' registry; both are stored through the API
like objects (``/registry/events/<ns>/<name>``, ``/registry/leases/capstan-node-lease/<node>``).
Events are written by controllers and the scheduler (``Api.record_event``) and carry a store
lease so they expire on their own; node leases are renewed by each node's agent (or a hollow
node) and read by the node controller, which compares ``renew_time`` with its own clock.
"""

from __future__ import annotations

from typing import Literal

from schemas.meta import KubeModel, Timestamp

__all__ = ["EventRecord", "InvolvedObject", "NodeLease"]


class InvolvedObject(KubeModel):
    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None
    api_version: str | None = None


class EventRecord(KubeModel):
    """A Kubernetes ``v1 Event``: a repeat of the same (object, reason, message, type) bumps
    ``count`` and ``last_timestamp`` instead of writing a new one."""

    name: str
    namespace: str
    involved_object: InvolvedObject
    reason: str
    message: str
    type: Literal["Normal", "Warning"] = "Normal"
    count: int = 1
    first_timestamp: Timestamp
    last_timestamp: Timestamp
    source: str | None = None
    resource_version: str | None = None


class NodeLease(KubeModel):
    """A ``coordination.k8s.io Lease`` in ``kube-node-lease``: the node's heartbeat."""

    node_name: str
    renew_time: Timestamp
    lease_duration_seconds: int = 40
    resource_version: str | None = None
