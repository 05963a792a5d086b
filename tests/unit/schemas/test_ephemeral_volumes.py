"""Generic ephemeral volumes (``volumes[].ephemeral.volumeClaimTemplate``): validated as
Kubernetes validates the claim template, allowed at every Pod Security level."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import parse_object
from schemas.podsecurity import check_pod_spec

RESTRICTED_CONTEXT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _with_ephemeral(pod: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    pod["spec"]["volumes"] = [{"name": "scratch", "ephemeral": template}]
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/data"}]
    return pod


def _gke_template() -> dict[str, Any]:
    # As GKE's LLM samples write it.
    return {
        "volumeClaimTemplate": {
            "metadata": {"labels": {"type": "ephemeral"}},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "premium-rwo",
                "resources": {"requests": {"storage": "175Gi"}},
            },
        }
    }


def test_an_ephemeral_volume_keeps_its_claim_template(pod):
    spec = parse_object(_with_ephemeral(pod, _gke_template())).spec
    template = spec.volumes[0].ephemeral.volume_claim_template
    assert template.metadata.labels == {"type": "ephemeral"}
    assert template.spec.access_modes == ["ReadWriteOnce"]
    assert template.spec.storage_class_name == "premium-rwo"
    assert str(template.spec.resources.requests["storage"]) == "175Gi"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ({}, {("spec", "volumes", 0, "ephemeral", "volumeClaimTemplate"): "missing"}),
        (
            {"volumeClaimTemplate": {}},
            {("spec", "volumes", 0, "ephemeral", "volumeClaimTemplate", "spec"): "missing"},
        ),
        (
            {"volumeClaimTemplate": {"spec": {}}},
            {
                ("spec", "volumes", 0, "ephemeral", "volumeClaimTemplate", "spec", *rest): "missing"
                for rest in (("accessModes",), ("resources", "requests", "storage"))
            },
        ),
        (
            {
                "volumeClaimTemplate": {
                    "spec": {"accessModes": ["ReadWriteSometimes"], "resources": {}}
                }
            },
            {
                (
                    "spec",
                    "volumes",
                    0,
                    "ephemeral",
                    "volumeClaimTemplate",
                    "spec",
                    "accessModes",
                    0,
                ): "literal_error",
            },
        ),
    ],
)
def test_the_claim_template_is_validated_as_kubernetes_does(pod, error_locs, template, expected):
    assert error_locs(_with_ephemeral(pod, template)) == expected


def test_ephemeral_is_one_volume_source_among_the_others(pod, error_locs):
    template = _gke_template()
    pod = _with_ephemeral(pod, template)
    pod["spec"]["volumes"][0]["emptyDir"] = {}
    assert error_locs(pod) == {("spec", "volumes", 0): "one_of"}


@pytest.mark.parametrize("level", ["privileged", "baseline", "restricted"])
def test_every_pod_security_level_allows_ephemeral_volumes(pod, level):
    pod = _with_ephemeral(pod, _gke_template())
    pod["spec"]["containers"][0]["securityContext"] = RESTRICTED_CONTEXT
    assert list(check_pod_spec(parse_object(pod).spec, level=level)) == []
