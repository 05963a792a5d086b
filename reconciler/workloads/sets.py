"""What the DaemonSet and StatefulSet controllers stamp on their pods, read by ``capstan plan``.

Written by :mod:`reconciler.controllers.daemonset` and :mod:`reconciler.controllers.statefulset`
on the pods and claims they create; read by :mod:`reconciler.plan.kinds` to say what a change
will do, with the controllers' own rules rather than copies of them.
"""

from __future__ import annotations

from schemas.apps import StatefulSet
from schemas.pod import Toleration

__all__ = ["DAEMON_TOLERATIONS", "REVISION_LABEL", "claim_name"]

#: The pod-template hash of a DaemonSet's or StatefulSet's pod (Kubernetes' label name).
REVISION_LABEL = "controller-revision-hash"

#: What Kubernetes' daemonset controller adds to every daemon pod.
DAEMON_TOLERATIONS: tuple[Toleration, ...] = (
    *(
        Toleration(key=f"node.kubernetes.io/{key}", operator="Exists", effect="NoExecute")
        for key in ("not-ready", "unreachable")
    ),
    *(
        Toleration(key=f"node.kubernetes.io/{key}", operator="Exists", effect="NoSchedule")
        for key in (
            "disk-pressure",
            "memory-pressure",
            "pid-pressure",
            "unschedulable",
            "network-unavailable",
        )
    ),
)


def claim_name(template: str, sts: StatefulSet, ordinal: int) -> str:
    """The PersistentVolumeClaim of ``sts``'s pod ``ordinal`` from its claim ``template``."""
    return f"{template}-{sts.name}-{ordinal}"
