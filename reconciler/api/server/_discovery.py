"""API discovery documents (``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``),
so tools that start by asking which resources exist (kubectl, client generators) can.

Built from the resource table; served by the HTTP server to any authenticated user, as
Kubernetes' ``system:discovery`` role does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.api.server._resources import RESOURCES, Resource

__all__ = ["api_groups", "api_resources", "api_versions"]

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def api_versions() -> dict[str, Any]:
    """``GET /api``: the core group's versions."""
    return {"kind": "APIVersions", "apiVersion": "v1", "versions": ["v1"],
            "serverAddressByClientCIDRs": []}


def _groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for resource in RESOURCES.values():
        if resource.group and resource.version not in groups.setdefault(resource.group, []):
            groups[resource.group].append(resource.version)
    return groups


def api_groups() -> dict[str, Any]:
    """``GET /apis``: every named group and its versions."""
    items = []
    for group, versions in sorted(_groups().items()):
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        items.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}


def _entries(resource: Resource) -> list[Mapping[str, Any]]:
    verbs = _VERBS if resource.writable else ["get", "list"]
    main = {"name": resource.plural, "singularName": resource.kind.lower(),
            "namespaced": resource.namespaced, "kind": resource.kind, "verbs": verbs}
    if not resource.has_status:
        return [main]
    status = {"name": f"{resource.plural}/status", "singularName": "",
              "namespaced": resource.namespaced, "kind": resource.kind,
              "verbs": ["get", "update"]}
    return [main, status]


def api_resources(group: str, version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``/apis/<group>/<version>``; None for an unknown group/version."""
    chosen = [r for (g, v, _), r in sorted(RESOURCES.items()) if g == group and v == version]
    if not chosen:
        return None
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [entry for r in chosen for entry in _entries(r)]}
