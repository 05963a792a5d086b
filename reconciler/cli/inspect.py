"""``capstan get``, ``capstan describe`` and ``capstan events``: the cluster's objects for people.

Read-only views over a ``ClusterView`` (``reconciler.cli._target``): the tables ``kubectl get``
prints (the columns of :mod:`reconciler.columns`), or the objects as YAML/JSON (``-o``).
Secret values are never printed: every value of a Secret's ``data``/``stringData`` is replaced
by a mask, in every output format.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml

from reconciler.api import ApiError, EventRecord, NotFound
from reconciler.cli._kinds import resolve_kind
from reconciler.cli._table import format_table
from reconciler.cli._target import make_target, open_cluster, target_options
from reconciler.columns import age, printed_table
from schemas import KubeObject, Pod, Secret
from schemas.pod import ContainerState

__all__ = ["describe", "events", "get", "shown"]

_MASK = "********"


def shown(obj: KubeObject) -> dict[str, Any]:
    """The object as printed: its dict, with Secret values masked."""
    data = obj.to_dict()
    if isinstance(obj, Secret):
        for field in ("data", "stringData"):
            if field in data:
                data[field] = dict.fromkeys(data[field], _MASK)
    return data


def _dump(documents: list[dict[str, Any]], output: str, *, single: bool) -> str:
    if output == "json":
        body: Any = (
            documents[0] if single else {"apiVersion": "v1", "kind": "List", "items": documents}
        )
        return json.dumps(body, indent=2)
    if single:
        return yaml.safe_dump(documents[0], sort_keys=False).rstrip()
    return "\n---\n".join(yaml.safe_dump(d, sort_keys=False).rstrip() for d in documents)


@click.command("get")
@click.argument("kind")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default=None, help="Namespace (default: default).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace.")
@click.option("-l", "--selector", default=None, help="Label selector, e.g. app=web.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "wide", "yaml", "json"]),
    default="table",
    show_default=True,
)
@target_options
def get(
    kind: str,
    name: str | None,
    namespace: str | None,
    all_namespaces: bool,
    selector: str | None,
    output: str,
    state_dir: Path | None,
    store_url: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """List objects of KIND (pods, deploy, rs, svc, nodes, cm, secrets, ns, sa), or one."""
    model = resolve_kind(kind)
    ns = None if all_namespaces else (namespace or "default")
    labels = _parse_selector(selector)
    with open_cluster(make_target(state_dir, store_url, server, token)) as cluster:
        try:
            if name is not None:
                items = [cluster.get(model, name, namespace=ns)]
            else:
                items = cluster.list(
                    model, namespace=ns if model.NAMESPACED else None, selector=labels
                )
        except NotFound as exc:
            raise click.ClickException(str(exc)) from exc
        except ApiError as exc:
            raise click.ClickException(f"{exc.reason}: {exc}") from exc
    items.sort(key=lambda o: (o.namespace, o.name))
    if output in ("yaml", "json"):
        click.echo(_dump([shown(o) for o in items], output, single=name is not None))
        return
    if not items:
        where = "" if all_namespaces or not model.NAMESPACED else f" in namespace {ns}"
        click.echo(f"No {model.__name__} objects found{where}.", err=True)
        return
    headers, rows = printed_table(
        [o.to_dict() for o in items],
        kind=model.__name__,
        wide=output == "wide",
        all_namespaces=all_namespaces,
        now=datetime.now(tz=UTC),
    )
    click.echo(format_table(headers, rows))


def _parse_selector(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    labels: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected key=value, got {part!r}", param_hint="-l")
        labels[key.strip()] = value.strip()
    return labels


def _event_rows(records: list[EventRecord], *, now: datetime) -> list[list[object]]:
    rows: list[list[object]] = []
    for record in records:
        seconds = int((now - record.last_timestamp).total_seconds())
        ago = f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"
        involved = record.involved_object
        rows.append(
            [
                record.namespace or "-",
                ago,
                record.type,
                record.reason,
                f"{involved.kind.lower()}/{involved.name}",
                record.count,
                record.message,
            ]
        )
    return rows


def _event_dict(record: EventRecord) -> dict[str, Any]:
    return record.model_dump(mode="json", by_alias=True, exclude_none=True)


@click.command("events")
@click.option("-n", "--namespace", default=None, help="Only this namespace (default: all).")
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@target_options
def events(
    namespace: str | None,
    output: str,
    state_dir: Path | None,
    store_url: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """Recent events (scheduling, evictions, failures), oldest first."""
    with open_cluster(make_target(state_dir, store_url, server, token)) as cluster:
        records = cluster.events(namespace)
    if output == "json":
        click.echo(json.dumps([_event_dict(r) for r in records], indent=2))
        return
    if not records:
        click.echo("No events.", err=True)
        return
    click.echo(
        format_table(
            ["NAMESPACE", "LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"],
            _event_rows(records, now=datetime.now(tz=UTC)),
        )
    )


@click.command("describe")
@click.argument("kind")
@click.argument("name")
@click.option("-n", "--namespace", default=None, help="Namespace (default: default).")
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@target_options
def describe(
    kind: str,
    name: str,
    namespace: str | None,
    output: str,
    state_dir: Path | None,
    store_url: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """Show one object in full, with its conditions and the events about it."""
    model = resolve_kind(kind)
    with open_cluster(make_target(state_dir, store_url, server, token)) as cluster:
        try:
            obj = cluster.get(model, name, namespace=namespace)
        except NotFound as exc:
            raise click.ClickException(str(exc)) from exc
        related = [
            e
            for e in cluster.events(obj.namespace or None)
            if e.involved_object.kind == obj.kind and e.involved_object.name == obj.name
        ]
        pods: list[Pod] = []
        if obj.kind == "Node":
            pods = [p for p in cluster.list(Pod) if p.spec.node_name == obj.name]
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "object": shown(obj),
                    "events": [_event_dict(e) for e in related],
                    "pods": [f"{p.namespace}/{p.name}" for p in pods],
                },
                indent=2,
            )
        )
        return
    click.echo(_describe_text(obj, related, pods))


def _describe_text(obj: KubeObject, related: list[EventRecord], pods: list[Pod]) -> str:
    data = shown(obj)
    meta = obj.metadata
    lines = [f"Name:         {obj.name}"]
    if obj.namespace:
        lines.append(f"Namespace:    {obj.namespace}")
    lines.append(f"Kind:         {obj.kind}")
    if meta.labels:
        lines.append("Labels:       " + ", ".join(f"{k}={v}" for k, v in meta.labels.items()))
    source = meta.annotations.get("capstan.io/source")
    if source:
        lines.append(
            f"Source:       {source} (commit {meta.annotations.get('capstan.io/commit', '?')[:12]})"
        )
    lines.append(f"Age:          {age(obj)}")
    status = getattr(obj, "status", None)
    conditions = getattr(status, "conditions", None) or []
    if conditions:
        lines.append("Conditions:")
        table = format_table(
            ["TYPE", "STATUS", "REASON", "MESSAGE"],
            [[c.type, c.status, c.reason or "", c.message or ""] for c in conditions],
        )
        lines.extend("  " + line for line in table.splitlines())
    if isinstance(obj, Pod):
        lines.extend(_container_lines(obj))
    if pods:
        lines.append(f"Pods ({len(pods)}):")
        lines.extend(f"  {p.namespace}/{p.name}" for p in sorted(pods, key=lambda p: p.name))
    for section in ("spec", "data", "stringData", "status"):
        if section in data:
            lines.append(f"{section[0].upper()}{section[1:]}:")
            dumped = yaml.safe_dump(data[section], sort_keys=False).rstrip()
            lines.extend("  " + line for line in dumped.splitlines())
    lines.append("Events:" if related else "Events:       <none>")
    if related:
        table = format_table(
            ["TYPE", "REASON", "COUNT", "FROM", "MESSAGE"],
            [[e.type, e.reason, e.count, e.source or "-", e.message] for e in related],
        )
        lines.extend("  " + line for line in table.splitlines())
    return "\n".join(lines)


def _container_lines(pod: Pod) -> list[str]:
    """kubectl's container block: state, last state (why the last attempt ended), restarts."""
    statuses = pod.status.container_statuses if pod.status else []
    if not statuses:
        return []
    lines = ["Containers:"]
    for c in statuses:
        last = _state(c.last_state) if _has_state(c.last_state) else "-"
        lines += [
            f"  {c.name}:",
            f"    State:          {_state(c.state)}",
            f"    Last State:     {last}",
            f"    Ready:          {c.ready}",
            f"    Restart Count:  {c.restart_count}",
        ]
    return lines


def _has_state(state: ContainerState) -> bool:
    return bool(state.waiting or state.running or state.terminated)


def _state(state: ContainerState) -> str:
    if state.running is not None:
        started = state.running.started_at
        return "Running" + (f" (started {started:%Y-%m-%d %H:%M:%S})" if started else "")
    if state.terminated is not None:
        t = state.terminated
        text = f"Terminated ({t.reason or 'Unknown'}, exit code {t.exit_code})"
        return text + (f": {t.message}" if t.message else "")
    waiting = state.waiting
    if waiting is None:
        return "Waiting"
    return f"Waiting ({waiting.reason or 'Unknown'})" + (
        f": {waiting.message}" if waiting.message else ""
    )
