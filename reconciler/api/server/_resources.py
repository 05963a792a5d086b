"""Which REST resources the HTTP server serves, and parsing a request path into one.

The table is built from ``schemas``' registry (every supported kind is a resource, under its
group's prefix: ``/api/v1`` for the core group, ``/apis/<group>/<version>`` otherwise) plus
read-only ``events``. Paths follow Kubernetes exactly::

    /api/v1/pods                                   all namespaces
    /api/v1/namespaces/{ns}/pods[/{name}[/status]]
    /api/v1/nodes[/{name}[/status]]                cluster-scoped
    /apis/apps/v1/namespaces/{ns}/deployments[/{name}[/status|/scale]]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from reconciler.api.server._scale import SCALABLE_KINDS
from schemas import SUPPORTED_KINDS, KubeObject, model_for
from schemas.registry import resource_plural

__all__ = ["RESOURCES", "Resource", "Target", "parse_path", "valid_name"]

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")


def valid_name(value: str) -> bool:
    """A DNS-1123 subdomain: the widest name any kind allows; anything else cannot exist."""
    return bool(_NAME_RE.match(value))


# Kinds whose PUT of a missing object creates it, as their Kubernetes REST strategies say
# (``AllowCreateOnUpdate``: Services and RBAC; Events and Leases too, not writable here).
# Every other kind answers a PUT of a missing object with 404.
_CREATE_ON_UPDATE = frozenset(
    {
        ("", "Service"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    }
)


@dataclass(frozen=True)
class Resource:
    """One REST resource. ``model`` is None for ``events`` (not a manifest kind)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    model: type[KubeObject] | None
    has_status: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def base_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def writable(self) -> bool:
        return self.model is not None

    @property
    def create_on_update(self) -> bool:
        """Whether a PUT of a missing object creates it (201), as Kubernetes does for this
        kind, instead of answering 404."""
        return self.writable and (self.group, self.kind) in _CREATE_ON_UPDATE

    @property
    def subresources(self) -> tuple[str, ...]:
        """``status`` for kinds with a status, ``scale`` for Deployments and ReplicaSets,
        ``eviction`` and ``log`` for Pods."""
        return (
            (("status",) if self.has_status else ())
            + (("scale",) if self.kind in SCALABLE_KINDS else ())
            + (("eviction", "log") if self.kind == "Pod" and self.group == "" else ())
        )


def _build() -> Mapping[tuple[str, str, str], Resource]:
    table: dict[tuple[str, str, str], Resource] = {}
    for api_version, kind in SUPPORTED_KINDS:
        model = model_for(api_version, kind)
        group, _, version = api_version.rpartition("/")
        plural = resource_plural(kind)
        table[(group, version, plural)] = Resource(
            group=group,
            version=version,
            plural=plural,
            kind=kind,
            namespaced=model.NAMESPACED,
            model=model,
            has_status="status" in model.model_fields,
        )
    table[("", "v1", "events")] = Resource(
        group="",
        version="v1",
        plural="events",
        kind="Event",
        namespaced=True,
        model=None,
        has_status=False,
    )
    return MappingProxyType(table)


#: (group, version, plural) → Resource, immutable.
RESOURCES: Mapping[tuple[str, str, str], Resource] = _build()


@dataclass(frozen=True)
class Target:
    """What a request path names. ``namespace`` None = all namespaces (or cluster-scoped);
    ``name`` None = the collection."""

    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None

    @property
    def rbac_resource(self) -> str:
        plural = self.resource.plural
        return f"{plural}/{self.subresource}" if self.subresource else plural


def parse_path(path: str) -> Target | None:
    """The target of an ``/api`` or ``/apis`` path, or None (404). Names and namespaces
    that no object could have are refused here, so nothing downstream sees them."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None

    def lookup(plural: str) -> Resource | None:
        return RESOURCES.get((group, version, plural))

    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        scoped = lookup(rest[2])
        if scoped is not None and scoped.namespaced:
            namespace, rest = rest[1], rest[2:]
            if not valid_name(namespace):
                return None
    resource = lookup(rest[0])
    if resource is None or len(rest) > 3:
        return None
    if namespace is None and resource.namespaced and len(rest) > 1:
        return None  # /api/v1/pods/x: a namespaced object needs its namespace in the path
    name = rest[1] if len(rest) >= 2 else None
    subresource = rest[2] if len(rest) == 3 else None
    if name is not None and not valid_name(name):
        return None
    if subresource is not None and subresource not in resource.subresources:
        return None
    return Target(resource=resource, namespace=namespace, name=name, subresource=subresource)
