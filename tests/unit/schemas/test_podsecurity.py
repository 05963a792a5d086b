"""Pod Security Standards over Capstan's pod spec, and the schema rules that guard the host.

The checks (schemas.podsecurity) are what the loader, the API server and the agent enforce;
the schema rules (subPath, config keys, the namespace label) hold at every level.
"""

from __future__ import annotations

from typing import Any

import pytest

from schemas import Namespace, parse_object
from schemas.podsecurity import (
    ENFORCE_LABEL,
    check_pod_spec,
    describe,
    namespace_level,
    pod_spec_of,
)

C0 = ("spec", "containers", 0)


def _violations(pod: dict[str, Any], level: str) -> dict[tuple[str | int, ...], str]:
    spec = parse_object(pod).spec
    return {v.loc: v.reason for v in check_pod_spec(spec, level=level)}


def _context(pod: dict[str, Any], **context: Any) -> dict[str, Any]:
    pod["spec"]["containers"][0]["securityContext"] = context
    return pod


RESTRICTED_CONTEXT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_a_plain_pod_is_baseline_but_not_restricted(pod):
    assert _violations(pod, "baseline") == {}
    assert _violations(pod, "restricted") == {
        (
            "containers",
            0,
            "securityContext",
            "allowPrivilegeEscalation",
        ): "allowPrivilegeEscalation != false",
        ("containers", 0, "securityContext", "capabilities", "drop"): "unrestricted capabilities",
        ("containers", 0, "securityContext", "runAsNonRoot"): "runAsNonRoot != true",
        ("containers", 0, "securityContext", "seccompProfile", "type"): "seccompProfile",
    }
    assert _violations(_context(pod, **RESTRICTED_CONTEXT), "restricted") == {}


@pytest.mark.parametrize("capability", ["ALL", "SYS_ADMIN", "SYS_MODULE", "NET_RAW", "CAP_CHOWN"])
def test_baseline_refuses_capabilities_outside_its_list(pod, capability):
    _context(pod, capabilities={"add": ["CHOWN", capability, "NET_BIND_SERVICE"]})
    assert _violations(pod, "baseline") == {
        ("containers", 0, "securityContext", "capabilities", "add", 1): "non-default capabilities",
    }
    assert _violations(pod, "privileged") == {}


def test_baseline_refuses_privileged_host_network_unconfined_and_low_host_ports(pod):
    pod["spec"]["hostNetwork"] = True
    pod["spec"]["securityContext"] = {"seccompProfile": {"type": "Unconfined"}}
    pod["spec"]["containers"][0]["ports"] = [
        {"containerPort": 22, "hostPort": 22},
        {"containerPort": 8080, "hostPort": 8080},
    ]
    _context(
        pod, privileged=True, seccompProfile={"type": "Unconfined"}, allowPrivilegeEscalation=True
    )
    assert _violations(pod, "baseline") == {
        ("hostNetwork",): "host namespaces",
        ("securityContext", "seccompProfile", "type"): "seccompProfile",
        (*C0[1:], "securityContext", "privileged"): "privileged",
        (*C0[1:], "securityContext", "seccompProfile", "type"): "seccompProfile",
        (*C0[1:], "ports", 0, "hostPort"): "hostPort",
    }


def test_restricted_allows_only_net_bind_service_and_never_root(pod):
    _context(
        pod,
        **{
            **RESTRICTED_CONTEXT,
            "runAsUser": 0,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "CHOWN"]},
        },
    )
    pod["spec"]["securityContext"] = {"runAsNonRoot": False}
    assert _violations(pod, "restricted") == {
        ("securityContext", "runAsNonRoot"): "runAsNonRoot != true",
        (*C0[1:], "securityContext", "capabilities", "add", 1): "unrestricted capabilities",
        (*C0[1:], "securityContext", "runAsUser"): "runAsUser=0",
    }


def test_pod_level_settings_satisfy_restricted_for_every_container(pod):
    pod["spec"]["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    _context(pod, allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"]})
    assert _violations(pod, "restricted") == {}


def test_the_refusal_reads_like_kubernetes_admission(pod):
    _context(pod, privileged=True)
    violations = check_pod_spec(parse_object(pod).spec, level="baseline")
    assert describe(violations, level="baseline") == (
        'violates PodSecurity "baseline:latest": privileged '
        '(container "main" must not set securityContext.privileged=true)'
    )


def test_the_level_comes_from_the_enforce_label():
    assert namespace_level(None) == "baseline"
    assert namespace_level({}) == "baseline"
    assert namespace_level({ENFORCE_LABEL: "restricted"}) == "restricted"
    assert namespace_level({ENFORCE_LABEL: "privileged"}) == "privileged"


def test_the_enforce_label_must_name_a_level(error_locs):
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {ENFORCE_LABEL: "strict"}},
    }
    assert error_locs(namespace) == {("metadata", "labels", ENFORCE_LABEL): "pod_security_level"}
    namespace["metadata"]["labels"][ENFORCE_LABEL] = "restricted"
    assert isinstance(parse_object(namespace), Namespace)


def test_pod_specs_are_found_in_pods_and_templates(pod, deployment):
    assert pod_spec_of(parse_object(pod))[0] == ("spec",)
    assert pod_spec_of(parse_object(deployment))[0] == ("spec", "template", "spec")
    namespace = parse_object(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    )
    assert pod_spec_of(namespace) is None


# --- rules at every level --------------------------------------------------------------------


@pytest.mark.parametrize("sub_path", ["/", "/etc", "..", "../../..", "a/../../b", "a/.."])
def test_sub_path_must_stay_inside_its_volume(pod, error_locs, sub_path):
    pod["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "data", "mountPath": "/data", "subPath": sub_path}
    ]
    assert error_locs(pod) == {(*C0, "volumeMounts", 0, "subPath"): "relative_path"}


def test_ordinary_sub_paths_are_valid(pod):
    pod["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "data", "mountPath": "/a", "subPath": "logs/app"},
        {"name": "data", "mountPath": "/b", "subPath": "..hidden-ok/x"},
    ]
    assert parse_object(pod).spec.containers[0].volume_mounts[0].sub_path == "logs/app"


@pytest.mark.parametrize("key", [".", "..", "..data", "a/b", "", "x" * 254])
@pytest.mark.parametrize("kind", ["ConfigMap", "Secret"])
def test_config_keys_follow_kubernetes_key_rule(error_locs, kind, key):
    obj = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": "c", "namespace": "shop"},
        "data": {key: "eA==", "fine.key_-1": "eA=="},
    }
    assert error_locs(obj) == {("data", key, "[key]"): "config_key"}


def test_dotted_config_keys_that_kubernetes_allows_are_valid():
    obj = parse_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "shop"},
            "data": {".env": "x", "a..b": "y", "x.y.": "z"},
        }
    )
    assert set(obj.data) == {".env", "a..b", "x.y."}
