"""``capstan status``: what runs, from which commit, and whether it is healthy.

One screen over a ``ClusterView``: the commit live and the commit seen on the branch, the
sync state (Synced, OutOfSync with the failing commit's errors as file:line, Suspended),
the loader's warnings about the commit seen (a namespace Capstan creates), as file:line,
whether fetching the branch fails (the error, since when, the retry back-off), the push
webhook's URL and whether a secret arms it (from the instance's ``up.json``), the apps
(Deployments Capstan manages) with their health, the Jobs it manages with their completions,
and the nodes with readiness, agent link and pod counts. ``-o json`` gives the same as one
object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from reconciler.cli._controlplane import control_plane_lines, control_plane_section
from reconciler.cli._table import format_table
from reconciler.cli._target import ClusterView, make_target, open_cluster, target_options
from reconciler.diff import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from reconciler.nodes import AGENT_CONNECTED
from reconciler.runinfo import RunInfo
from reconciler.sync import list_sync_records, object_health, read_sync_state
from schemas import Deployment, Node, Pod
from schemas.batch import Job

__all__ = ["collect_status", "status"]


def _sync_section(cluster: ClusterView) -> dict[str, Any]:
    state = read_sync_state(cluster.sync_api)
    records = list_sync_records(cluster.sync_api, limit=20)
    if state.suspended:
        verdict = "Suspended"
    elif state.seen_commit is None:
        verdict = "Unknown"
    elif state.live_commit == state.seen_commit:
        verdict = "Synced"
    else:
        verdict = "OutOfSync"
    section: dict[str, Any] = {
        "state": verdict,
        "suspended": state.suspended,
        "seenCommit": state.seen_commit,
        "liveCommit": state.live_commit,
        "lastAttemptCommit": state.last_attempt_commit,
        "lastOutcome": state.last_outcome,
        "fetch": None,
    }
    problem = state.fetch_problem
    if problem is not None:
        section["fetch"] = {
            "error": problem.error,
            "failures": problem.failures,
            "failingSince": problem.since.isoformat(),
            "backoffSeconds": problem.backoff_s,
            "nextAttemptAt": problem.next_attempt_at.isoformat(),
        }
    failed = next(
        (r for r in records if r.outcome == "Failed" and r.commit == state.last_attempt_commit),
        None,
    )
    if state.last_outcome == "Failed" and failed is not None:
        section["failed"] = {
            "commit": failed.commit,
            "subject": failed.subject,
            "author": failed.author,
            "errors": list(failed.errors),
        }
    if state.warnings and state.warned_commit == state.seen_commit:
        section["warnings"] = {"commit": state.warned_commit, "lines": list(state.warnings)}
    if records:
        last = records[0]
        section["lastSync"] = {
            "commit": last.commit,
            "subject": last.subject,
            "outcome": last.outcome,
            "trigger": last.trigger,
            "finishedAt": last.finished_at.isoformat(),
            "changes": last.changes_total,
        }
    return section


def collect_status(cluster: ClusterView) -> dict[str, Any]:
    """Everything ``capstan status`` shows, as plain data."""
    info = cluster.run_info
    deployments = cluster.list(Deployment, selector={MANAGED_BY_LABEL: MANAGED_BY_VALUE})
    apps = []
    for deployment in sorted(deployments, key=lambda d: (d.namespace, d.name)):
        health, message = object_health(deployment)
        status = deployment.status
        apps.append(
            {
                "namespace": deployment.namespace,
                "name": deployment.name,
                "health": health,
                "message": message,
                "ready": status.ready_replicas if status else 0,
                "replicas": deployment.spec.replicas,
            }
        )
    jobs = []
    for job in sorted(
        cluster.list(Job, selector={MANAGED_BY_LABEL: MANAGED_BY_VALUE}),
        key=lambda j: (j.namespace, j.name),
    ):
        health, message = object_health(job)
        jobs.append(
            {
                "namespace": job.namespace,
                "name": job.name,
                "health": health,
                "message": message,
                "succeeded": job.status.succeeded if job.status else 0,
                "completions": job.spec.wanted_completions or 1,
            }
        )
    pods = cluster.list(Pod)
    nodes = []
    for node in sorted(cluster.list(Node), key=lambda n: n.name):
        ready = node.status.condition("Ready") if node.status else None
        agent = node.status.condition(AGENT_CONNECTED) if node.status else None
        on_node = [p for p in pods if p.spec.node_name == node.name]
        nodes.append(
            {
                "name": node.name,
                "address": node.spec.address,
                "ready": ready.status if ready else "Unknown",
                "agent": (agent.reason or agent.status) if agent else "Unknown",
                "agentMessage": agent.message if agent else None,
                "pods": len(on_node),
                "podsReady": sum(1 for p in on_node if p.status is not None and p.status.ready),
            }
        )
    return {
        "source": {"repo": info.repo, "branch": info.branch} if info else None,
        "via": cluster.via,
        "webhook": _webhook(info),
        "sync": _sync_section(cluster),
        "apps": apps,
        "jobs": jobs,
        "nodes": nodes,
        "controlPlane": control_plane_section(cluster),
    }


def _webhook(info: RunInfo | None) -> dict[str, Any] | None:
    """Where a Git forge sends push events and whether a secret arms it (None: this
    ``capstan up``'s run info is not readable from here, e.g. through --server)."""
    if info is None:
        return None
    return {
        "url": info.webhook_url,
        "armed": info.webhook_armed,
        "secretFrom": info.webhook_secret_from,
    }


def _webhook_line(hook: dict[str, Any]) -> str:
    if hook["url"] is None:
        return "Webhook:  none (capstan up serves no HTTP API: start it with --listen)"
    if not hook["armed"]:
        return (
            f"Webhook:  {hook['url']} NOT armed: every push event is refused (start "
            "capstan up with --webhook-secret-file)"
        )
    return f"Webhook:  {hook['url']} armed (secret from {hook['secretFrom']})"


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def _render(data: dict[str, Any]) -> str:
    sync = data["sync"]
    lines = []
    if data["source"]:
        lines.append(f"Source:   {data['source']['repo']} (branch {data['source']['branch']})")
    if data["webhook"] is not None:
        lines.append(_webhook_line(data["webhook"]))
    lines.append(
        f"Sync:     {sync['state']}   live {_short(sync['liveCommit'])}   "
        f"seen {_short(sync['seenCommit'])}"
    )
    if sync.get("fetch"):
        fetch = sync["fetch"]
        lines.append(
            f"Fetch:    FAILING since {fetch['failingSince']} ({fetch['failures']} attempts in "
            f"a row; next at {fetch['nextAttemptAt']}, back-off {fetch['backoffSeconds']:g}s); "
            f"{_short(sync['liveCommit'])} stays live: {fetch['error']}"
        )
    if "lastSync" in sync:
        last = sync["lastSync"]
        lines.append(
            f"Last:     {last['outcome']} {_short(last['commit'])} "
            f"{last['subject']!r} ({last['trigger']}, {last['changes']} changes, "
            f"{last['finishedAt']})"
        )
    lines.extend(control_plane_lines(data.get("controlPlane")))
    if "failed" in sync:
        failed = sync["failed"]
        lines.append(
            f"Invalid:  commit {_short(failed['commit'])} {failed['subject']!r} "
            f"by {failed['author']} was not applied; "
            f"{_short(sync['liveCommit'])} stays live:"
        )
        lines.extend(f"  {error}" for error in failed["errors"])
    if "warnings" in sync:
        warnings = sync["warnings"]
        lines.append(f"Warnings: commit {_short(warnings['commit'])}:")
        lines.extend(f"  {line}" for line in warnings["lines"])
    lines.append("")
    if data["apps"]:
        lines.append(
            format_table(
                ["APP", "HEALTH", "READY", "MESSAGE"],
                [
                    [
                        f"{a['namespace']}/{a['name']}",
                        a["health"],
                        f"{a['ready']}/{a['replicas']}",
                        a["message"],
                    ]
                    for a in data["apps"]
                ],
            )
        )
    else:
        lines.append("No apps.")
    lines.append("")
    if data["jobs"]:
        lines.append(
            format_table(
                ["JOB", "HEALTH", "COMPLETIONS", "MESSAGE"],
                [
                    [
                        f"{j['namespace']}/{j['name']}",
                        j["health"],
                        f"{j['succeeded']}/{j['completions']}",
                        j["message"],
                    ]
                    for j in data["jobs"]
                ],
            )
        )
        lines.append("")
    if data["nodes"]:
        lines.append(
            format_table(
                ["NODE", "READY", "AGENT", "PODS", "ADDRESS"],
                [
                    [
                        n["name"],
                        n["ready"],
                        n["agent"],
                        f"{n['podsReady']}/{n['pods']}",
                        n["address"],
                    ]
                    for n in data["nodes"]
                ],
            )
        )
    else:
        lines.append("No nodes.")
    return "\n".join(lines)


@click.command("status")
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@target_options
def status(
    output: str,
    state_dir: Path | None,
    store_url: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """The live and seen commit, sync state, apps with health, nodes with readiness."""
    with open_cluster(make_target(state_dir, store_url, server, token)) as cluster:
        data = collect_status(cluster)
    click.echo(json.dumps(data, indent=2) if output == "json" else _render(data))
