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

Writes of RBAC objects over HTTP are also checked against privilege escalation
(:meth:`Authorizer.escalation_denial`, Kubernetes' ``pkg/registry/rbac`` storage and
``ConfirmNoEscalation``): a Role or ClusterRole may only grant what its writer already holds
(or the writer has the ``escalate`` verb on it), and a binding may only grant a role whose
permissions the writer holds (or the writer has the ``bind`` verb on that role). The sync
engine writes through :class:`reconciler.api.Api` as the control plane and is not checked:
Git committers are trusted with the whole cluster.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from reconciler.api import Api
from schemas import (
    ClusterRole,
    ClusterRoleBinding,
    KubeObject,
    PolicyRule,
    Role,
    RoleBinding,
    RoleRef,
    Subject,
)

__all__ = [
    "BUILTIN_CLUSTER_ROLES",
    "MASTERS_GROUP",
    "RBAC_GROUP",
    "RBAC_KINDS",
    "Attributes",
    "Authorizer",
    "UserInfo",
    "compact_string",
    "denial_message",
    "only_gc_fields_differ",
    "uncovered_rules",
]

MASTERS_GROUP = "system:masters"
RBAC_GROUP = "rbac.authorization.k8s.io"
#: The kinds whose writes :meth:`Authorizer.escalation_denial` checks.
RBAC_KINDS = (Role, ClusterRole, RoleBinding, ClusterRoleBinding)
# What garbage collection changes, and what the server sets: an update that differs from the
# stored object only here grants nothing new (Kubernetes' IsOnlyMutatingGCFields).
_GC_AND_SERVER_METADATA = frozenset(
    {
        "ownerReferences",
        "finalizers",
        "resourceVersion",
        "uid",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
    }
)


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


def _rule(verbs: Iterable[str], groups: Iterable[str], resources: Iterable[str]) -> PolicyRule:
    return PolicyRule(verbs=list(verbs), api_groups=list(groups), resources=list(resources))


_READ = ("get", "list", "watch")
_WRITE = ("create", "update", "patch", "delete")
_CORE_READ = (
    "pods",
    "pods/status",
    "services",
    "services/status",
    "configmaps",
    "serviceaccounts",
    "events",
    "namespaces",
    "namespaces/status",
)
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


def _matches_subject(
    subject: Subject, user: UserInfo, binding_namespace: str | None = None
) -> bool:
    """Whether ``user`` is ``subject``; a ServiceAccount subject without a namespace (in a
    RoleBinding) is the account of ``binding_namespace``, as in Kubernetes' ``appliesToUser``."""
    if subject.kind == "User":
        return subject.name == user.name
    if subject.kind == "Group":
        return subject.name in user.groups
    namespace = subject.namespace or binding_namespace
    return user.name == f"system:serviceaccount:{namespace}:{subject.name}"


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


def _breakdown(rule: PolicyRule) -> list[PolicyRule]:
    """``rule`` as rules of one group, resource, verb and resource name each (Kubernetes'
    ``BreakdownRule``): each of them is then covered whole by one owner rule, or not at all."""
    names: list[str | None] = [*rule.resource_names] or [None]
    out = [
        PolicyRule(
            verbs=[verb],
            api_groups=[group],
            resources=[resource],
            resource_names=[name] if name is not None else [],
        )
        for group in rule.api_groups
        for resource in rule.resources
        for verb in rule.verbs
        for name in names
    ]
    out.extend(
        PolicyRule(verbs=[verb], non_resource_urls=[url])
        for url in rule.non_resource_urls
        for verb in rule.verbs
    )
    return out


def _resources_cover(owned: Sequence[str], wanted: Sequence[str]) -> bool:
    if "*" in owned:
        return True
    for resource in wanted:
        if resource in owned:
            continue
        plural, slash, sub = resource.partition("/")
        # ``*/status`` covers every status subresource (Kubernetes); ``pods/*`` covers every
        # pods subresource, because this authorizer grants it (see _matches_resource).
        if not slash or not ({f"*/{sub}", f"{plural}/*"} & set(owned)):
            return False
    return True


def _url_covers(owned: str, wanted: str) -> bool:
    return owned == wanted or (owned.endswith("*") and wanted.startswith(owned.rstrip("*")))


def _rule_covers(owner: PolicyRule, sub: PolicyRule) -> bool:
    """Whether ``owner`` grants all of ``sub`` (one of :func:`_breakdown`'s rules): Kubernetes'
    ``ruleCovers``."""
    verbs = "*" in owner.verbs or set(sub.verbs) <= set(owner.verbs)
    groups = "*" in owner.api_groups or set(sub.api_groups) <= set(owner.api_groups)
    urls = all(
        any(_url_covers(o, u) for o in owner.non_resource_urls) for u in sub.non_resource_urls
    )
    # An owner limited to resourceNames never covers an unnamed grant.
    names = not owner.resource_names or (
        bool(sub.resource_names) and set(sub.resource_names) <= set(owner.resource_names)
    )
    return verbs and groups and urls and names and _resources_cover(owner.resources, sub.resources)


def uncovered_rules(owned: Iterable[PolicyRule], granted: Iterable[PolicyRule]) -> list[PolicyRule]:
    """What of ``granted`` the ``owned`` rules do not cover, broken down to one verb, group,
    resource and name per rule (Kubernetes' ``Covers``). Empty: ``owned`` covers it all."""
    owners = tuple(owned)
    return [
        sub
        for rule in granted
        for sub in _breakdown(rule)
        if not any(_rule_covers(owner, sub) for owner in owners)
    ]


def _compact(rules: Sequence[PolicyRule]) -> list[PolicyRule]:
    """Rules of one group and resource (no names) merged across verbs, for a shorter message
    (Kubernetes' ``CompactRules``); other rules as they are."""
    merged: dict[tuple[str, str], PolicyRule] = {}
    out: list[PolicyRule] = []
    for rule in rules:
        simple = (
            len(rule.api_groups) == 1
            and len(rule.resources) == 1
            and not rule.resource_names
            and not rule.non_resource_urls
        )
        if not simple:
            out.append(rule)
            continue
        key = (rule.api_groups[0], rule.resources[0])
        seen = merged.get(key)
        if seen is None:
            merged[key] = rule.model_copy(update={"verbs": list(rule.verbs)})
            out.append(merged[key])
        else:
            seen.verbs.extend(v for v in rule.verbs if v not in seen.verbs)
    return out


def _go_quoted(values: Sequence[str]) -> str:
    # Go's %q of a []string: ["a" "b"].
    return "[" + " ".join(json.dumps(v) for v in values) + "]"


def compact_string(rule: PolicyRule) -> str:
    """A rule as Kubernetes prints it in escalation errors (``CompactString``):
    ``{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}``."""
    parts = [
        f"{label}:{_go_quoted(values)}"
        for label, values in (
            ("APIGroups", rule.api_groups),
            ("Resources", rule.resources),
            ("NonResourceURLs", rule.non_resource_urls),
            ("ResourceNames", rule.resource_names),
            ("Verbs", rule.verbs),
        )
        if values
    ]
    return "{" + ", ".join(parts) + "}"


def only_gc_fields_differ(new: KubeObject, old: KubeObject) -> bool:
    """Whether ``new`` is ``old`` with only ownerReferences or finalizers changed (and the
    fields the server sets, which a client echoes back or leaves out)."""

    def without(obj: KubeObject) -> dict[str, object]:
        data = obj.to_dict()
        metadata = data.get("metadata") or {}
        data["metadata"] = {k: v for k, v in metadata.items() if k not in _GC_AND_SERVER_METADATA}
        return data

    return without(new) == without(old)


def _escalation_message(user: UserInfo, missing: Sequence[PolicyRule]) -> str:
    lines = sorted({compact_string(rule) for rule in _compact(missing)})
    return (
        f"user {json.dumps(user.name)} (groups={_go_quoted(user.groups)}) is attempting "
        "to grant RBAC permissions not currently held:\n" + "\n".join(lines)
    )


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

    def rules_for(self, user: UserInfo, namespace: str | None) -> list[PolicyRule]:
        """Every rule ``user`` holds in ``namespace`` (None: cluster-wide ones only), read
        fresh from the API (blocking): what ``SelfSubjectRulesReview`` lists. Members of
        ``system:masters`` hold everything."""
        if MASTERS_GROUP in user.groups:
            return list(BUILTIN_CLUSTER_ROLES["cluster-admin"])
        return self._rules_for(self._refresh(), user, namespace)

    def _cluster_role_rules(self, snapshot: _Snapshot, name: str) -> tuple[PolicyRule, ...]:
        stored = snapshot.cluster_roles.get(name)
        if stored is not None:
            return tuple(stored.rules)
        return BUILTIN_CLUSTER_ROLES.get(name, ())

    def _rules_for(
        self, snapshot: _Snapshot, user: UserInfo, namespace: str | None
    ) -> list[PolicyRule]:
        """Every rule ``user`` holds in ``namespace`` (None: the cluster-wide ones only), as
        Kubernetes' ``RulesFor`` collects them."""
        rules: list[PolicyRule] = []
        for cluster_binding in snapshot.cluster_bindings:
            if any(_matches_subject(s, user) for s in cluster_binding.subjects):
                rules.extend(self._cluster_role_rules(snapshot, cluster_binding.role_ref.name))
        if namespace is None:
            return rules
        for binding in snapshot.bindings:
            if binding.namespace == namespace and any(
                _matches_subject(s, user, binding.namespace) for s in binding.subjects
            ):
                rules.extend(self._ref_rules(snapshot, binding.role_ref, namespace) or ())
        return rules

    def _ref_rules(
        self, snapshot: _Snapshot, ref: RoleRef, namespace: str | None
    ) -> tuple[PolicyRule, ...] | None:
        """The rules of the role a binding in ``namespace`` refers to; None: no such role."""
        if ref.kind == "ClusterRole":
            stored = snapshot.cluster_roles.get(ref.name)
            if stored is not None:
                return tuple(stored.rules)
            return BUILTIN_CLUSTER_ROLES.get(ref.name)
        role = snapshot.roles.get((namespace or "", ref.name))
        return tuple(role.rules) if role is not None else None

    def escalation_denial(
        self, user: UserInfo, obj: KubeObject, *, request_name: str | None
    ) -> str | None:
        """Why writing ``obj`` (a Role, ClusterRole, RoleBinding or ClusterRoleBinding, as
        it would be stored) would escalate ``user``'s privileges; None when it would not or
        ``obj`` is another kind. Blocking (may read the API): call off the event loop.

        Kubernetes' rule: ``system:masters`` may write anything. A role needs the ``escalate``
        verb on it (``request_name`` is the name in the request path: None on create), or
        every permission it grants held by the writer, in the role's namespace for a Role and
        cluster-wide for a ClusterRole. A binding needs the ``bind`` verb on the role it
        refers to (resourceNames honoured), or the role to exist and every permission of it
        held by the writer in the binding's namespace (cluster-wide for a
        ClusterRoleBinding)."""
        if MASTERS_GROUP in user.groups:
            return None
        namespace = obj.namespace or None
        if isinstance(obj, Role | ClusterRole):
            plural = "roles" if isinstance(obj, Role) else "clusterroles"
            if self.allowed(
                Attributes(
                    user=user,
                    verb="escalate",
                    api_group=RBAC_GROUP,
                    resource=plural,
                    namespace=namespace,
                    name=request_name,
                )
            ):
                return None
            granted: Sequence[PolicyRule] = obj.rules
            return self._decide(
                lambda snapshot: self._not_held(
                    snapshot, user, namespace, granted, plural, obj.name
                )
            )
        if isinstance(obj, RoleBinding | ClusterRoleBinding):
            plural = "rolebindings" if isinstance(obj, RoleBinding) else "clusterrolebindings"
            ref = obj.role_ref
            ref_plural = "roles" if ref.kind == "Role" else "clusterroles"
            if self.allowed(
                Attributes(
                    user=user,
                    verb="bind",
                    api_group=ref.api_group,
                    resource=ref_plural,
                    namespace=namespace,
                    name=ref.name,
                )
            ):
                return None

            def check(snapshot: _Snapshot) -> str | None:
                rules = self._ref_rules(snapshot, ref, namespace)
                if rules is None:
                    return (
                        f'{plural}.{RBAC_GROUP} "{obj.name}" is forbidden: '
                        f'{ref_plural}.{RBAC_GROUP} "{ref.name}" not found'
                    )
                return self._not_held(snapshot, user, namespace, rules, plural, obj.name)

            return self._decide(check)
        return None

    def _not_held(
        self,
        snapshot: _Snapshot,
        user: UserInfo,
        namespace: str | None,
        granted: Sequence[PolicyRule],
        plural: str,
        name: str,
    ) -> str | None:
        missing = uncovered_rules(self._rules_for(snapshot, user, namespace), granted)
        if not missing:
            return None
        return f'{plural}.{RBAC_GROUP} "{name}" is forbidden: ' + _escalation_message(user, missing)

    def _decide(self, check: Callable[[_Snapshot], str | None]) -> str | None:
        # As for requests: a refusal by the cached snapshot is confirmed on a fresh read.
        snapshot = self._snapshot
        fresh = snapshot is not None and self._monotonic() - snapshot.taken_at < self._ttl_s
        if fresh and snapshot is not None and check(snapshot) is None:
            return None
        return check(self._refresh())

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
            if not any(_matches_subject(s, user, binding.namespace) for s in binding.subjects):
                continue
            rules = self._ref_rules(snapshot, binding.role_ref, binding.namespace) or ()
            if any(rule_allows(rule, attrs) for rule in rules):
                return True
        return False
