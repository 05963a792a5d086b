"""Pure rules of plan: rollout steps and rollout prediction (auto-rollback's verdict is in
tests/unit/controllers/test_autorollback_rules.py)."""

from __future__ import annotations

import pytest
import yaml

from reconciler.plan.workload import desired_replicasets, expand_pods, predict, rolling_steps
from reconciler.workloads.deployment import HASH_LABEL, pod_template_hash
from schemas import Deployment, Pod, parse_object


def web(image: str = "busybox:1", replicas: int = 3, strategy: str = "") -> Deployment:
    doc = yaml.safe_load(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: default}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: main, image: "{image}"}}]
""")
    if strategy:
        doc["spec"]["strategy"] = yaml.safe_load(strategy)
    d = parse_object(doc)
    assert isinstance(d, Deployment)
    return d


@pytest.mark.parametrize(
    ("surge", "unavailable", "expected"),
    [
        (1, 0, [(0, 3), (1, 3), (1, 2), (2, 2), (2, 1), (3, 1), (3, 0)]),
        (0, 1, [(0, 3), (0, 2), (1, 2), (1, 1), (2, 1), (2, 0), (3, 0)]),
        (3, 3, [(0, 3), (3, 3), (3, 0)]),
        (
            0,
            0,
            [(0, 3), (0, 2), (1, 2), (1, 1), (2, 1), (2, 0), (3, 0)],
        ),  # Kubernetes: 1 unavailable
    ],
)
def test_rolling_steps(surge: int, unavailable: int, expected: list[tuple[int, int]]) -> None:
    steps = rolling_steps(new=0, old=3, replicas=3, max_surge=surge, max_unavailable=unavailable)
    assert [(s.new, s.old) for s in steps] == expected


def running_from(d: Deployment) -> tuple[list, list[Pod]]:
    replicasets = desired_replicasets([d])
    pods = [
        p.model_copy(update={"spec": p.spec.model_copy(update={"node_name": "n1"})})
        for p in expand_pods([], replicasets)
    ]
    return replicasets, pods


def test_new_template_makes_a_new_replicaset_and_replaces_every_pod() -> None:
    v1, v2 = web("busybox:1"), web("busybox:2")
    replicasets, pods = running_from(v1)
    changes = predict([v1], [v2], pods=pods, replicasets=replicasets)
    [rollout] = changes.rollouts
    assert rollout.action == "new-replicaset"
    assert rollout.replica_set == f"web-{pod_template_hash(v2.spec.template)}"
    assert (rollout.max_surge, rollout.max_unavailable) == (1, 0)  # 25% of 3
    assert len(changes.starts) == 3
    assert len(changes.stops) == 3


def test_going_back_to_an_old_template_reuses_its_replicaset() -> None:
    v1, v2 = web("busybox:1"), web("busybox:2")
    old_rs = desired_replicasets([v1])[0]
    old_rs = old_rs.model_copy(
        update={
            "spec": old_rs.spec.model_copy(update={"replicas": 0}),
            "metadata": old_rs.metadata.model_copy(
                update={"annotations": {"deployment.kubernetes.io/revision": "1"}}
            ),
        }
    )
    current, pods = running_from(v2)
    changes = predict([v2], [v1], pods=pods, replicasets=[old_rs, *current])
    [rollout] = changes.rollouts
    assert rollout.action == "reuse"
    assert rollout.reused_revision == 1
    assert rollout.replica_set == old_rs.name
    assert old_rs.metadata.labels[HASH_LABEL] == pod_template_hash(v1.spec.template)
    assert rollout.scaled_down == (current[0].name,)


def test_replica_change_only_scales_and_recreate_stops_first() -> None:
    v1 = web(replicas=3)
    replicasets, pods = running_from(v1)
    changes = predict([v1], [web(replicas=5)], pods=pods, replicasets=replicasets)
    [rollout] = changes.rollouts
    assert rollout.action == "scale"
    assert len(changes.starts) == 2
    assert not changes.stops
    recreate = web("busybox:2", strategy="{type: Recreate}")
    [rollout] = predict([v1], [recreate], pods=pods, replicasets=replicasets).rollouts
    assert [(s.new, s.old) for s in rollout.steps] == [(0, 3), (0, 0), (3, 0)]
