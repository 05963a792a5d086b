"""The control-plane lines of ``capstan status``: replicas, the leader, since when, its term.

Reads the leader key and the replica registrations from the store the view came from (the
run info's store URL when the view is the HTTP API); ``reconciler.store.election`` writes them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reconciler.cli._target import ClusterView
from reconciler.store import StoreError, open_store
from reconciler.store.election import read_control_plane

__all__ = ["control_plane_lines", "control_plane_section"]


def control_plane_section(cluster: ClusterView) -> dict[str, Any] | None:
    """The leader and the live replicas as plain data; None when the store is out of reach."""
    if cluster.store_url is None:
        return None
    try:
        store = open_store(cluster.store_url)
    except (StoreError, ValueError):
        return None
    try:
        view = read_control_plane(store)
    except StoreError as exc:
        return {"error": str(exc)}
    finally:
        store.close()
    return {
        "leader": view.leader,
        "leaderSince": view.leader_since.isoformat() if view.leader_since else None,
        "term": view.term,
        "leaseDurationSeconds": view.lease_duration_s,
        "replicas": [
            {
                "identity": r.identity,
                "host": r.host,
                "pid": r.pid,
                "listen": r.listen,
                "startedAt": r.started_at.isoformat(),
                "leader": r.identity == view.leader,
            }
            for r in view.replicas
        ],
    }


def control_plane_lines(section: dict[str, Any] | None) -> list[str]:
    if section is None:
        return []
    if "error" in section:
        return [f"Leader:   unknown (store: {section['error']})"]
    if section["leader"] is None:
        lines = ["Leader:   none (election in progress)"]
    else:
        since = section["leaderSince"]
        ago = ""
        if since:
            seconds = (datetime.now(UTC) - datetime.fromisoformat(since)).total_seconds()
            ago = f" ({int(max(seconds, 0))}s ago)"
        lines = [f"Leader:   {section['leader']} since {since}{ago}, term {section['term']}"]
    names = [r["identity"] + (" (leader)" if r["leader"] else "") for r in section["replicas"]]
    lines.append(f"Replicas: {len(names)}: {', '.join(names) or '-'}")
    return lines
