"""The agent's own defence: Pod Security refusals, runAsNonRoot, fsGroup and subPath sources.

Pure translation is tested with plain data; subPath resolution and volume ownership on a
real directory (the agent runs as root, as on a node).
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from agent_testdata import SETTINGS, app_config, desired, pod

from agent.kubelet import volumes
from agent.kubelet.plan import ConfigFailure, PlanInputs, Wait, plan_node
from agent.kubelet.podspec import ConfigError, ConfigIndex, container_config, volume_dir
from agent.runtime.facts import ContainerID
from schemas.core import Secret

SANDBOX = ContainerID("sb")


config = app_config


def app(**fields) -> list[dict]:
    return [{"name": "app", "image": "capstan.local/busybox:1", **fields}]


# --- Pod Security on the node -----------------------------------------------------------------


@pytest.mark.parametrize(
    "context",
    [
        {"capabilities": {"add": ["SYS_ADMIN"]}},
        {"capabilities": {"add": ["ALL"]}},
        {"seccompProfile": {"type": "Unconfined"}},
    ],
)
def test_a_pod_breaking_the_nodes_level_never_becomes_a_docker_config(context):
    d = desired(pod(containers=app(securityContext=context)))
    assert d.refused is not None
    assert d.refused.startswith(
        'refused by this node\'s Pod Security level: violates PodSecurity "baseline:latest"'
    )


def test_the_node_level_is_the_agents_setting():
    p = pod(
        containers=app(
            securityContext={
                "capabilities": {"add": ["SYS_ADMIN"]},
                "seccompProfile": {"type": "Unconfined"},
            }
        )
    )
    privileged = replace(SETTINGS, pod_security="privileged")
    assert desired(p, settings=privileged).refused is None
    made = config(p, settings=privileged)
    assert made.cap_add == ("SYS_ADMIN",)
    assert made.security_opt == ("no-new-privileges", "seccomp=unconfined")
    restricted = replace(SETTINGS, pod_security="restricted")
    assert "runAsNonRoot" in (desired(pod(), settings=restricted).refused or "")


# --- users and groups -------------------------------------------------------------------------


def test_run_as_user_zero_is_root_not_unset():
    p = pod(
        securityContext={"runAsUser": 1000, "runAsGroup": 1000},
        containers=app(securityContext={"runAsUser": 0, "runAsGroup": 0}),
    )
    assert config(p).user == "0:0"
    assert config(pod(securityContext={"runAsUser": 1000})).user == "1000"


@pytest.mark.parametrize(
    ("image_user", "problem"),
    [
        ("", "image will run as root"),
        ("0", "image will run as root"),
        ("root", "image has non-numeric user (root), cannot verify user is non-root"),
        ("0:1000", "image will run as root"),
    ],
)
def test_run_as_non_root_refuses_a_root_image_user(image_user, problem):
    p = pod(containers=app(securityContext={"runAsNonRoot": True}))
    with pytest.raises(
        ConfigError,
        match=r"container has runAsNonRoot and " + problem.replace("(", r"\(").replace(")", r"\)"),
    ):
        config(p, image_user=image_user)


def test_run_as_non_root_accepts_a_non_root_user_from_spec_or_image():
    p = pod(securityContext={"runAsNonRoot": True}, containers=app())
    assert config(p, image_user="1000:1000").user is None
    p = pod(securityContext={"runAsNonRoot": True, "runAsUser": 1000}, containers=app())
    assert config(p, image_user="").user == "1000"
    p = pod(
        securityContext={"runAsNonRoot": True}, containers=app(securityContext={"runAsUser": 0})
    )
    with pytest.raises(ConfigError, match="runAsUser breaks non-root policy"):
        config(p, image_user="1000")


def test_fs_group_is_a_supplementary_group():
    assert config(pod(securityContext={"fsGroup": 2000})).group_add == ("2000",)
    assert config(pod()).group_add == ()


def test_a_config_refusal_waits_as_create_container_config_error():
    d = desired(pod(containers=app(securityContext={"runAsNonRoot": True})))
    failure = ConfigFailure(
        spec_hash=d.container_hashes["app"],
        message="image will run as root",
        failed_at=100.0,
        failures=1,
    )
    actions = plan_node(
        [d], [], inputs=PlanInputs(now=101.0, config_failures={(d.uid, "app"): failure})
    )
    [wait] = [a for a in actions if isinstance(a, Wait)]
    assert wait.waiting_reason == "CreateContainerConfigError"
    assert wait.reason == "image will run as root"


# --- subPath and volume ownership on disk -----------------------------------------------------


def _sub_path_pod(sub_path: str, *, source: dict | None = None):
    return pod(
        volumes=[{"name": "data", **(source or {"emptyDir": {}})}],
        containers=app(volumeMounts=[{"name": "data", "mountPath": "/d", "subPath": sub_path}]),
    )


def test_a_sub_path_mount_needs_a_checked_source():
    with pytest.raises(ConfigError, match="failed to prepare subPath"):
        config(_sub_path_pod("logs"))


def test_a_symlink_planted_in_the_volume_does_not_lead_out_of_it(tmp_path: Path):
    settings = replace(SETTINGS, state_dir=tmp_path)
    p = _sub_path_pod("escape/etc")
    d = desired(p, settings=settings)
    volumes.materialize(d, state_dir=tmp_path, configs=ConfigIndex())
    root = volume_dir(tmp_path, d.uid, "data")
    (root / "escape").symlink_to("/")
    with pytest.raises(ConfigError, match="resolves outside the volume"):
        volumes.sub_path_sources(d, p.spec.containers[0], state_dir=tmp_path)
    (root / "escape").unlink()
    (root / "real").mkdir()
    (root / "escape").symlink_to(root / "real")
    [source] = volumes.sub_path_sources(d, p.spec.containers[0], state_dir=tmp_path).values()
    # The resolved directory is what Docker binds, never the link itself.
    assert source == (root / "real" / "etc").resolve()
    assert source.is_dir()
    made = container_config(
        d,
        p.spec.containers[0],
        settings=settings,
        sandbox_id=SANDBOX,
        attempt=0,
        backoff_step=0,
        sub_paths={0: source},
    )
    assert made.mounts[0].source == str(source)


def test_a_missing_sub_path_of_a_config_volume_is_an_error(tmp_path: Path):
    p = _sub_path_pod("absent", source={"configMap": {"name": "cm", "optional": True}})
    d = desired(p)
    volumes.materialize(d, state_dir=tmp_path, configs=ConfigIndex())
    with pytest.raises(ConfigError, match="does not exist"):
        volumes.sub_path_sources(d, p.spec.containers[0], state_dir=tmp_path)


def test_fs_group_owns_the_pods_volumes(tmp_path: Path):
    secret = Secret.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "namespace": "default"},
            "stringData": {"token": "t"},
        }
    )
    p = pod(
        securityContext={"fsGroup": 2000},
        volumes=[{"name": "data", "emptyDir": {}}, {"name": "s", "secret": {"secretName": "s"}}],
    )
    d = desired(p, ConfigIndex.of([], [secret]))
    volumes.materialize(d, state_dir=tmp_path, configs=ConfigIndex.of([], [secret]))
    data = os.stat(volume_dir(tmp_path, d.uid, "data"))
    assert data.st_gid == 2000
    assert data.st_mode & stat.S_ISGID
    token = os.stat(volume_dir(tmp_path, d.uid, "s") / "token")
    assert token.st_gid == 2000
    assert stat.S_IMODE(token.st_mode) == 0o440
