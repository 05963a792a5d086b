"""KIND arguments as people type them (``pods``, ``po``, ``deploy``...).

Used by ``capstan get`` and ``capstan describe``: ``resolve_kind`` maps a kubectl-style name
to its model; how each kind prints is :mod:`reconciler.columns`.
"""

from __future__ import annotations

import click

from schemas import (
    ConfigMap,
    Deployment,
    KubeObject,
    Namespace,
    Node,
    Pod,
    ReplicaSet,
    Secret,
    Service,
    ServiceAccount,
)
from schemas.apps import DaemonSet, StatefulSet
from schemas.batch import CronJob, Job
from schemas.networking import Ingress, IngressClass
from schemas.storage import PersistentVolumeClaim

__all__ = ["KINDS", "resolve_kind"]

KINDS: dict[str, type[KubeObject]] = {}
for _model, _names in (
    (Pod, ("pod", "pods", "po")),
    (Deployment, ("deployment", "deployments", "deploy")),
    (ReplicaSet, ("replicaset", "replicasets", "rs")),
    (Service, ("service", "services", "svc")),
    (Node, ("node", "nodes", "no")),
    (ConfigMap, ("configmap", "configmaps", "cm")),
    (Secret, ("secret", "secrets")),
    (Namespace, ("namespace", "namespaces", "ns")),
    (ServiceAccount, ("serviceaccount", "serviceaccounts", "sa")),
    (DaemonSet, ("daemonset", "daemonsets", "ds")),
    (StatefulSet, ("statefulset", "statefulsets", "sts")),
    (PersistentVolumeClaim, ("persistentvolumeclaim", "persistentvolumeclaims", "pvc")),
    (Job, ("job", "jobs")),
    (CronJob, ("cronjob", "cronjobs", "cj")),
    (Ingress, ("ingress", "ingresses", "ing")),
    (IngressClass, ("ingressclass", "ingressclasses")),
):
    for _name in _names:
        KINDS[_name] = _model


def resolve_kind(name: str) -> type[KubeObject]:
    model = KINDS.get(name.lower())
    if model is None:
        known = ", ".join(sorted({m.__name__.lower() for m in KINDS.values()}))
        raise click.BadParameter(f"unknown kind {name!r}; known: {known}", param_hint="KIND")
    return model
