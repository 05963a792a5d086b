"""API discovery documents, so tools that start by asking which resources exist (kubectl,
client generators, the official clients) can, in both shapes Kubernetes serves:

- legacy: ``/api`` (``APIVersions``), ``/apis`` (``APIGroupList``), ``/api/v1`` and
  ``/apis/<group>/<version>`` (``APIResourceList``);
- aggregated (``apidiscovery.k8s.io/v2``, ``APIGroupDiscoveryList``): ``/api`` and ``/apis``
  answer every resource of every group in one document when the client's ``Accept`` asks for
  it, as kubectl 1.3x does first.

Plus ``/version``. Built from the resource table and the per-resource names Kubernetes uses
(``shortNames``, ``categories``, ``singularName``); served by the HTTP server to any
authenticated user, as Kubernetes' ``system:discovery`` role does.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from reconciler.api.server._resources import RESOURCES, Resource
from reconciler.api.server._review import REVIEW_GROUP

__all__ = [
    "AGGREGATED_MEDIA_TYPE",
    "KUBERNETES_VERSION",
    "aggregated_discovery",
    "api_groups",
    "api_resources",
    "api_versions",
    "version_info",
]

#: The Kubernetes minor release whose API Capstan's paths and shapes follow; kubectl warns
#: when its own version is more than one minor away from the server's.
KUBERNETES_VERSION = (1, 37, 0)
#: The media type of an aggregated discovery document (request ``Accept`` and response).
AGGREGATED_MEDIA_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
_READ_VERBS = ["get", "list"]
_SUBRESOURCE_VERBS = {
    "status": ["get", "update"],
    "scale": ["get", "patch", "update"],
    "eviction": ["create"],
    "log": ["get"],
}


@dataclass(frozen=True)
class _Names:
    """What Kubernetes' own discovery says about a resource besides its kind."""

    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


#: Kubernetes' short names and categories for the built-in resources Capstan serves.
_NAMES: Mapping[str, _Names] = {
    "pods": _Names(("po",), ("all",)),
    "services": _Names(("svc",), ("all",)),
    "deployments": _Names(("deploy",), ("all",)),
    "replicasets": _Names(("rs",), ("all",)),
    "namespaces": _Names(("ns",)),
    "nodes": _Names(("no",)),
    "configmaps": _Names(("cm",)),
    "serviceaccounts": _Names(("sa",)),
    "events": _Names(("ev",)),
    "daemonsets": _Names(("ds",), ("all",)),
    "statefulsets": _Names(("sts",), ("all",)),
    "jobs": _Names((), ("all",)),
    "cronjobs": _Names(("cj",), ("all",)),
    "horizontalpodautoscalers": _Names(("hpa",), ("all",)),
    "replicationcontrollers": _Names(("rc",), ("all",)),
    "endpoints": _Names(("ep",)),
    "persistentvolumeclaims": _Names(("pvc",)),
    "persistentvolumes": _Names(("pv",)),
    "poddisruptionbudgets": _Names(("pdb",)),
    "networkpolicies": _Names(("netpol",)),
    "ingresses": _Names(("ing",)),
    "priorityclasses": _Names(("pc",)),
    "resourcequotas": _Names(("quota",)),
    "limitranges": _Names(("limits",)),
    "storageclasses": _Names(("sc",)),
    "customresourcedefinitions": _Names(("crd", "crds")),
}


#: Resources that are no stored objects, only created and answered on the spot (reviews):
#: (group, version) -> [(plural, kind)].
_VIRTUAL: Mapping[tuple[str, str], list[tuple[str, str]]] = {
    (REVIEW_GROUP, "v1"): [
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
        ("selfsubjectrulesreviews", "SelfSubjectRulesReview"),
    ],
}


def _capstan_version() -> str:
    try:
        return package_version("capstan")
    except PackageNotFoundError:
        return "0.0.0"


def version_info() -> dict[str, str]:
    """``GET /version``: Kubernetes' ``version.Info``. ``gitVersion`` is the Kubernetes
    release Capstan's API follows with Capstan's own version as build metadata (as k3s does:
    ``v1.37.0+capstan.0.1.0``)."""
    major, minor, patch = KUBERNETES_VERSION
    capstan = _capstan_version()
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "major": str(major),
        "minor": str(minor),
        "emulationMajor": str(major),
        "emulationMinor": str(minor),
        "minCompatibilityMajor": str(major),
        "minCompatibilityMinor": str(minor - 1),
        "gitVersion": f"v{major}.{minor}.{patch}+capstan.{capstan}",
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": f"python{sys.version_info.major}.{sys.version_info.minor}",
        "compiler": "cpython",
        "platform": f"{sys.platform}/{machine}",
    }


def api_versions() -> dict[str, Any]:
    """``GET /api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "apiVersion": "v1",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    }


def _groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {group: [version] for group, version in _VIRTUAL}
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


def _verbs(resource: Resource) -> list[str]:
    return _VERBS if resource.writable else _READ_VERBS


def _singular(resource: Resource) -> str:
    return resource.kind.lower()


def _entries(resource: Resource) -> list[Mapping[str, Any]]:
    names = _NAMES.get(resource.plural, _Names())
    main: dict[str, Any] = {
        "name": resource.plural,
        "singularName": _singular(resource),
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": _verbs(resource),
    }
    if names.short_names:
        main["shortNames"] = list(names.short_names)
    if names.categories:
        main["categories"] = list(names.categories)
    subresources = [
        {
            "name": f"{resource.plural}/{name}",
            "singularName": "",
            "namespaced": resource.namespaced,
            **_subresource_kind(resource, name),
            "verbs": _SUBRESOURCE_VERBS[name],
        }
        for name in resource.subresources
    ]
    return [main, *subresources]


def _subresource_kind(resource: Resource, name: str) -> dict[str, str]:
    """The kind a subresource answers with (and its group/version when not the parent's)."""
    if name == "scale":
        return {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    if name == "eviction":
        return {"group": "policy", "version": "v1", "kind": "Eviction"}
    return {"kind": resource.kind}


def _chosen(group: str, version: str) -> list[Resource]:
    return [r for (g, v, _), r in sorted(RESOURCES.items()) if g == group and v == version]


def api_resources(group: str, version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``/apis/<group>/<version>``; None for an unknown group/version."""
    chosen = _chosen(group, version)
    virtual = _VIRTUAL.get((group, version), [])
    if not chosen and not virtual:
        return None
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [entry for r in chosen for entry in _entries(r)]
        + [
            {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": False,
                "kind": kind,
                "verbs": ["create"],
            }
            for plural, kind in virtual
        ],
    }


def _aggregated_resource(resource: Resource) -> dict[str, Any]:
    names = _NAMES.get(resource.plural, _Names())
    kind = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    entry: dict[str, Any] = {
        "resource": resource.plural,
        "responseKind": kind,
        "scope": "Namespaced" if resource.namespaced else "Cluster",
        "singularResource": _singular(resource),
        "verbs": _verbs(resource),
    }
    if names.short_names:
        entry["shortNames"] = list(names.short_names)
    if names.categories:
        entry["categories"] = list(names.categories)
    if resource.subresources:
        entry["subresources"] = [
            {
                "subresource": name,
                "responseKind": {
                    "group": resource.group,
                    "version": resource.version,
                    **_subresource_kind(resource, name),
                },
                "verbs": _SUBRESOURCE_VERBS[name],
            }
            for name in resource.subresources
        ]
    return entry


def _aggregated_virtual(group: str, version: str, plural: str, kind: str) -> dict[str, Any]:
    return {
        "resource": plural,
        "responseKind": {"group": group, "version": version, "kind": kind},
        "scope": "Cluster",
        "singularResource": kind.lower(),
        "verbs": ["create"],
    }


def aggregated_discovery(*, core: bool) -> dict[str, Any]:
    """``GET /api`` (``core``) or ``/apis`` with ``Accept: AGGREGATED_MEDIA_TYPE``: every
    group, version and resource in one ``APIGroupDiscoveryList``."""
    groups = {"": ["v1"]} if core else _groups()
    items = []
    for group, versions in sorted(groups.items()):
        metadata: dict[str, Any] = {"name": group} if group else {}
        items.append(
            {
                "metadata": metadata,
                "versions": [
                    {
                        "version": v,
                        "freshness": "Current",
                        "resources": [_aggregated_resource(r) for r in _chosen(group, v)]
                        + [
                            _aggregated_virtual(group, v, plural, kind)
                            for plural, kind in _VIRTUAL.get((group, v), [])
                        ],
                    }
                    for v in versions
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }
