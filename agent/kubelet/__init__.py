"""The kubelet: the pod sync loop of the node agent.

Offers :class:`~agent.kubelet.kubelet.Kubelet` (observe → plan → act → report, run by the
daemon), the pure planner :func:`~agent.kubelet.plan.plan_node` and its action types, pod
translation (:mod:`agent.kubelet.podspec`), pod status (:mod:`agent.kubelet.status`),
probes (:mod:`agent.kubelet.prober`), volumes, crash-loop back-off, and the join with the node
proxy (:class:`~agent.kubelet.services.NodeServices`: Service rules, names, env, drains).
"""
