"""Shared facts about workload objects, below the controllers and the sync cycle.

What more than one layer reads about workloads and Service endpoints lives here rather than
in the controller that writes it (as Kubernetes keeps ``pkg/controller/deployment/util``), so
that sync, plan, rollback and the node dispatcher import no controller:

- :mod:`reconciler.workloads.deployment`: the pod-template hash and the rollout revision;
- :mod:`reconciler.workloads.endpoints`: a Service's endpoints as stored and read back;
- :mod:`reconciler.workloads.owners`: which object controls which (owner-reference keys);
- :mod:`reconciler.workloads.sets`: what the DaemonSet and StatefulSet controllers stamp on
  their pods and claims (revision label, daemon tolerations, claim names).

Imports only :mod:`reconciler.api` and ``schemas``.
"""
