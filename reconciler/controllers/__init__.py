"""Controllers: the level-triggered loops that turn stored intent into more stored intent.

Each reads desired and observed state through :mod:`reconciler.api` (informer caches for reads,
the API for writes) and converges one object per ``reconcile(key)``: Deployment → ReplicaSets,
ReplicaSet → Pods, ServiceAccount tokens, Namespace deletion, garbage collection, and (from the
scheduler side of the team) Node health and Endpoints. The runtime they share is
:mod:`reconciler.controllers.runtime`; :mod:`reconciler.controllers.manager` runs them all.
Import controllers from their modules; this package imports nothing so that importing one does
not pull in the rest.
"""
