"""The node's own resources in a pod spec: hostPath volumes, hostPID, hostIPC, mountPropagation.

Kubernetes' spec rules hold at every level (hostPath types, no backsteps, Bidirectional only for
privileged containers, hostPID without shareProcessNamespace); Pod Security admits the fields
only at ``privileged``, worded as Kubernetes' PodSecurity admission words it.
"""

from __future__ import annotations

from typing import Any

import pytest

from schemas import parse_object
from schemas.podsecurity import check_pod_spec, describe

C0 = ("spec", "containers", 0)
HOST_TYPES = [
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
]


def _host_pod(pod: dict[str, Any], **mount: Any) -> dict[str, Any]:
    pod["spec"]["volumes"] = [
        {"name": "logs", "hostPath": {"path": "/var/log", "type": "Directory"}}
    ]
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "logs", "mountPath": "/host/logs", **mount}
    ]
    return pod


@pytest.mark.parametrize("type_", HOST_TYPES)
def test_every_kubernetes_host_path_type_is_valid(pod, type_):
    _host_pod(pod)
    pod["spec"]["volumes"][0]["hostPath"]["type"] = type_
    volume = parse_object(pod).spec.volumes[0]
    assert volume.host_path is not None
    assert volume.host_path.type == type_


@pytest.mark.parametrize(
    ("path", "type_", "loc"),
    [
        ("/var/log", "Dir", ("hostPath", "type")),
        ("/var/../etc", "", ("hostPath", "path")),
        ("var/log", "", ("hostPath", "path")),
    ],
)
def test_a_host_path_needs_a_known_type_and_an_absolute_path_without_backsteps(
    pod, error_locs, path, type_, loc
):
    _host_pod(pod)
    pod["spec"]["volumes"][0]["hostPath"] = {"path": path, "type": type_}
    assert set(error_locs(pod)) == {("spec", "volumes", 0, *loc)}


@pytest.mark.parametrize("propagation", ["None", "HostToContainer"])
def test_mount_propagation_is_a_kubernetes_value(pod, propagation):
    _host_pod(pod, mountPropagation=propagation)
    mount = parse_object(pod).spec.containers[0].volume_mounts[0]
    assert mount.mount_propagation == propagation


def test_bidirectional_propagation_needs_a_privileged_container(pod, error_locs):
    _host_pod(pod, mountPropagation="Bidirectional")
    assert error_locs(pod) == {(*C0, "volumeMounts", 0, "mountPropagation"): "mount_propagation"}
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    assert parse_object(pod).spec.containers[0].volume_mounts[0].mount_propagation == (
        "Bidirectional"
    )
    _host_pod(pod, mountPropagation="Shared")
    assert error_locs(pod) == {(*C0, "volumeMounts", 0, "mountPropagation"): "literal_error"}


def test_host_pid_and_share_process_namespace_exclude_each_other(pod, error_locs):
    pod["spec"]["hostPID"] = True
    pod["spec"]["shareProcessNamespace"] = True
    assert error_locs(pod) == {("spec", "shareProcessNamespace"): "share_process_namespace"}


def test_baseline_and_restricted_refuse_the_host_fields_privileged_admits_them(pod):
    _host_pod(pod, mountPropagation="HostToContainer", readOnly=True)
    pod["spec"]["hostPID"] = True
    pod["spec"]["hostIPC"] = True
    spec = parse_object(pod).spec
    baseline = check_pod_spec(spec, level="baseline")
    assert [(v.loc, v.reason, v.detail) for v in baseline] == [
        (("hostPID",), "host namespaces", "hostPID=true"),
        (("hostIPC",), "host namespaces", "hostIPC=true"),
        (("volumes", 0, "hostPath"), "hostPath volumes", 'volume "logs"'),
    ]
    assert describe(baseline, level="baseline") == (
        'violates PodSecurity "baseline:latest": host namespaces (hostPID=true, hostIPC=true), '
        'hostPath volumes (volume "logs")'
    )
    restricted = check_pod_spec(spec, level="restricted")
    assert baseline[2] in restricted
    assert baseline[2].message("restricted") == (
        'violates PodSecurity "restricted:latest": restricted volume types '
        '(volume "logs" uses restricted volume type "hostPath")'
    )
    assert check_pod_spec(spec, level="privileged") == []


def test_several_host_path_volumes_are_listed_as_kubernetes_lists_them(pod):
    pod["spec"]["volumes"] = [
        {"name": name, "hostPath": {"path": f"/{name}"}} for name in ("proc", "sys")
    ]
    pod["spec"]["hostNetwork"] = True
    violations = check_pod_spec(parse_object(pod).spec, level="baseline")
    assert describe(violations, level="baseline") == (
        'violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), '
        'hostPath volumes (volumes "proc", "sys")'
    )
