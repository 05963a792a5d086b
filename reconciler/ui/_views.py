"""What each page of the web UI shows, read through the in-process :class:`Api`.

Blocking functions (the routes call them in a worker thread) that turn API objects, the sync
log and the sync state into plain dicts for the Jinja2 templates. Nothing here writes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from reconciler.api import Api, NotFound
from reconciler.columns import (
    age,
    node_agent,
    node_status,
    node_version,
    pod_ready,
    pod_restarts,
    pod_status,
)
from reconciler.diff import COMMIT_ANNOTATION, SOURCE_ANNOTATION
from reconciler.rollback import produced_revisions
from reconciler.sync import SyncRecord, list_sync_records, object_health, read_sync_state
from reconciler.workloads.deployment import revision_of
from schemas import Deployment, Node, Pod, ReplicaSet, Service

__all__ = [
    "SourceInfo",
    "app_view",
    "forge_link",
    "history_view",
    "nodes_view",
    "overview",
    "split_error",
]

_GITHUB = re.compile(
    r"^(?:https://|ssh://git@|git@)(github\.com|gitlab\.com)[:/](.+?)(?:\.git)?/?$"
)
_SOURCE_AT = re.compile(r"^(?P<file>.+?):(?P<line>\d+)(?::\d+)?\Z")
_ERROR_AT = re.compile(
    r"^(?P<file>[^\s:]+\.[A-Za-z0-9]+):(?P<line>\d+)(?P<col>:\d+)?:?\s*(?P<text>.*)$", re.DOTALL
)


@dataclass(frozen=True)
class SourceInfo:
    """The Git source ``capstan up`` tracks: repository (redacted) and branch."""

    repo: str = "-"
    branch: str = "-"


def forge_link(repo: str, commit: str | None, path: str, line: int | None) -> str | None:
    """A browser link to ``path:line`` at ``commit`` when ``repo`` is on GitHub or GitLab."""
    match = _GITHUB.match(repo)
    if match is None or not commit:
        return None
    host, project = match.groups()
    middle = "blob" if host == "github.com" else "-/blob"
    anchor = f"#L{line}" if line else ""
    return f"https://{host}/{project}/{middle}/{commit}/{path}{anchor}"


def split_error(error: str) -> dict[str, Any]:
    """A sync error as ``{where, text}``: ``where`` is its ``file:line`` when it starts so."""
    match = _ERROR_AT.match(error.strip())
    if match is None:
        return {"where": None, "text": error}
    where = f"{match['file']}:{match['line']}{match['col'] or ''}"
    return {"where": where, "text": match["text"] or error}


def _commit(records: Sequence[SyncRecord], sha: str | None) -> dict[str, Any] | None:
    if not sha:
        return None
    record = next((r for r in records if r.commit == sha), None)
    return {
        "sha": sha,
        "short": sha[:12],
        "author": record.author if record else "",
        "subject": record.subject if record else "",
    }


def _pod_is_ready(pod: Pod) -> bool:
    return pod.status is not None and pod.status.ready


def _node_ready(node: Node) -> bool:
    condition = node.status.condition("Ready") if node.status else None
    return condition is not None and condition.status == "True"


def _deployment_row(deployment: Deployment) -> dict[str, Any]:
    health, message = object_health(deployment)
    status = deployment.status
    return {
        "namespace": deployment.namespace,
        "name": deployment.name,
        "health": health,
        "message": message,
        "ready": status.ready_replicas if status else 0,
        "desired": deployment.spec.replicas,
        "updated": status.updated_replicas if status else 0,
    }


def sync_word(suspended: bool, live: str | None, seen: str | None) -> str:
    """The sync state in ``capstan status``'s words (a failed attempt is shown apart)."""
    if suspended:
        return "Suspended"
    if seen is None:
        return "Unknown"
    return "Synced" if live == seen else "OutOfSync"


def overview(api: Api, source: SourceInfo, *, show_nodes: bool) -> dict[str, Any]:
    """Source, sync state with the live and seen commits, the last error, apps and nodes."""
    state = read_sync_state(api)
    records = list_sync_records(api)
    failed = next(
        (r for r in records if r.outcome == "Failed" and r.commit == state.last_attempt_commit),
        None,
    )
    last_error = None
    if failed is not None and state.last_outcome == "Failed":
        last_error = {
            "commit": failed.commit[:12],
            "id": failed.id,
            "errors": [split_error(e) for e in failed.errors],
        }
    deployments = sorted(api.list(Deployment).items, key=lambda d: (d.namespace, d.name))
    nodes: list[dict[str, Any]] = []
    if show_nodes:
        pods = api.list(Pod).items
        per_node = Counter(p.spec.node_name for p in pods if p.spec.node_name)
        ready_per_node = Counter(
            p.spec.node_name for p in pods if p.spec.node_name and _pod_is_ready(p)
        )
        nodes = [
            {
                "name": n.name,
                "ready": _node_ready(n),
                "status": node_status(n),
                "pods": per_node.get(n.name, 0),
                "ready_pods": ready_per_node.get(n.name, 0),
            }
            for n in sorted(api.list(Node).items, key=lambda n: n.name)
        ]
    return {
        "source": source,
        "state": sync_word(state.suspended, state.live_commit, state.seen_commit),
        "suspended": state.suspended,
        "live": _commit(records, state.live_commit),
        "seen": _commit(records, state.seen_commit),
        "last_error": last_error,
        "apps": [_deployment_row(d) for d in deployments],
        "nodes": nodes,
        "show_nodes": show_nodes,
    }


def _source_location(obj: Deployment | Service, repo: str) -> dict[str, Any] | None:
    annotations = obj.metadata.annotations or {}
    where = annotations.get(SOURCE_ANNOTATION)
    if not where:
        return None
    commit = annotations.get(COMMIT_ANNOTATION)
    match = _SOURCE_AT.match(where)
    path, line = (match["file"], match["line"]) if match else (where, "")
    return {
        "where": where,
        "commit": commit,
        "link": forge_link(repo, commit, path, int(line) if line else None),
    }


def _pod_row(pod: Pod) -> dict[str, Any]:
    return {
        "name": pod.name,
        "namespace": pod.namespace,
        "node": pod.spec.node_name or "-",
        "status": pod_status(pod),
        "restarts": pod_restarts(pod),
        "ready": pod_ready(pod),
        "is_ready": _pod_is_ready(pod),
        "age": age(pod),
    }


def app_view(api: Api, source: SourceInfo, namespace: str, name: str) -> dict[str, Any] | None:
    """A Deployment, its ReplicaSets (newest revision first) with their Pods, its Service(s)
    with endpoints, conditions and events; None when there is no such Deployment."""
    try:
        deployment = api.get(Deployment, name, namespace=namespace)
    except NotFound:
        return None
    owned = [
        rs
        for rs in api.list(ReplicaSet, namespace=namespace).items
        if any(ref.uid == deployment.metadata.uid for ref in rs.metadata.owner_references or [])
    ]
    pods = api.list(Pod, namespace=namespace).items
    sets = []
    # The commit that first applied each template: the sync log maps Deployment -> hash.
    key = f"Deployment/{namespace}/{name}"
    first_commit: dict[str, str] = {}
    for record in reversed(list_sync_records(api)):
        template_hash = record.templates.get(key)
        if template_hash is not None:
            first_commit.setdefault(f"{name}-{template_hash}", record.commit[:12])
    for rs in sorted(owned, key=lambda r: revision_of(r) or 0, reverse=True):
        mine = [
            p
            for p in pods
            if any(ref.uid == rs.metadata.uid for ref in p.metadata.owner_references or [])
        ]
        annotations = rs.metadata.annotations or {}
        sets.append(
            {
                "name": rs.name,
                "revision": revision_of(rs),
                "commit": first_commit.get(rs.name)
                or (annotations.get(COMMIT_ANNOTATION) or "")[:12]
                or "-",
                "images": ", ".join(c.image for c in rs.spec.template.spec.containers),
                "replicas": rs.spec.replicas,
                "ready": rs.status.ready_replicas if rs.status else 0,
                "pods": [_pod_row(p) for p in sorted(mine, key=lambda p: p.name)],
            }
        )
    labels = deployment.spec.template.metadata.labels or {}
    services = []
    for service in api.list(Service, namespace=namespace).items:
        selector = service.spec.selector or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            continue
        # The endpoints are what the node proxy sends traffic to: the ready pods selected.
        addresses = [
            f"{m.host_ip}:{m.host_port}" if m.host_ip else f"{p.status.pod_ip}"
            for p in pods
            if p.status is not None
            and p.status.ready
            and all((p.metadata.labels or {}).get(k) == v for k, v in selector.items())
            for m in p.status.host_ports
        ]
        services.append(
            {
                "name": service.name,
                "type": service.spec.type,
                "ports": ", ".join(
                    f"{p.port}" + (f":{p.node_port}" if p.node_port else "")
                    for p in service.spec.ports
                ),
                "endpoints": addresses,
            }
        )
    involved = {deployment.name, *(rs.name for rs in owned), *(p.name for p in pods)}
    events = [e for e in api.list_events(namespace=namespace) if e.involved_object.name in involved]
    events.sort(key=lambda e: e.last_timestamp, reverse=True)
    return {
        "app": _deployment_row(deployment),
        "source": _source_location(deployment, source.repo),
        "conditions": [
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason or "",
                "message": c.message or "",
            }
            for c in (deployment.status.conditions if deployment.status else [])
        ],
        "sets": sets,
        "services": services,
        "events": [
            {
                "type": e.type,
                "reason": e.reason,
                "object": e.involved_object.name,
                "message": e.message,
                "count": e.count,
            }
            for e in events[:50]
        ],
    }


def history_view(api: Api) -> list[dict[str, Any]]:
    """The sync log, newest first, each record with its errors split into file:line."""
    replicasets = api.list(ReplicaSet).items
    records = list_sync_records(api)
    out = []
    for index, record in enumerate(records):
        # What was live before it: the next older successful sync of another commit.
        before = next(
            (
                older.commit
                for older in records[index + 1 :]
                if older.outcome == "Succeeded" and older.commit != record.commit
            ),
            None,
        )
        out.append(
            {
                "record": record,
                "errors": [split_error(e) for e in record.errors],
                "revisions": [p.describe() for p in produced_revisions(record, replicasets)],
                "before": before,
            }
        )
    return out


def _host_key_fingerprint(host_key: str | None) -> str:
    """``spec.hostKey`` as ``ssh-keygen -l`` shows it (a key line is hashed)."""
    if not host_key:
        return "-"
    if host_key.startswith("SHA256:"):
        return host_key
    parts = host_key.split()
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (IndexError, binascii.Error):
        return host_key
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _resources(node: Node, pods: Sequence[Pod]) -> list[dict[str, Any]]:
    """CPU, memory and pods on ``node``: capacity, allocatable, and what its running pods
    request (the scheduler's measure), with the used share of allocatable for a bar."""
    status = node.status
    if status is None:
        return []
    live = [p for p in pods if p.status is None or p.status.phase not in ("Succeeded", "Failed")]
    used: dict[str, Decimal] = {"pods": Decimal(len(live))}
    for pod in live:
        for container in pod.spec.containers:
            for name, quantity in container.resources.requests.items():
                used[name] = used.get(name, Decimal(0)) + quantity.value
    rows = []
    for name in ("cpu", "memory", "pods"):
        allocatable = status.allocatable.get(name)
        capacity = status.capacity.get(name)
        if allocatable is None:
            continue
        total = allocatable.value
        amount = used.get(name, Decimal(0))
        rows.append(
            {
                "name": name,
                "capacity": _amount(name, capacity.value) if capacity is not None else "-",
                "allocatable": _amount(name, allocatable.value),
                "used": _amount(name, amount),
                "share": float(min(amount / total, Decimal(1))) if total else 0.0,
                "percent": int(amount * 100 / total) if total else 0,
            }
        )
    return rows


def _amount(name: str, value: Decimal) -> str:
    if name == "cpu":
        return f"{int(value * 1000)}m" if value < 1 else f"{value.normalize():f}"
    if name == "memory":
        mebibytes = value / (1024 * 1024)
        return f"{int(mebibytes)}Mi" if mebibytes < 1024 else f"{mebibytes / 1024:.1f}Gi"
    return str(int(value))


def nodes_view(api: Api) -> list[dict[str, Any]]:
    """Each node: readiness, agent, version, capacity/allocatable and the pods on it."""
    pods = api.list(Pod).items
    by_node: dict[str, list[Pod]] = {}
    for pod in pods:
        if pod.spec.node_name:
            by_node.setdefault(pod.spec.node_name, []).append(pod)
    out = []
    for node in sorted(api.list(Node).items, key=lambda n: n.name):
        lease = api.get_node_lease(node.name)
        mine = sorted(by_node.get(node.name, []), key=lambda p: (p.namespace, p.name))
        out.append(
            {
                "name": node.name,
                "ready": _node_ready(node),
                "status": node_status(node),
                "agent": node_agent(node),
                "version": node_version(node),
                "resources": _resources(node, mine),
                "pods": [_pod_row(p) for p in mine],
                "host_key": _host_key_fingerprint(node.spec.host_key),
                "heartbeat": lease.renew_time.isoformat(timespec="seconds") if lease else "-",
            }
        )
    return out
