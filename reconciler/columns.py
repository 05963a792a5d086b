"""How each kind prints as a table of models: ``capstan get`` and the web UI.

``columns`` gives a kind's columns (the ``wide`` variant adds some) as (header, cell) pairs
over ``schemas`` models; the cells used on their own (``age``, ``pod_status``, ``node_status``
...) compute what ``kubectl get`` shows. Used by ``capstan get``/``describe``
(:mod:`reconciler.cli.inspect`) and the UI's views (:mod:`reconciler.ui._views`). The API
server's Table printing (:mod:`reconciler.api.server._table`) works on JSON and has kubectl's
own columns, which differ from these (AGENT, PORTS).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from schemas import (
    ConfigMap,
    Deployment,
    KubeObject,
    Namespace,
    Node,
    Pod,
    ReplicaSet,
    Secret,
    Service,
    ServiceAccount,
)
from schemas.apps import DaemonSet, StatefulSet
from schemas.batch import CronJob, Job
from schemas.networking import (
    Ingress,
    IngressClass,
    printed_address,
    printed_hosts,
    printed_ports,
)
from schemas.storage import PersistentVolumeClaim

__all__ = [
    "Column",
    "age",
    "columns",
    "node_agent",
    "node_status",
    "node_version",
    "pod_ready",
    "pod_restarts",
    "pod_status",
]


def age(obj: KubeObject, *, now: datetime | None = None) -> str:
    created = obj.metadata.creation_timestamp
    if created is None:
        return "-"
    seconds = int(((now or datetime.now(tz=UTC)) - created).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


Column = tuple[str, Callable[[KubeObject], object]]


def pod_ready(pod: KubeObject) -> str:
    assert isinstance(pod, Pod)
    statuses = pod.status.container_statuses if pod.status else []
    ready = sum(1 for s in statuses if s.ready)
    return f"{ready}/{len(pod.spec.containers)}"


def pod_status(pod: KubeObject) -> str:
    assert isinstance(pod, Pod)
    if pod.metadata.deletion_timestamp is not None:
        return "Terminating"
    status = pod.status
    if status is None:
        return "Pending"
    for container in status.container_statuses:
        waiting = container.state.waiting
        if waiting is not None and waiting.reason:
            return waiting.reason
        terminated = container.state.terminated
        if terminated is not None and terminated.reason and status.phase != "Succeeded":
            return terminated.reason
    return status.reason or status.phase or "Pending"


def pod_restarts(pod: KubeObject) -> int:
    assert isinstance(pod, Pod)
    return sum(s.restart_count for s in (pod.status.container_statuses if pod.status else []))


def _pod_ports(pod: KubeObject) -> str:
    assert isinstance(pod, Pod)
    ports = pod.status.host_ports if pod.status else []
    return ",".join(f"{p.host_ip}:{p.host_port}->{p.container_port}" for p in ports) or "-"


def _deploy_ready(obj: KubeObject) -> str:
    assert isinstance(obj, Deployment)
    status = obj.status
    ready = status.ready_replicas if status and status.ready_replicas else 0
    return f"{ready}/{obj.spec.replicas}"


def _deploy_field(name: str) -> Callable[[KubeObject], object]:
    def read(obj: KubeObject) -> object:
        status = getattr(obj, "status", None)
        value = getattr(status, name, None) if status is not None else None
        return value if value is not None else 0

    return read


def _rs_desired(obj: KubeObject) -> int:
    assert isinstance(obj, ReplicaSet)
    return obj.spec.replicas


def _svc_ports(obj: KubeObject) -> str:
    assert isinstance(obj, Service)
    parts = []
    for port in obj.spec.ports:
        text = f"{port.port}"
        if port.node_port:
            text += f":{port.node_port}"
        parts.append(f"{text}/{port.protocol}")
    return ",".join(parts) or "<none>"


def node_status(obj: KubeObject) -> str:
    assert isinstance(obj, Node)
    ready = obj.status.condition("Ready") if obj.status else None
    text = "Ready" if ready is not None and ready.status == "True" else "NotReady"
    if ready is not None and ready.status == "Unknown":
        text = "Unknown"
    if obj.spec.unschedulable:
        text += ",SchedulingDisabled"
    return text


def node_agent(obj: KubeObject) -> str:
    assert isinstance(obj, Node)
    condition = obj.status.condition("AgentConnected") if obj.status else None
    return condition.reason or condition.status if condition is not None else "-"


def node_version(obj: KubeObject) -> str:
    assert isinstance(obj, Node)
    info = obj.status.node_info if obj.status else None
    return info.agent_version or "-" if info is not None else "-"


def _data_count(obj: KubeObject) -> int:
    data = getattr(obj, "data", None) or {}
    return (
        len(data)
        + len(getattr(obj, "binary_data", None) or {})
        + len(getattr(obj, "string_data", None) or {})
    )


def _selector(obj: KubeObject) -> str:
    assert isinstance(obj, Service)
    return ",".join(f"{k}={v}" for k, v in obj.spec.selector.items()) or "<none>"


def _images(obj: KubeObject) -> str:
    template = getattr(getattr(obj, "spec", None), "template", None)
    containers = template.spec.containers if template is not None else []
    return ",".join(c.image for c in containers)


def _namespace_phase(obj: KubeObject) -> str:
    assert isinstance(obj, Namespace)
    return (obj.status.phase if obj.status and obj.status.phase else None) or "Active"


def _ds_node_selector(obj: KubeObject) -> str:
    assert isinstance(obj, DaemonSet)
    selector = obj.spec.template.spec.node_selector
    return ",".join(f"{k}={v}" for k, v in selector.items()) or "<none>"


def _sts_ready(obj: KubeObject) -> str:
    assert isinstance(obj, StatefulSet)
    ready = obj.status.ready_replicas if obj.status else 0
    return f"{ready}/{obj.spec.replicas}"


def _pvc_status(obj: KubeObject) -> str:
    assert isinstance(obj, PersistentVolumeClaim)
    return obj.status.phase if obj.status else "Pending"


def _pvc_capacity(obj: KubeObject) -> str:
    assert isinstance(obj, PersistentVolumeClaim)
    storage = obj.spec.resources.requests.get("storage")
    return str(storage) if storage is not None else "-"


def _job_status(obj: KubeObject) -> str:
    assert isinstance(obj, Job)
    finished = obj.status.finished if obj.status else None
    if finished is not None:
        return finished
    return "Suspended" if obj.spec.suspend else "Running"


def _job_completions(obj: KubeObject) -> str:
    assert isinstance(obj, Job)
    done = obj.status.succeeded if obj.status else 0
    wanted = obj.spec.wanted_completions
    return f"{done}/{wanted if wanted is not None else 1}"


def _job_duration(obj: KubeObject) -> str:
    assert isinstance(obj, Job)
    status = obj.status
    if status is None or status.start_time is None:
        return "-"
    end = status.completion_time or datetime.now(tz=UTC)
    seconds = max(int((end - status.start_time).total_seconds()), 0)
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


def _job_images(obj: KubeObject) -> str:
    assert isinstance(obj, CronJob)
    return ",".join(c.image for c in obj.spec.job_template.spec.template.spec.containers)


def _cronjob_last(obj: KubeObject) -> str:
    assert isinstance(obj, CronJob)
    last = obj.status.last_schedule_time if obj.status else None
    if last is None:
        return "<none>"
    seconds = max(int((datetime.now(tz=UTC) - last).total_seconds()), 0)
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


_AGE: Column = ("AGE", lambda obj: age(obj))

_TABLES: dict[type[KubeObject], tuple[list[Column], list[Column]]] = {
    Pod: (
        [
            ("NAME", lambda o: o.name),
            ("READY", pod_ready),
            ("STATUS", pod_status),
            ("RESTARTS", pod_restarts),
            _AGE,
        ],
        [
            ("NODE", lambda o: getattr(o.spec, "node_name", None) or "<none>"),  # type: ignore[attr-defined]
            ("PORTS", _pod_ports),
        ],
    ),
    Deployment: (
        [
            ("NAME", lambda o: o.name),
            ("READY", _deploy_ready),
            ("UP-TO-DATE", _deploy_field("updated_replicas")),
            ("AVAILABLE", _deploy_field("available_replicas")),
            _AGE,
        ],
        [("IMAGES", _images)],
    ),
    ReplicaSet: (
        [
            ("NAME", lambda o: o.name),
            ("DESIRED", _rs_desired),
            ("CURRENT", _deploy_field("replicas")),
            ("READY", _deploy_field("ready_replicas")),
            _AGE,
        ],
        [("IMAGES", _images)],
    ),
    Service: (
        [
            ("NAME", lambda o: o.name),
            ("TYPE", lambda o: o.spec.type),  # type: ignore[attr-defined]
            ("CLUSTER-IP", lambda o: o.spec.cluster_ip or "<none>"),  # type: ignore[attr-defined]
            ("PORT(S)", _svc_ports),
            _AGE,
        ],
        [("SELECTOR", _selector)],
    ),
    Node: (
        [("NAME", lambda o: o.name), ("STATUS", node_status), ("AGENT", node_agent), _AGE],
        [
            ("ADDRESS", lambda o: o.spec.address),  # type: ignore[attr-defined]
            ("VERSION", node_version),
        ],
    ),
    ConfigMap: ([("NAME", lambda o: o.name), ("DATA", _data_count), _AGE], []),
    Secret: (
        [
            ("NAME", lambda o: o.name),
            ("TYPE", lambda o: o.type),  # type: ignore[attr-defined]
            ("DATA", _data_count),
            _AGE,
        ],
        [],
    ),
    Namespace: ([("NAME", lambda o: o.name), ("STATUS", _namespace_phase), _AGE], []),
    ServiceAccount: ([("NAME", lambda o: o.name), _AGE], []),
    DaemonSet: (
        [
            ("NAME", lambda o: o.name),
            ("DESIRED", _deploy_field("desired_number_scheduled")),
            ("CURRENT", _deploy_field("current_number_scheduled")),
            ("READY", _deploy_field("number_ready")),
            ("UP-TO-DATE", _deploy_field("updated_number_scheduled")),
            ("AVAILABLE", _deploy_field("number_available")),
            ("NODE SELECTOR", _ds_node_selector),
            _AGE,
        ],
        [("IMAGES", _images)],
    ),
    StatefulSet: (
        [("NAME", lambda o: o.name), ("READY", _sts_ready), _AGE],
        [("IMAGES", _images)],
    ),
    PersistentVolumeClaim: (
        [
            ("NAME", lambda o: o.name),
            ("STATUS", _pvc_status),
            ("NODE", lambda o: o.bound_node or "<none>"),  # type: ignore[attr-defined]
            ("CAPACITY", _pvc_capacity),
            _AGE,
        ],
        [("STORAGECLASS", lambda o: o.spec.storage_class_name or "<none>")],  # type: ignore[attr-defined]
    ),
    Job: (
        [
            ("NAME", lambda o: o.name),
            ("STATUS", _job_status),
            ("COMPLETIONS", _job_completions),
            ("DURATION", _job_duration),
            _AGE,
        ],
        [("IMAGES", _images)],
    ),
    CronJob: (
        [
            ("NAME", lambda o: o.name),
            ("SCHEDULE", lambda o: o.spec.schedule),  # type: ignore[attr-defined]
            ("TIMEZONE", lambda o: o.spec.time_zone or "<none>"),  # type: ignore[attr-defined]
            ("SUSPEND", lambda o: o.spec.suspend),  # type: ignore[attr-defined]
            ("ACTIVE", lambda o: len(o.status.active) if o.status else 0),  # type: ignore[attr-defined]
            ("LAST SCHEDULE", _cronjob_last),
            _AGE,
        ],
        [("IMAGES", _job_images)],
    ),
    Ingress: (
        [
            ("NAME", lambda o: o.name),
            ("CLASS", lambda o: o.class_name or "<none>"),  # type: ignore[attr-defined]
            ("HOSTS", lambda o: printed_hosts(o.to_dict())),
            ("ADDRESS", lambda o: printed_address(o.to_dict())),
            ("PORTS", lambda o: printed_ports(o.to_dict())),
            _AGE,
        ],
        [],
    ),
    IngressClass: (
        [
            ("NAME", lambda o: o.name),
            ("CONTROLLER", lambda o: o.spec.controller or ""),  # type: ignore[attr-defined]
            _AGE,
        ],
        [],
    ),
}


def columns(kind: type[KubeObject], *, wide: bool, all_namespaces: bool) -> Sequence[Column]:
    base, extra = _TABLES[kind]
    chosen = [*base, *extra] if wide else list(base)
    if all_namespaces and kind.NAMESPACED:
        chosen.insert(0, ("NAMESPACE", lambda o: o.namespace))
    return chosen
