"""Authorization with Kubernetes RBAC semantics: may this user do this verb on this resource?

Called by the HTTP server for every authenticated request, after authentication and before
any read or write. Rules come from the Role, RoleBinding, ClusterRole and ClusterRoleBinding
objects in the API (in Git like every other object) plus the built-in ClusterRoles ``view``,
``edit``, ``admin`` and ``cluster-admin``. Members of ``system:masters`` (the admin token) may
do everything, as in Kubernetes. Everything not granted is denied.

WHY a short-lived snapshot and a re-read on deny: reading four kinds on every request would
cost more than the request, so grants are read at most once per ``ttl_s``; but a request that
the snapshot denies is checked again against a fresh read, so a binding just written takes
effect at once. A revoked grant can therefore keep working for up to ``ttl_s`` (Kubernetes'
informer-fed authorizer has the same window).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from reconciler.api import Api
from schemas import ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject

__all__ = [
    "BUILTIN_CLUSTER_ROLES",
    "MASTERS_GROUP",
    "Attributes",
    "Authorizer",
    "UserInfo",
    "denial_message",
]

MASTERS_GROUP = "system:masters"


@dataclass(frozen=True)
class UserInfo:
    """Who is asking: a user name and its groups (Kubernetes' ``user.Info``)."""

    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attributes:
    """What is asked: a verb on a resource (``pods/status``) in a namespace (None: cluster
    scope), optionally a named object; or, with ``path`` set, a verb on a non-resource URL."""

    user: UserInfo
    verb: str
    api_group: str = ""
    resource: str = ""
    namespace: str | None = None
    name: str | None = None
    path: str | None = None


def _rule(
    verbs: Iterable[str], groups: Iterable[str], resources: Iterable[str]
) -> PolicyRule:
    return PolicyRule(verbs=list(verbs), api_groups=list(groups), resources=list(resources))


_READ = ("get", "list", "watch")
_WRITE = ("create", "update", "patch", "delete")
_CORE_READ = ("pods", "pods/status", "services", "services/status", "configmaps",
              "serviceaccounts", "events", "namespaces", "namespaces/status")
_APPS = ("deployments", "deployments/status", "replicasets", "replicasets/status")
_CORE_WRITE = ("pods", "services", "configmaps", "secrets", "serviceaccounts")
_RBAC_NS = ("roles", "rolebindings")


def _builtin() -> Mapping[str, tuple[PolicyRule, ...]]:
    # The aggregated Kubernetes roles, cut to the kinds Capstan has. As there, `view` cannot
    # read Secrets (that would reveal service account tokens), and only `admin` manages RBAC.
    view = (_rule(_READ, [""], _CORE_READ), _rule(_READ, ["apps"], _APPS))
    edit = (
        *view,
        _rule(_READ, [""], ["secrets"]),
        _rule(_WRITE, [""], _CORE_WRITE),
        _rule(_WRITE, ["apps"], ("deployments", "replicasets")),
    )
    admin = (*edit, _rule((*_READ, *_WRITE), ["rbac.authorization.k8s.io"], _RBAC_NS))
    cluster_admin = (
        _rule(["*"], ["*"], ["*"]),
        PolicyRule(verbs=["*"], non_resource_urls=["*"]),
    )
    return MappingProxyType(
        {"view": view, "edit": edit, "admin": admin, "cluster-admin": cluster_admin}
    )


#: Built-in ClusterRoles, usable in any roleRef; a stored ClusterRole of the same name wins.
BUILTIN_CLUSTER_ROLES: Mapping[str, tuple[PolicyRule, ...]] = _builtin()


def _matches_subject(subject: Subject, user: UserInfo) -> bool:
    if subject.kind == "User":
        return subject.name == user.name
    if subject.kind == "Group":
        return subject.name in user.groups
    return user.name == f"system:serviceaccount:{subject.namespace}:{subject.name}"


def _matches_resource(rule: PolicyRule, attrs: Attributes) -> bool:
    if "*" not in rule.verbs and attrs.verb not in rule.verbs:
        return False
    if "*" not in rule.api_groups and attrs.api_group not in rule.api_groups:
        return False
    plural, _, sub = attrs.resource.partition("/")
    wanted = {attrs.resource, "*"}
    if sub:
        wanted |= {f"{plural}/*", f"*/{sub}"}
    if not wanted.intersection(rule.resources):
        return False
    # As in Kubernetes, a rule limited to resourceNames never matches an unnamed request
    # (list, watch, create).
    return not rule.resource_names or (attrs.name is not None and attrs.name in rule.resource_names)


def _matches_path(rule: PolicyRule, attrs: Attributes) -> bool:
    if "*" not in rule.verbs and attrs.verb not in rule.verbs:
        return False
    path = attrs.path or ""
    for pattern in rule.non_resource_urls:
        if pattern == path or pattern == "*":
            return True
        if pattern.endswith("*") and path.startswith(pattern[:-1]):
            return True
    return False


def rule_allows(rule: PolicyRule, attrs: Attributes) -> bool:
    if attrs.path is not None:
        return _matches_path(rule, attrs)
    return _matches_resource(rule, attrs)


@dataclass(frozen=True)
class _Snapshot:
    roles: Mapping[tuple[str, str], Role]
    cluster_roles: Mapping[str, ClusterRole]
    bindings: tuple[RoleBinding, ...]
    cluster_bindings: tuple[ClusterRoleBinding, ...]
    taken_at: float


def denial_message(attrs: Attributes) -> str:
    """Kubernetes' wording, so that people and tools recognise it."""
    who = f'User "{attrs.user.name}" cannot {attrs.verb}'
    if attrs.path is not None:
        return f'{who} path "{attrs.path}"'
    what = f'{who} resource "{attrs.resource}" in API group "{attrs.api_group}"'
    if attrs.namespace:
        return f'{what} in the namespace "{attrs.namespace}"'
    return f"{what} at the cluster scope"


class Authorizer:
    """RBAC over the API's stored roles and bindings. Thread-safe."""

    def __init__(
        self,
        api: Api,
        *,
        ttl_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()

    def allowed(self, attrs: Attributes) -> bool:
        """Whether the request is allowed. Blocking (may read the API): call off the loop
        unless :meth:`cached_allows` already said yes."""
        if MASTERS_GROUP in attrs.user.groups:
            return True
        snapshot = self._snapshot
        fresh = snapshot is not None and self._monotonic() - snapshot.taken_at < self._ttl_s
        if fresh and snapshot is not None and self._evaluate(snapshot, attrs):
            return True
        # Stale, missing or denying: decide on what the API holds now.
        return self._evaluate(self._refresh(), attrs)

    def cached_allows(self, attrs: Attributes) -> bool:
        """Allowed by what is already in memory (no I/O). False means "ask :meth:`allowed`"."""
        if MASTERS_GROUP in attrs.user.groups:
            return True
        snapshot = self._snapshot
        if snapshot is None or self._monotonic() - snapshot.taken_at >= self._ttl_s:
            return False
        return self._evaluate(snapshot, attrs)

    def _refresh(self) -> _Snapshot:
        with self._lock:
            roles = self._api.list(Role).items
            cluster_roles = self._api.list(ClusterRole).items
            bindings = self._api.list(RoleBinding).items
            cluster_bindings = self._api.list(ClusterRoleBinding).items
            snapshot = _Snapshot(
                roles=MappingProxyType({(r.namespace, r.name): r for r in roles}),
                cluster_roles=MappingProxyType({r.name: r for r in cluster_roles}),
                bindings=bindings,
                cluster_bindings=cluster_bindings,
                taken_at=self._monotonic(),
            )
            self._snapshot = snapshot
            return snapshot

    def _cluster_role_rules(self, snapshot: _Snapshot, name: str) -> tuple[PolicyRule, ...]:
        stored = snapshot.cluster_roles.get(name)
        if stored is not None:
            return tuple(stored.rules)
        return BUILTIN_CLUSTER_ROLES.get(name, ())

    def _evaluate(self, snapshot: _Snapshot, attrs: Attributes) -> bool:
        user = attrs.user
        for cluster_binding in snapshot.cluster_bindings:
            if any(_matches_subject(s, user) for s in cluster_binding.subjects):
                rules = self._cluster_role_rules(snapshot, cluster_binding.role_ref.name)
                if any(rule_allows(rule, attrs) for rule in rules):
                    return True
        if attrs.namespace is None or attrs.path is not None:
            return False
        for binding in snapshot.bindings:
            if binding.namespace != attrs.namespace:
                continue
            if not any(_matches_subject(s, user) for s in binding.subjects):
                continue
            ref = binding.role_ref
            if ref.kind == "ClusterRole":
                rules = self._cluster_role_rules(snapshot, ref.name)
            else:
                role = snapshot.roles.get((binding.namespace, ref.name))
                rules = tuple(role.rules) if role is not None else ()
            if any(rule_allows(rule, attrs) for rule in rules):
                return True
        return False
