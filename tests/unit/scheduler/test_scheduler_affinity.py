"""Affinity, anti-affinity and topology spread as scheduler inputs: pods from manifests the
loader reads, placed by the placement core the live scheduler and ``capstan plan`` share."""

from __future__ import annotations

from pathlib import Path

import yaml

from reconciler.scheduler import plan
from reconciler.scheduler.nodeinfo import NodeInfo, NodeName, PodInfo, pod_info
from reconciler.source import load_repository
from schemas import Deployment, Pod
from schemas.meta import ObjectMeta

ZONE = "topology.kubernetes.io/zone"


def nodes(*specs: tuple[str, dict[str, str]]) -> list[NodeInfo]:
    return [
        NodeInfo(name=NodeName(name), cpu_milli=4000, memory_bytes=8 << 30, labels=labels)
        for name, labels in specs
    ]


def replicas(tmp_path: Path, spec: dict, count: int, *, app: str = "web") -> list[PodInfo]:
    """``count`` pods of a Deployment whose pod spec has ``spec`` merged in, via the loader."""
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app},
        "spec": {
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}], **spec},
            },
        },
    }
    root = tmp_path / app
    root.mkdir()
    (root / "d.yaml").write_text(yaml.safe_dump(manifest))
    (item,) = load_repository(root).objects
    deployment = item.obj
    assert isinstance(deployment, Deployment)
    template = deployment.spec.template
    return [
        pod_info(
            Pod(
                metadata=ObjectMeta(
                    name=f"{app}-{i}", namespace="default", labels=template.metadata.labels
                ),
                spec=template.spec,
            )
        )
        for i in range(count)
    ]


def test_required_node_affinity_filters_and_preferred_scores(tmp_path: Path):
    cluster = nodes(("a", {"disk": "hdd"}), ("b", {"disk": "ssd"}), ("c", {"disk": "ssd"}))
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "preference": {
                        "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]
                    },
                }
            ],
        }
    }
    result = plan(cluster, replicas(tmp_path, {"affinity": affinity}, 2))
    assert result.fits
    assert {p.node for p in result.placements} <= {"b", "c"}
    assert result.placements[0].node == "c", "the preferred node wins while it is emptiest"

    nowhere = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]
            }
        }
    }
    (failure,) = plan(cluster, replicas(tmp_path, {"affinity": nowhere}, 1, app="gpu")).failures
    assert failure.message == "0/3 nodes are available: 3 node(s) didn't match Pod's node selector."


def test_required_anti_affinity_keeps_replicas_on_distinct_hosts(tmp_path: Path):
    cluster = nodes(("a", {}), ("b", {}), ("c", {}))
    affinity = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"app": "web"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    result = plan(cluster, replicas(tmp_path, {"affinity": affinity}, 4))
    assert sorted(p.node for p in result.placements) == ["a", "b", "c"]
    (failure,) = result.failures
    assert failure.message == (
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    )


def test_pod_affinity_follows_the_matching_pods_zone(tmp_path: Path):
    cluster = nodes(("a1", {ZONE: "a"}), ("b1", {ZONE: "b"}), ("b2", {ZONE: "b"}))
    cache = replicas(tmp_path, {"nodeSelector": {ZONE: "b"}}, 1, app="cache")
    affinity = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": ZONE}
            ]
        }
    }
    result = plan(cluster, [*cache, *replicas(tmp_path, {"affinity": affinity}, 3)])
    assert result.fits
    assert {p.node for p in result.placements} <= {"b1", "b2"}


def test_topology_spread_bounds_the_skew_between_zones(tmp_path: Path):
    cluster = nodes(
        ("a1", {ZONE: "a"}), ("a2", {ZONE: "a"}), ("a3", {ZONE: "a"}), ("b1", {ZONE: "b"})
    )
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": ZONE,
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}},
        }
    ]
    result = plan(cluster, replicas(tmp_path, {"topologySpreadConstraints": spread}, 4))
    assert result.fits
    zones = [p.node[0] for p in result.placements]
    assert sorted(zones) == ["a", "a", "b", "b"], "one zone node takes as many as three"
