"""The deployment controller: rolls a Deployment's pod template out through ReplicaSets.

Watches Deployments, their ReplicaSets and the pods of those (a pod event wakes the Deployment
that owns its ReplicaSet). For each Deployment it finds the ReplicaSet whose template equals the
Deployment's (``<deploy>-<pod-template-hash>``; an old one with an equal template is reused and
gets the next revision — the rollback path), then moves replicas to it: RollingUpdate within
``maxSurge`` / ``maxUnavailable`` counted against *available* pods (Ready for
``minReadySeconds`` by the passed clock), or Recreate (old pods gone first). It keeps
``revisionHistoryLimit`` scaled-down ReplicaSets, and writes status and the Available and
Progressing conditions (``ProgressDeadlineExceeded`` after ``progressDeadlineSeconds`` without
progress). The replicaset controller below it turns ``spec.replicas`` into pods.

One concern per module, as Kubernetes' ``pkg/controller/deployment``: ``_controller.py`` (the
loop, ReplicaSet writes, history, status), ``rolling.py``, ``recreate.py``, ``_view.py`` (what
a reconcile reads). The hash and revision helpers others read are
:mod:`reconciler.workloads.deployment`.
"""

from reconciler.controllers.deployment._controller import DeploymentController
from reconciler.workloads.deployment import (
    HASH_LABEL,
    REVISION_ANNOTATION,
    pod_template_hash,
    revision_of,
)

__all__ = [
    "HASH_LABEL",
    "REVISION_ANNOTATION",
    "DeploymentController",
    "pod_template_hash",
    "revision_of",
]
