"""Pod Security Standards: which pod specs a namespace's level admits (a pure check, no I/O).

One module for the three places that enforce it: the loader (``capstan validate`` and the
sync of a commit: a violating object refuses the whole commit, at file:line:field), the API
server (admission of Pods, Deployments and ReplicaSets: 403 naming the field and the level)
and the node agent (which refuses to turn a violating pod into a Docker container). The
level comes from the namespace's label ``pod-security.kubernetes.io/enforce``; a namespace
without it gets :data:`DEFAULT_LEVEL` (``baseline``).

The checks are Kubernetes' own (the PodSecurity admission's ``baseline`` and ``restricted``
policies, latest version), over the fields Capstan models: the host namespaces
(``hostNetwork``, ``hostPID``, ``hostIPC``) and ``hostPath`` volumes are the node's own and
pass only at ``privileged``; fields Capstan does not model (``sysctls``, AppArmor, SELinux,
``procMount``) are refused by the schema everywhere. Where the standard allows "a known
list", Capstan's baseline admits host ports 1024-65535 and refuses the privileged ports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from schemas._pslevels import (
    DEFAULT_LEVEL,
    ENFORCE_LABEL,
    LEVELS,
    Level,
    level_problem,
    namespace_level,
)
from schemas.apps import DaemonSet, Deployment, ReplicaSet, StatefulSet
from schemas.batch import CronJob, Job
from schemas.container import Container, SecurityContext
from schemas.meta import KubeObject
from schemas.pod import Pod, PodSecurityContext, PodSpec

__all__ = [
    "DEFAULT_LEVEL",
    "ENFORCE_LABEL",
    "LEVELS",
    "Level",
    "Violation",
    "check_pod_spec",
    "describe",
    "level_problem",
    "namespace_level",
    "pod_spec_of",
]

#: The capabilities baseline lets a container add: Docker's default set without NET_RAW.
BASELINE_CAPABILITIES: Final = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
RESTRICTED_CAPABILITIES: Final = frozenset({"NET_BIND_SERVICE"})
#: Below this a host port is a privileged port of the node (ssh, dns, http): not baseline.
MIN_BASELINE_HOST_PORT: Final = 1024

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Violation:
    """One field of a pod spec that a level forbids.

    ``level`` is the lowest level that forbids it (``baseline`` or ``restricted``), ``loc``
    the field path relative to the pod spec, ``reason`` Kubernetes' name for the check and
    ``detail`` what to change, in Kubernetes' words. ``restricted_as`` is the (reason,
    detail) Kubernetes words it with at ``restricted``, where another check replaces the
    baseline one (a hostPath volume is then one of the "restricted volume types").
    """

    level: Level
    reason: str
    loc: Loc
    detail: str
    restricted_as: tuple[str, str] | None = None

    def text(self, enforced: Level) -> str:
        """``privileged (container "a" must ...)``, as ``enforced`` words it."""
        reason, detail = self.worded(enforced)
        return f"{reason} ({detail})"

    def worded(self, enforced: Level) -> tuple[str, str]:
        """(reason, detail) as the check of level ``enforced`` words them."""
        if enforced == "restricted" and self.restricted_as is not None:
            return self.restricted_as
        return self.reason, self.detail

    def message(self, enforced: Level) -> str:
        """``violates PodSecurity "baseline:latest": privileged (container "a" must ...)``."""
        return f'violates PodSecurity "{enforced}:latest": {self.text(enforced)}'


def pod_spec_of(obj: KubeObject) -> tuple[Loc, PodSpec] | None:
    """The pod spec an object holds and its field path (a Pod's own, a workload's template,
    a CronJob's job template's), or None for a kind that holds none.

    WARNING: every kind that makes pods must be listed here, or its template escapes the
    loader's and the API's checks (the agent would still refuse the pods).
    """
    if isinstance(obj, Pod):
        return ("spec",), obj.spec
    if isinstance(obj, CronJob):
        path: Loc = ("spec", "jobTemplate", "spec", "template", "spec")
        return path, obj.spec.job_template.spec.template.spec
    if isinstance(obj, Deployment | ReplicaSet | DaemonSet | StatefulSet | Job):
        return ("spec", "template", "spec"), obj.spec.template.spec
    return None


def check_pod_spec(spec: PodSpec, *, level: Level) -> list[Violation]:
    """Every field of ``spec`` that ``level`` forbids, in field order (empty: admitted)."""
    if level == "privileged":
        return []
    found = list(_baseline(spec))
    if level == "restricted":
        found.extend(_restricted(spec))
    return found


def describe(violations: list[Violation], *, level: Level) -> str:
    """All violations in one line, as Kubernetes' admission words its refusal: one part per
    check, the details of one check joined (``host namespaces (hostNetwork=true,
    hostPID=true)``, ``hostPath volumes (volumes "a", "b")``)."""
    details: dict[str, list[str]] = {}
    for violation in violations:
        reason, detail = violation.worded(level)
        details.setdefault(reason, []).append(detail)
    parts = ", ".join(f"{reason} ({_joined(found)})" for reason, found in details.items())
    return f'violates PodSecurity "{level}:latest": {parts}'


def _joined(details: list[str]) -> str:
    # hostPath volumes' details are each 'volume "NAME"'; Kubernetes lists them as one.
    if len(details) > 1 and all(
        d.startswith('volume "') and d.endswith('"') and d.count('"') == 2 for d in details
    ):
        return "volumes " + ", ".join(d.removeprefix("volume ") for d in details)
    return ", ".join(details)


def _containers(spec: PodSpec) -> Iterator[tuple[Loc, Container]]:
    for field, containers in (
        ("initContainers", spec.init_containers),
        ("containers", spec.containers),
    ):
        for index, container in enumerate(containers):
            yield (field, index), container


def _baseline(spec: PodSpec) -> Iterator[Violation]:
    for field, used in (
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ):
        if used:
            yield Violation("baseline", "host namespaces", (field,), f"{field}=true")
    for index, volume in enumerate(spec.volumes):
        if volume.host_path is not None:
            yield Violation(
                "baseline",
                "hostPath volumes",
                ("volumes", index, "hostPath"),
                f'volume "{volume.name}"',
                restricted_as=(
                    "restricted volume types",
                    f'volume "{volume.name}" uses restricted volume type "hostPath"',
                ),
            )
    yield from _unconfined(spec.security_context, (), "pod")
    for loc, container in _containers(spec):
        who = f'container "{container.name}"'
        context = container.security_context
        if context is not None and context.privileged:
            yield Violation(
                "baseline",
                "privileged",
                (*loc, "securityContext", "privileged"),
                f"{who} must not set securityContext.privileged=true",
            )
        added = context.capabilities.add if context and context.capabilities else []
        for index, capability in enumerate(added):
            if capability not in BASELINE_CAPABILITIES:
                yield Violation(
                    "baseline",
                    "non-default capabilities",
                    (*loc, "securityContext", "capabilities", "add", index),
                    f'{who} must not include "{capability}" in securityContext.capabilities.add',
                )
        yield from _unconfined(context, loc, who)
        for index, port in enumerate(container.ports):
            if port.host_port is not None and port.host_port < MIN_BASELINE_HOST_PORT:
                yield Violation(
                    "baseline",
                    "hostPort",
                    (*loc, "ports", index, "hostPort"),
                    f"{who} uses hostPort {port.host_port}: host ports below "
                    f"{MIN_BASELINE_HOST_PORT} need a privileged namespace",
                )


def _unconfined(
    context: SecurityContext | PodSecurityContext | None, loc: Loc, who: str
) -> Iterator[Violation]:
    profile = context.seccomp_profile if context is not None else None
    if profile is not None and profile.type == "Unconfined":
        yield Violation(
            "baseline",
            "seccompProfile",
            (*loc, "securityContext", "seccompProfile", "type"),
            f'{who} must not set securityContext.seccompProfile.type to "Unconfined"',
        )


def _restricted(spec: PodSpec) -> Iterator[Violation]:
    # Volume types: restricted allows configMap, emptyDir, secret, projected, ephemeral and
    # persistentVolumeClaim among others; the one other type Capstan models, hostPath, is
    # refused by baseline already (worded as restricted words it: Violation.restricted_as).
    pod_context = spec.security_context
    pod_non_root = bool(pod_context and pod_context.run_as_non_root)
    pod_seccomp = pod_context.seccomp_profile if pod_context else None
    if pod_context is not None and pod_context.run_as_non_root is False:
        yield Violation(
            "restricted",
            "runAsNonRoot != true",
            ("securityContext", "runAsNonRoot"),
            "pod must not set securityContext.runAsNonRoot=false",
        )
    if pod_context is not None and pod_context.run_as_user == 0:
        yield Violation(
            "restricted",
            "runAsUser=0",
            ("securityContext", "runAsUser"),
            "pod must not set runAsUser=0",
        )
    for loc, container in _containers(spec):
        who = f'container "{container.name}"'
        context = container.security_context
        if context is None or context.allow_privilege_escalation is not False:
            yield Violation(
                "restricted",
                "allowPrivilegeEscalation != false",
                (*loc, "securityContext", "allowPrivilegeEscalation"),
                f"{who} must set securityContext.allowPrivilegeEscalation=false",
            )
        capabilities = context.capabilities if context else None
        if capabilities is None or "ALL" not in capabilities.drop:
            yield Violation(
                "restricted",
                "unrestricted capabilities",
                (*loc, "securityContext", "capabilities", "drop"),
                f'{who} must set securityContext.capabilities.drop=["ALL"]',
            )
        for index, capability in enumerate(capabilities.add if capabilities else []):
            # One error per field: what baseline already refuses is not repeated here.
            if capability in BASELINE_CAPABILITIES - RESTRICTED_CAPABILITIES:
                yield Violation(
                    "restricted",
                    "unrestricted capabilities",
                    (*loc, "securityContext", "capabilities", "add", index),
                    f'{who} must not include "{capability}" in securityContext.capabilities.add',
                )
        non_root = context.run_as_non_root if context else None
        if non_root is False or (non_root is None and not pod_non_root):
            yield Violation(
                "restricted",
                "runAsNonRoot != true",
                (*loc, "securityContext", "runAsNonRoot"),
                f"pod or {who} must set securityContext.runAsNonRoot=true",
            )
        if context is not None and context.run_as_user == 0:
            yield Violation(
                "restricted",
                "runAsUser=0",
                (*loc, "securityContext", "runAsUser"),
                f"{who} must not set runAsUser=0",
            )
        seccomp = context.seccomp_profile if context else None
        if (seccomp or pod_seccomp) is None:
            yield Violation(
                "restricted",
                "seccompProfile",
                (*loc, "securityContext", "seccompProfile", "type"),
                f'pod or {who} must set securityContext.seccompProfile.type to "RuntimeDefault"',
            )
