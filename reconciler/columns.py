"""How each kind prints as a table: the one set of columns of ``kubectl get`` and ``capstan get``.

The columns are Kubernetes' own printers' (pods READY STATUS RESTARTS AGE, ``-o wide`` IP
NODE; deployments READY UP-TO-DATE AVAILABLE; services TYPE CLUSTER-IP EXTERNAL-IP PORT(S);
...), each a :class:`Column` whose cell is computed from an object's JSON (its manifest form).
Columns of priority 1 are the ``-o wide`` ones. Used by the API server's Table responses
(:mod:`reconciler.api.server._table`, what ``kubectl get`` prints), by ``capstan get``
(:mod:`reconciler.cli.inspect`, through :func:`printed_table`, which prints the cells as kubectl
does) and, through the model helpers (:func:`age`, :func:`pod_status`, ...), by ``capstan
describe`` and the web UI. Imports nothing of the project but ``schemas``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas import KubeObject
from schemas.networking import printed_address, printed_hosts, printed_ports

__all__ = [
    "Column",
    "age",
    "columns",
    "human_duration",
    "node_agent",
    "node_status",
    "node_version",
    "pod_ready",
    "pod_restarts",
    "pod_status",
    "printed",
    "printed_table",
]

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """A ``TableColumnDefinition`` and how to compute its cell from an object."""

    name: str
    type: str
    cell: Callable[[Obj, datetime], Any]
    priority: int = 0
    format: str = ""
    description: str = ""

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


def human_duration(seconds: float) -> str:
    """Kubernetes' ``duration.HumanDuration``: ``45s``, ``5m10s``, ``3h20m``, ``2d4h``."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


# -- reading fields ------------------------------------------------------------------------


def _get(obj: Any, *path: str | int) -> Any:
    for step in path:
        if isinstance(step, int):
            obj = obj[step] if isinstance(obj, list) and len(obj) > step else None
        else:
            obj = obj.get(step) if isinstance(obj, Mapping) else None
        if obj is None:
            return None
    return obj


def _list(obj: Any, *path: str) -> list[Any]:
    value = _get(obj, *path)
    return value if isinstance(value, list) else []


def _map(obj: Any, *path: str) -> Mapping[str, Any]:
    value = _get(obj, *path)
    return value if isinstance(value, Mapping) else {}


def _since(stamp: Any, now: datetime) -> str:
    if not isinstance(stamp, str) or not stamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((now - then).total_seconds())


def _or_none(value: Any) -> str:
    return str(value) if value not in (None, "", []) else "<none>"


def _name(obj: Obj, now: datetime) -> str:
    return str(_get(obj, "metadata", "name") or "")


def _age(obj: Obj, now: datetime) -> str:
    return _since(_get(obj, "metadata", "creationTimestamp"), now)


def _selector_text(selector: Mapping[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in sorted(_map(selector, "matchLabels").items())]
    for expr in _list(selector, "matchExpressions"):
        key, op = _get(expr, "key"), _get(expr, "operator")
        values = ",".join(str(v) for v in _list(expr, "values"))
        parts.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": f"{key}",
                "DoesNotExist": f"!{key}",
            }.get(str(op), str(key))
        )
    return _or_none(",".join(parts))


def _containers(obj: Obj, now: datetime) -> str:
    return _or_none(
        ",".join(str(_get(c, "name")) for c in _list(obj, "spec", "template", "spec", "containers"))
    )


def _images(obj: Obj, now: datetime) -> str:
    return _or_none(
        ",".join(
            str(_get(c, "image")) for c in _list(obj, "spec", "template", "spec", "containers")
        )
    )


def _workload_selector(obj: Obj, now: datetime) -> str:
    return _selector_text(_map(obj, "spec", "selector"))


_NAME = Column(
    "Name", "string", _name, format="name", description="Name must be unique within a namespace."
)
_AGE = Column(
    "Age", "string", _age, description="CreationTimestamp is when the object was created."
)


# -- pods ----------------------------------------------------------------------------------


def _pod_ready(pod: Obj, now: datetime) -> str:
    statuses = _list(pod, "status", "containerStatuses")
    ready = sum(1 for s in statuses if _get(s, "ready") is True)
    return f"{ready}/{len(_list(pod, 'spec', 'containers'))}"


def _pod_status(pod: Obj, now: datetime) -> str:
    """The STATUS column as kubectl prints it: a container's waiting or terminated reason
    wins over the phase (``CrashLoopBackOff``, ``ContainerCreating``, ``Error``)."""
    reason = str(_get(pod, "status", "reason") or _get(pod, "status", "phase") or "Pending")
    for index, status in enumerate(_list(pod, "status", "initContainerStatuses")):
        terminated = _map(status, "state", "terminated")
        if terminated and terminated.get("exitCode") == 0:
            continue
        waiting = _map(status, "state", "waiting")
        total = len(_list(pod, "spec", "initContainers"))
        if terminated:
            reason = f"Init:{terminated.get('reason') or 'Error'}"
        elif waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{index}/{total}"
        break
    else:
        running = False
        for status in reversed(_list(pod, "status", "containerStatuses")):
            waiting = _map(status, "state", "waiting")
            terminated = _map(status, "state", "terminated")
            if waiting.get("reason"):
                reason = str(waiting["reason"])
            elif terminated.get("reason"):
                reason = str(terminated["reason"])
            elif terminated:
                reason = (
                    f"Signal:{terminated['signal']}"
                    if terminated.get("signal")
                    else f"ExitCode:{terminated.get('exitCode')}"
                )
            elif _get(status, "ready") is True and _map(status, "state", "running"):
                running = True
        if reason == "Completed" and running:
            reason = "Running"
    if _get(pod, "metadata", "deletionTimestamp"):
        reason = "Terminating"
    return reason


def _pod_restarts(pod: Obj, now: datetime) -> str:
    restarts = 0
    last: str | None = None
    for status in _list(pod, "status", "containerStatuses"):
        restarts += int(_get(status, "restartCount") or 0)
        finished = _get(status, "lastState", "terminated", "finishedAt")
        if isinstance(finished, str) and (last is None or finished > last):
            last = finished
    if restarts and last is not None:
        return f"{restarts} ({_since(last, now)} ago)"
    return str(restarts)


_POD_COLUMNS = (
    _NAME,
    Column(
        "Ready",
        "string",
        _pod_ready,
        description="The aggregate readiness state of this pod for accepting traffic.",
    ),
    Column(
        "Status",
        "string",
        _pod_status,
        description="The aggregate status of the containers in this pod.",
    ),
    Column(
        "Restarts",
        "string",
        _pod_restarts,
        description="The number of times the containers in this pod have been restarted "
        "and when the last container in this pod has restarted.",
    ),
    _AGE,
    Column(
        "IP",
        "string",
        lambda p, now: _or_none(_get(p, "status", "podIP")),
        priority=1,
        description="IP address allocated to the pod.",
    ),
    Column(
        "Node",
        "string",
        lambda p, now: _or_none(_get(p, "spec", "nodeName")),
        priority=1,
        description="Name of the Node this pod is assigned to.",
    ),
    Column(
        "Nominated Node",
        "string",
        lambda p, now: "<none>",
        priority=1,
        description="Name of the node the scheduler nominated for preemption.",
    ),
    Column(
        "Readiness Gates",
        "string",
        lambda p, now: "<none>",
        priority=1,
        description="The readiness gates of the pod.",
    ),
)


# -- workloads -----------------------------------------------------------------------------


def _int(obj: Obj, *path: str) -> int:
    value = _get(obj, *path)
    return int(value) if isinstance(value, int) else 0


def _replicas(obj: Obj) -> int:
    value = _get(obj, "spec", "replicas")
    return int(value) if isinstance(value, int) else 1


def _ready_of(obj: Obj, now: datetime) -> str:
    return f"{_int(obj, 'status', 'readyReplicas')}/{_replicas(obj)}"


_WORKLOAD_WIDE = (
    Column(
        "Containers",
        "string",
        _containers,
        priority=1,
        description="Names of each container in the template.",
    ),
    Column(
        "Images",
        "string",
        _images,
        priority=1,
        description="Images referenced by each container in the template.",
    ),
    Column(
        "Selector",
        "string",
        _workload_selector,
        priority=1,
        description="Label selector for the pods.",
    ),
)

_DEPLOYMENT_COLUMNS = (
    _NAME,
    Column(
        "Ready",
        "string",
        _ready_of,
        description="Number of the pod with ready state",
    ),
    Column(
        "Up-to-date",
        "integer",
        lambda d, now: _int(d, "status", "updatedReplicas"),
        description="Total number of non-terminated pods targeted by this deployment "
        "that have the desired template spec.",
    ),
    Column(
        "Available",
        "integer",
        lambda d, now: _int(d, "status", "availableReplicas"),
        description="Total number of available pods (ready for at least minReadySeconds) "
        "targeted by this deployment.",
    ),
    _AGE,
    *_WORKLOAD_WIDE,
)

_REPLICASET_COLUMNS = (
    _NAME,
    Column(
        "Desired", "integer", lambda r, now: _replicas(r), description="Number of desired pods."
    ),
    Column(
        "Current",
        "integer",
        lambda r, now: _int(r, "status", "replicas"),
        description="The most recently observed number of replicas.",
    ),
    Column(
        "Ready",
        "integer",
        lambda r, now: _int(r, "status", "readyReplicas"),
        description="The number of ready replicas for this replica set.",
    ),
    _AGE,
    *_WORKLOAD_WIDE,
)


# -- services, nodes, config ---------------------------------------------------------------


def _service_ports(svc: Obj, now: datetime) -> str:
    ports = []
    for port in _list(svc, "spec", "ports"):
        node_port = _get(port, "nodePort")
        number = f"{port.get('port')}:{node_port}" if node_port else str(port.get("port"))
        ports.append(f"{number}/{port.get('protocol') or 'TCP'}")
    return _or_none(",".join(ports))


_SERVICE_COLUMNS = (
    _NAME,
    Column(
        "Type",
        "string",
        lambda s, now: str(_get(s, "spec", "type") or "ClusterIP"),
        description="The type of service.",
    ),
    Column(
        "Cluster-IP",
        "string",
        lambda s, now: _or_none(_get(s, "spec", "clusterIP")),
        description="The IP address of the service inside the cluster.",
    ),
    Column(
        "External-IP",
        "string",
        lambda s, now: "<none>",
        description="The external IP addresses of the service.",
    ),
    Column("Port(s)", "string", _service_ports, description="The ports the service exposes."),
    _AGE,
    Column(
        "Selector",
        "string",
        lambda s, now: _or_none(
            ",".join(f"{k}={v}" for k, v in sorted(_map(s, "spec", "selector").items()))
        ),
        priority=1,
        description="The label selector of the service's pods.",
    ),
)


def _node_status(node: Obj, now: datetime) -> str:
    ready = next(
        (c for c in _list(node, "status", "conditions") if _get(c, "type") == "Ready"), None
    )
    status = "Unknown"
    if ready is not None:
        status = {"True": "Ready", "False": "NotReady"}.get(str(ready.get("status")), "Unknown")
    if _get(node, "spec", "unschedulable") is True:
        status += ",SchedulingDisabled"
    return status


def _node_roles(node: Obj, now: datetime) -> str:
    prefix = "node-role.kubernetes.io/"
    labels = _map(node, "metadata", "labels")
    roles = sorted(k[len(prefix) :] for k in labels if k.startswith(prefix) and k != prefix)
    if labels.get("kubernetes.io/role"):
        roles.append(str(labels["kubernetes.io/role"]))
    return _or_none(",".join(roles))


def _node_address(kind: str) -> Callable[[Obj, datetime], str]:
    def cell(node: Obj, now: datetime) -> str:
        return _or_none(
            next(
                (
                    a.get("address")
                    for a in _list(node, "status", "addresses")
                    if _get(a, "type") == kind
                ),
                None,
            )
        )

    return cell


def _node_info(*fields: str) -> Callable[[Obj, datetime], str]:
    """The first non-empty of ``fields`` in ``status.nodeInfo``."""

    def cell(node: Obj, now: datetime) -> str:
        info = _map(node, "status", "nodeInfo")
        return _or_none(next((info[f] for f in fields if info.get(f)), None))

    return cell


_NODE_COLUMNS = (
    _NAME,
    Column("Status", "string", _node_status, description="The status of the node."),
    Column("Roles", "string", _node_roles, description="The roles of the node."),
    _AGE,
    Column(
        "Version",
        "string",
        _node_info("kubeletVersion", "agentVersion"),
        description="Kubelet (node agent) version reported by the node.",
    ),
    Column(
        "Internal-IP",
        "string",
        _node_address("InternalIP"),
        priority=1,
        description="List of internal IPs for the node.",
    ),
    Column(
        "External-IP",
        "string",
        _node_address("ExternalIP"),
        priority=1,
        description="List of external IPs for the node.",
    ),
    Column(
        "OS-Image",
        "string",
        _node_info("osImage", "os"),
        priority=1,
        description="OS image reported by the node.",
    ),
    Column(
        "Kernel-Version",
        "string",
        _node_info("kernelVersion", "kernel"),
        priority=1,
        description="Kernel version reported by the node.",
    ),
    Column(
        "Container-Runtime",
        "string",
        _node_info("containerRuntimeVersion", "dockerVersion"),
        priority=1,
        description="Container runtime version reported by the node.",
    ),
)


def _data_count(obj: Obj, now: datetime) -> int:
    return len(_map(obj, "data")) + len(_map(obj, "binaryData")) + len(_map(obj, "stringData"))


_CONFIGMAP_COLUMNS = (
    _NAME,
    Column("Data", "integer", _data_count, description="Number of keys."),
    _AGE,
)
_SECRET_COLUMNS = (
    _NAME,
    Column(
        "Type",
        "string",
        lambda s, now: str(s.get("type") or "Opaque"),
        description="The type of the secret.",
    ),
    Column("Data", "integer", _data_count, description="Number of keys."),
    _AGE,
)
_NAMESPACE_COLUMNS = (
    _NAME,
    Column(
        "Status",
        "string",
        lambda n, now: str(_get(n, "status", "phase") or "Active"),
        description="The status of the namespace.",
    ),
    _AGE,
)
_SERVICEACCOUNT_COLUMNS = (
    _NAME,
    Column(
        "Secrets",
        "integer",
        lambda s, now: len(_list(s, "secrets")),
        description="Number of secrets listed in the service account.",
    ),
    _AGE,
)


# -- RBAC ----------------------------------------------------------------------------------


def _created_at(obj: Obj, now: datetime) -> str:
    return str(_get(obj, "metadata", "creationTimestamp") or "<unknown>")


def _subjects(kind: str) -> Callable[[Obj, datetime], str]:
    def cell(binding: Obj, now: datetime) -> str:
        names = []
        for subject in _list(binding, "subjects"):
            if _get(subject, "kind") != kind:
                continue
            name = str(subject.get("name"))
            names.append(f"{subject.get('namespace')}/{name}" if kind == "ServiceAccount" else name)
        return _or_none(", ".join(names))

    return cell


_ROLE_COLUMNS = (
    _NAME,
    Column(
        "Created At", "string", _created_at, format="date", description="When the role was created."
    ),
)
_BINDING_COLUMNS = (
    _NAME,
    Column(
        "Role",
        "string",
        lambda b, now: f"{_get(b, 'roleRef', 'kind')}/{_get(b, 'roleRef', 'name')}",
        description="The role the binding grants.",
    ),
    _AGE,
    Column("Users", "string", _subjects("User"), priority=1, description="Users bound."),
    Column("Groups", "string", _subjects("Group"), priority=1, description="Groups bound."),
    Column(
        "ServiceAccounts",
        "string",
        _subjects("ServiceAccount"),
        priority=1,
        description="ServiceAccounts bound.",
    ),
)


# -- events --------------------------------------------------------------------------------


def _event_object(event: Obj, now: datetime) -> str:
    kind = str(_get(event, "involvedObject", "kind") or "").lower()
    return f"{kind}/{_get(event, 'involvedObject', 'name')}"


_EVENT_COLUMNS = (
    Column(
        "Last Seen",
        "string",
        lambda e, now: _since(e.get("lastTimestamp"), now),
        description="Time since the event was last seen.",
    ),
    Column(
        "Type",
        "string",
        lambda e, now: str(e.get("type") or "Normal"),
        description="Type of this event.",
    ),
    Column(
        "Reason",
        "string",
        lambda e, now: str(e.get("reason") or ""),
        description="Why the event was generated.",
    ),
    Column("Object", "string", _event_object, description="The object the event is about."),
    Column(
        "Subobject",
        "string",
        lambda e, now: str(_get(e, "involvedObject", "fieldPath") or ""),
        priority=1,
        description="The part of the object the event is about.",
    ),
    Column(
        "Source",
        "string",
        lambda e, now: str(_get(e, "source", "component") or ""),
        priority=1,
        description="The component that reported the event.",
    ),
    Column(
        "Message",
        "string",
        lambda e, now: str(e.get("message") or ""),
        description="A human-readable description of the event.",
    ),
    Column(
        "First Seen",
        "string",
        lambda e, now: _since(e.get("firstTimestamp"), now),
        priority=1,
        description="Time since the event was first seen.",
    ),
    Column(
        "Count",
        "string",
        lambda e, now: str(e.get("count") or 1),
        priority=1,
        description="How many times the event has occurred.",
    ),
    Column("Name", "string", _name, priority=1, format="name", description="Name of the event."),
)


_INGRESS_COLUMNS = (
    _NAME,
    Column(
        "Class",
        "string",
        lambda i, now: _or_none(
            _get(i, "spec", "ingressClassName")
            or _map(i, "metadata", "annotations").get("kubernetes.io/ingress.class")
        ),
        description="The name of the IngressClass resource.",
    ),
    Column("Hosts", "string", lambda i, now: printed_hosts(i), description="Hosts served."),
    Column(
        "Address",
        "string",
        lambda i, now: printed_address(i),
        description="Where the Ingress is reached: the Ready nodes' addresses.",
    ),
    Column("Ports", "string", lambda i, now: printed_ports(i), description="Ports served."),
    _AGE,
)
_INGRESSCLASS_COLUMNS = (
    _NAME,
    Column(
        "Controller",
        "string",
        lambda c, now: str(_get(c, "spec", "controller") or ""),
        description="The controller that serves this class.",
    ),
    Column(
        "Parameters",
        "string",
        lambda c, now: _or_none(_get(c, "spec", "parameters", "name")),
        description="The parameters resource, if any.",
    ),
    _AGE,
)


# -- workloads Kubernetes prints with their own columns --------------------------------------


def _status_count(name: str, field: str, description: str) -> Column:
    """An integer column read from ``status.<field>`` (0 when absent)."""
    return Column(name, "integer", lambda o, now: _int(o, "status", field), description=description)


_DAEMONSET_COLUMNS = (
    _NAME,
    _status_count(
        "Desired",
        "desiredNumberScheduled",
        "The total number of nodes that should be running the daemon pod.",
    ),
    _status_count(
        "Current", "currentNumberScheduled", "The number of nodes running at least one daemon pod."
    ),
    _status_count("Ready", "numberReady", "The number of nodes with a daemon pod Ready."),
    _status_count(
        "Up-to-date",
        "updatedNumberScheduled",
        "The number of nodes running the updated daemon pod.",
    ),
    _status_count(
        "Available", "numberAvailable", "The number of nodes with a daemon pod available."
    ),
    Column(
        "Node Selector",
        "string",
        lambda d, now: _or_none(
            ",".join(
                f"{k}={v}"
                for k, v in sorted(_map(d, "spec", "template", "spec", "nodeSelector").items())
            )
        ),
        description="The node selector of the daemon pods.",
    ),
    _AGE,
    *_WORKLOAD_WIDE,
)

_STATEFULSET_COLUMNS = (
    _NAME,
    Column("Ready", "string", _ready_of, description="Number of the pods with ready state."),
    _AGE,
    *_WORKLOAD_WIDE[:2],
)


def _true_condition(obj: Obj, kind: str) -> bool:
    return any(
        _get(c, "type") == kind and _get(c, "status") == "True"
        for c in _list(obj, "status", "conditions")
    )


def _job_status(job: Obj, now: datetime) -> str:
    for kind in ("Complete", "Failed"):
        if _true_condition(job, kind):
            return kind
    if _get(job, "metadata", "deletionTimestamp"):
        return "Terminating"
    if _true_condition(job, "Suspended") or _get(job, "spec", "suspend") is True:
        return "Suspended"
    if _true_condition(job, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def _job_completions(job: Obj, now: datetime) -> str:
    succeeded = _int(job, "status", "succeeded")
    completions = _get(job, "spec", "completions")
    parallelism = _get(job, "spec", "parallelism")
    if isinstance(completions, int):
        return f"{succeeded}/{completions}"
    if isinstance(parallelism, int) and parallelism > 1:
        return f"{succeeded}/1 of {parallelism}"
    return f"{succeeded}/1"


def _stamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _job_duration(job: Obj, now: datetime) -> str:
    start = _stamp(_get(job, "status", "startTime"))
    if start is None:
        return ""
    end = _stamp(_get(job, "status", "completionTime")) or now
    return human_duration((end - start).total_seconds())


def _job_template_containers(field: str) -> Callable[[Obj, datetime], str]:
    def cell(cronjob: Obj, now: datetime) -> str:
        containers = _list(cronjob, "spec", "jobTemplate", "spec", "template", "spec", "containers")
        return _or_none(",".join(str(_get(c, field)) for c in containers))

    return cell


_JOB_COLUMNS = (
    _NAME,
    Column("Status", "string", _job_status, description="Status of the job."),
    Column(
        "Completions",
        "string",
        _job_completions,
        description="The number of succeeded pods over the desired number of completions.",
    ),
    Column("Duration", "string", _job_duration, description="Time the job took (or has run)."),
    _AGE,
    *_WORKLOAD_WIDE,
)

_CRONJOB_COLUMNS = (
    _NAME,
    Column(
        "Schedule",
        "string",
        lambda c, now: str(_get(c, "spec", "schedule") or ""),
        description="The schedule, in Cron format.",
    ),
    Column(
        "Timezone",
        "string",
        lambda c, now: _or_none(_get(c, "spec", "timeZone")),
        description="The time zone of the schedule.",
    ),
    Column(
        "Suspend",
        "boolean",
        lambda c, now: "True" if _get(c, "spec", "suspend") is True else "False",
        description="Whether later runs are suspended.",
    ),
    Column(
        "Active",
        "integer",
        lambda c, now: len(_list(c, "status", "active")),
        description="The number of running jobs.",
    ),
    Column(
        "Last Schedule",
        "string",
        lambda c, now: (
            _since(_get(c, "status", "lastScheduleTime"), now)
            if _get(c, "status", "lastScheduleTime")
            else "<none>"
        ),
        description="When the job was last scheduled.",
    ),
    _AGE,
    Column(
        "Containers",
        "string",
        _job_template_containers("name"),
        priority=1,
        description="Names of each container in the template.",
    ),
    Column(
        "Images",
        "string",
        _job_template_containers("image"),
        priority=1,
        description="Images referenced by each container in the template.",
    ),
    Column(
        "Selector",
        "string",
        lambda c, now: _selector_text(_map(c, "spec", "jobTemplate", "spec", "selector")),
        priority=1,
        description="Label selector for the pods.",
    ),
)

_ACCESS_MODES = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}


def _claim_bound(claim: Obj) -> bool:
    return bool(_get(claim, "spec", "volumeName"))


def _claim_status(claim: Obj, now: datetime) -> str:
    if _get(claim, "metadata", "deletionTimestamp"):
        return "Terminating"
    return str(_get(claim, "status", "phase") or "Pending")


def _claim_capacity(claim: Obj, now: datetime) -> str:
    if not _claim_bound(claim):
        return ""
    return str(_get(claim, "status", "capacity", "storage") or "")


def _claim_access_modes(claim: Obj, now: datetime) -> str:
    if not _claim_bound(claim):
        return ""
    modes = [str(m) for m in _list(claim, "status", "accessModes")]
    return ",".join(_ACCESS_MODES.get(m, m) for m in modes)


def _claim_class(claim: Obj, now: datetime) -> str:
    return str(
        _get(claim, "spec", "storageClassName")
        or _map(claim, "metadata", "annotations").get("volume.beta.kubernetes.io/storage-class")
        or ""
    )


_PVC_COLUMNS = (
    _NAME,
    Column("Status", "string", _claim_status, description="The phase of the claim."),
    Column(
        "Volume",
        "string",
        lambda c, now: str(_get(c, "spec", "volumeName") or ""),
        description="The volume bound to the claim (node/claim in Capstan).",
    ),
    Column("Capacity", "string", _claim_capacity, description="The capacity of the volume."),
    Column("Access Modes", "string", _claim_access_modes, description="The volume's access modes."),
    Column("StorageClass", "string", _claim_class, description="The claim's storage class."),
    Column(
        "VolumeAttributesClass",
        "string",
        lambda c, now: str(_get(c, "spec", "volumeAttributesClassName") or "<unset>"),
        description="The claim's volume attributes class.",
    ),
    _AGE,
    Column(
        "VolumeMode",
        "string",
        lambda c, now: str(_get(c, "spec", "volumeMode") or "<unset>"),
        priority=1,
        description="Filesystem or Block.",
    ),
)

_COLUMNS: Mapping[str, Sequence[Column]] = {
    "Pod": _POD_COLUMNS,
    "Deployment": _DEPLOYMENT_COLUMNS,
    "ReplicaSet": _REPLICASET_COLUMNS,
    "DaemonSet": _DAEMONSET_COLUMNS,
    "StatefulSet": _STATEFULSET_COLUMNS,
    "Job": _JOB_COLUMNS,
    "CronJob": _CRONJOB_COLUMNS,
    "Service": _SERVICE_COLUMNS,
    "Node": _NODE_COLUMNS,
    "ConfigMap": _CONFIGMAP_COLUMNS,
    "Secret": _SECRET_COLUMNS,
    "Namespace": _NAMESPACE_COLUMNS,
    "ServiceAccount": _SERVICEACCOUNT_COLUMNS,
    "PersistentVolumeClaim": _PVC_COLUMNS,
    "Role": _ROLE_COLUMNS,
    "ClusterRole": _ROLE_COLUMNS,
    "RoleBinding": _BINDING_COLUMNS,
    "ClusterRoleBinding": _BINDING_COLUMNS,
    "Event": _EVENT_COLUMNS,
    "Ingress": _INGRESS_COLUMNS,
    "IngressClass": _INGRESSCLASS_COLUMNS,
}
_DEFAULT_COLUMNS = (_NAME, _AGE)


def columns(kind: str, *, wide: bool = True) -> Sequence[Column]:
    """The columns of ``kind`` (its ``kind`` string); without ``wide``, the priority-0 ones
    only, as kubectl shows them without ``-o wide``."""
    every = _COLUMNS.get(kind, _DEFAULT_COLUMNS)
    return every if wide else [c for c in every if c.priority == 0]


# -- printing cells as kubectl does ----------------------------------------------------------


def printed(value: Any) -> str:
    """A cell as kubectl prints it (Go's ``%v`` of the decoded JSON value)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def printed_table(
    objects: Sequence[Obj], *, kind: str, wide: bool, all_namespaces: bool, now: datetime
) -> tuple[list[str], list[list[str]]]:
    """Headers and printed rows of ``objects`` (JSON of ``kind``) as ``kubectl get`` prints the
    API server's Table: column names upper-cased, NAMESPACE first with ``-A``."""
    chosen = columns(kind, wide=wide)
    headers = [c.name.upper() for c in chosen]
    rows = [[printed(c.cell(obj, now)) for c in chosen] for obj in objects]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
        for obj, row in zip(objects, rows, strict=True):
            row.insert(0, str(_get(obj, "metadata", "namespace") or ""))
    return headers, rows


# -- single cells over models: ``capstan describe`` and the web UI ---------------------------


def _now() -> datetime:
    return datetime.now(tz=UTC)


def age(obj: KubeObject, *, now: datetime | None = None) -> str:
    """The AGE column of ``obj``."""
    created = obj.metadata.creation_timestamp
    if created is None:
        return "<unknown>"
    return human_duration(((now or _now()) - created).total_seconds())


def pod_ready(pod: KubeObject) -> str:
    """The READY column of a pod."""
    return _pod_ready(pod.to_dict(), _now())


def pod_status(pod: KubeObject) -> str:
    """The STATUS column of a pod."""
    return _pod_status(pod.to_dict(), _now())


def pod_restarts(pod: KubeObject) -> int:
    """The number of container restarts (the RESTARTS column without its "ago")."""
    return sum(
        int(_get(s, "restartCount") or 0)
        for s in _list(pod.to_dict(), "status", "containerStatuses")
    )


def node_status(node: KubeObject) -> str:
    """The STATUS column of a node."""
    return _node_status(node.to_dict(), _now())


def node_version(node: KubeObject) -> str:
    """The VERSION column of a node (the agent's version)."""
    return _node_info("kubeletVersion", "agentVersion")(node.to_dict(), _now())


def node_agent(node: KubeObject) -> str:
    """The node's ``AgentConnected`` condition: its reason, else its status, else ``-``."""
    for condition in _list(node.to_dict(), "status", "conditions"):
        if _get(condition, "type") == "AgentConnected":
            return str(_get(condition, "reason") or _get(condition, "status"))
    return "-"
