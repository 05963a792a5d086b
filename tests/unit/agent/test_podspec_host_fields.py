"""The agent and the node's own resources: hostPath binds, hostPID/hostIPC, mount propagation.

The Docker config is tested as plain data; the hostPath type checks on real paths of this
machine (a tmp dir, a Unix socket, /dev/null), as the kubelet's hostPath plugin makes them.
"""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest
from agent_testdata import SETTINGS, app_config, desired, pod

from agent.kubelet import volumes
from agent.kubelet.podspec import ConfigError
from agent.runtime._docker import _bind
from agent.runtime.facts import ContainerID, Mount

PRIVILEGED = replace(SETTINGS, pod_security="privileged")
SANDBOX = ContainerID("sb")


def host_pod(host_path: dict, *, mounts: list[dict] | None = None, **spec):
    return pod(
        containers=[
            {
                "name": "app",
                "image": "capstan.local/busybox:1",
                "volumeMounts": mounts or [{"name": "host", "mountPath": "/host"}],
            }
        ],
        volumes=[{"name": "host", "hostPath": host_path}],
        **spec,
    )


def config(p, **kwargs):
    assert desired(p, settings=PRIVILEGED).refused is None
    return app_config(p, settings=PRIVILEGED, **kwargs)


def test_the_baseline_ceiling_refuses_host_fields_whatever_the_namespace_said():
    p = host_pod({"path": "/var/log"}, hostPID=True)
    refused = desired(p).refused
    assert refused == (
        'refused by this node\'s Pod Security level: violates PodSecurity "baseline:latest": '
        'host namespaces (hostPID=true), hostPath volumes (volume "host")'
    )
    assert desired(p, settings=PRIVILEGED).refused is None


def test_a_host_path_is_bound_writable_unless_read_only_with_its_propagation():
    p = host_pod(
        {"path": "/var/log", "type": "Directory"},
        mounts=[
            {"name": "host", "mountPath": "/rw"},
            {"name": "host", "mountPath": "/ro", "readOnly": True, "mountPropagation": "None"},
            {"name": "host", "mountPath": "/slave", "mountPropagation": "HostToContainer"},
        ],
    )
    made = config(p)
    assert made.mounts == (
        Mount(source="/var/log", target="/rw", read_only=False),
        Mount(source="/var/log", target="/ro", read_only=True, propagation="rprivate"),
        Mount(source="/var/log", target="/slave", read_only=False, propagation="rslave"),
    )
    assert [_bind(m) for m in made.mounts] == [
        "/var/log:/rw:rw",
        "/var/log:/ro:ro,rprivate",
        "/var/log:/slave:rw,rslave",
    ]


def test_bidirectional_is_rshared_for_a_privileged_container():
    assert _bind(Mount("/mnt", "/mnt", propagation="rshared")) == "/mnt:/mnt:rw,rshared"


def test_host_pid_and_host_ipc_are_dockers_host_modes():
    made = config(pod(hostPID=True, hostIPC=True))
    assert (made.pid_mode, made.ipc_mode) == ("host", "host")
    plain = config(pod())
    assert (plain.pid_mode, plain.ipc_mode) == (None, None)
    shared = config(pod(shareProcessNamespace=True))
    assert shared.pid_mode == f"container:{SANDBOX}"


def test_host_namespaces_change_the_container_hash():
    before = desired(pod(), settings=PRIVILEGED).container_hashes["app"]
    assert desired(pod(hostPID=True), settings=PRIVILEGED).container_hashes["app"] != before
    assert desired(pod(hostIPC=True), settings=PRIVILEGED).container_hashes["app"] != before


def test_a_sub_path_of_a_host_path_is_resolved_inside_it(tmp_path: Path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "escape").symlink_to("/etc")
    mounts = [
        {"name": "host", "mountPath": "/logs", "subPath": "logs/app"},
        {"name": "host", "mountPath": "/etc-too", "subPath": "escape"},
    ]
    p = host_pod({"path": str(tmp_path)}, mounts=mounts)
    d = desired(p, settings=PRIVILEGED)
    with pytest.raises(ConfigError, match="'escape' resolves outside the volume"):
        volumes.sub_path_sources(d, p.spec.containers[0], state_dir=tmp_path / "state")
    p = host_pod({"path": str(tmp_path)}, mounts=mounts[:1])
    d = desired(p, settings=PRIVILEGED)
    sources = volumes.sub_path_sources(d, p.spec.containers[0], state_dir=tmp_path / "state")
    assert sources == {0: tmp_path / "logs" / "app"}
    assert (tmp_path / "logs" / "app").is_dir()


def _prepare(path: Path, type_: str) -> None:
    volumes.prepare_host_paths(desired(host_pod({"path": str(path), "type": type_})))


def test_or_create_types_create_what_is_missing(tmp_path: Path):
    _prepare(tmp_path / "new" / "dir", "DirectoryOrCreate")
    made = tmp_path / "new" / "dir"
    assert made.is_dir()
    assert made.stat().st_mode & 0o777 == 0o755
    _prepare(tmp_path / "new" / "file", "FileOrCreate")
    assert (tmp_path / "new" / "file").read_bytes() == b""
    assert (tmp_path / "new" / "file").stat().st_mode & 0o777 == 0o644
    with pytest.raises(ConfigError, match="No such file or directory"):
        _prepare(tmp_path / "missing" / "file", "FileOrCreate")
    _prepare(tmp_path / "nothing" / "checked", "")
    assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize(
    ("type_", "what"),
    [
        ("Directory", "a directory"),
        ("File", "a file"),
        ("Socket", "a socket file"),
        ("CharDevice", "a character device"),
        ("BlockDevice", "a block device"),
        ("DirectoryOrCreate", "a directory"),
    ],
)
def test_a_path_of_the_wrong_kind_is_refused_in_the_kubelets_words(tmp_path: Path, type_, what):
    wrong = tmp_path / "wrong"
    wrong.write_text("x") if type_.startswith("Directory") else wrong.mkdir()
    with pytest.raises(ConfigError) as refused:
        _prepare(wrong, type_)
    assert str(refused.value) == (
        f'MountVolume.SetUp failed for volume "host" : hostPath type check failed: {wrong} '
        f"is not {what}"
    )


def test_paths_of_the_right_kind_pass(tmp_path: Path):
    _prepare(tmp_path, "Directory")
    (tmp_path / "f").write_text("x")
    _prepare(tmp_path / "f", "File")
    _prepare(Path("/dev/null"), "CharDevice")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "s.sock"))
        _prepare(tmp_path / "s.sock", "Socket")
