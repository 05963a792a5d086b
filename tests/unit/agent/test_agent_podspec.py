"""Pod → what Docker runs: hashes, env from ConfigMaps/Secrets, safe defaults, refusals."""

from __future__ import annotations

import base64

from agent_testdata import SETTINGS, desired, pod

from agent.kubelet.podspec import (
    ConfigIndex,
    container_config,
    ephemeral_volume_prefix,
    sandbox_config,
    with_configs,
)
from agent.runtime.facts import ContainerID
from schemas.core import ConfigMap, Secret

CM = ConfigMap.model_validate(
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "default"},
        "data": {"greeting": "hi", "mode": "fast"},
    }
)
SECRET = Secret.model_validate(
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "default"},
        "data": {"password": base64.b64encode(b"hunter2").decode()},
    }
)

#: A variable read from ``CM``.
GREETING = {"name": "G", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "greeting"}}}


def test_an_agent_upgrade_keeps_the_hash_of_a_container_with_volumes():
    # The value an agent without hostPath and mountPropagation in its models computed: a new
    # field left unset must not restart every running container.
    p = pod(
        containers=[
            {"name": "a", "image": "i:1", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}
        ],
        volumes=[{"name": "d", "emptyDir": {}}],
    )
    assert desired(p).container_hashes == {"a": "7a7e520f67dd5b54"}


def test_new_configs_recompute_what_reads_them_and_keep_the_rest():
    p = pod(
        containers=[
            {
                "name": "app",
                "image": "i:1",
                "env": [GREETING],
            },
            {"name": "side", "image": "i:1", "envFrom": [{"secretRef": {"name": "s"}}]},
        ],
        imagePullSecrets=[{"name": "s"}],
    )
    before = desired(p, ConfigIndex.of([CM], []))
    assert before.config_errors == {"side": before.config_errors["side"]}
    changed = CM.model_copy(update={"data": {"greeting": "bonjour"}})
    configs = ConfigIndex.of([changed], [SECRET])
    after = with_configs(before, configs=configs, settings=SETTINGS)
    # The same as computing the pod afresh under the new configs, ...
    assert after == desired(p, configs)
    assert after.env["app"] == (("G", "bonjour"),)
    assert after.config_errors == {}
    # ... with the parts that read only the pod carried over, not recomputed.
    assert after.container_hashes is before.container_hashes
    assert after.sandbox_hash is before.sandbox_hash


def test_with_configs_keeps_the_object_when_nothing_it_holds_changed():
    # A ConfigMap the pod mounts (its files follow it) but reads no variable of: the same
    # DesiredPod, so what keys on it (the pod's status) is not computed again.
    p = pod(
        containers=[
            {
                "name": "app",
                "image": "i:1",
                "env": [GREETING],
                "volumeMounts": [{"name": "files", "mountPath": "/files"}],
            }
        ],
        volumes=[{"name": "files", "configMap": {"name": "files"}}],
    )
    files = CM.model_copy(update={"metadata": CM.metadata.model_copy(update={"name": "files"})})
    before = desired(p, ConfigIndex.of([CM, files], []))
    other_files = files.model_copy(update={"data": {"greeting": "changed"}})
    assert (
        with_configs(before, configs=ConfigIndex.of([CM, other_files], []), settings=SETTINGS)
        is before
    )
    # A value the container reads changed: a new object with the new environment.
    changed = CM.model_copy(update={"data": {"greeting": "bonjour"}})
    after = with_configs(before, configs=ConfigIndex.of([changed, files], []), settings=SETTINGS)
    assert after is not before
    assert after.env["app"] == (("G", "bonjour"),)


def test_hash_changes_with_image_only_for_that_container():
    a = desired(pod(containers=[{"name": "x", "image": "i:1"}, {"name": "y", "image": "i:1"}]))
    b = desired(pod(containers=[{"name": "x", "image": "i:2"}, {"name": "y", "image": "i:1"}]))
    assert a.container_hashes["x"] != b.container_hashes["x"]
    assert a.container_hashes["y"] == b.container_hashes["y"]
    assert a.sandbox_hash == b.sandbox_hash


def test_env_from_configmap_and_secret_resolved_and_hidden_from_repr():
    p = pod(
        containers=[
            {
                "name": "app",
                "image": "i:1",
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                    {"name": "PLAIN", "value": "1"},
                    {
                        "name": "PASS",
                        "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}},
                    },
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {
                        "name": "OPT",
                        "valueFrom": {
                            "configMapKeyRef": {"name": "nope", "key": "k", "optional": True}
                        },
                    },
                ],
            }
        ]
    )
    d = desired(p, ConfigIndex.of([CM], [SECRET]))
    assert dict(d.env["app"]) == {
        "CM_greeting": "hi",
        "CM_mode": "fast",
        "PLAIN": "1",
        "PASS": "hunter2",
        "POD": "web",
    }
    assert not d.config_errors
    assert "hunter2" not in repr(d)


def test_missing_secret_is_a_config_error():
    p = pod(
        volumes=[{"name": "v", "secret": {"secretName": "absent"}}],
        containers=[
            {"name": "app", "image": "i:1", "volumeMounts": [{"name": "v", "mountPath": "/s"}]}
        ],
    )
    assert "secret 'absent' not found" in desired(p).config_errors["app"]


def test_container_config_safe_defaults_and_limits():
    p = pod(
        containers=[
            {
                "name": "app",
                "image": "i:1",
                "command": ["sh"],
                "args": ["-c", "true"],
                "workingDir": "/tmp",
                "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "cfg", "mountPath": "/c"},
                ],
            }
        ],
        volumes=[{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cm"}}],
    )
    d = desired(p, ConfigIndex.of([CM], []))
    config = container_config(
        d,
        p.spec.containers[0],
        settings=SETTINGS,
        sandbox_id=ContainerID("sb"),
        attempt=2,
        backoff_step=1,
    )
    assert config.network_mode == "container:sb"
    assert config.entrypoint == ("sh",)
    assert config.command == ("-c", "true")
    assert config.mem_limit_bytes == 64 * 1024 * 1024
    assert config.nano_cpus == 500_000_000
    assert config.security_opt == ("no-new-privileges",)
    assert config.pids_limit == 1024
    assert config.labels["io.capstan.attempt"] == "2"
    assert config.labels["io.capstan.managed-by"] == "node-a"
    mounts = {m.target: m for m in config.mounts}
    assert not mounts["/data"].read_only
    assert mounts["/c"].read_only
    assert mounts["/data"].source.endswith(f"/pods/{d.uid}/volumes/data")


def test_sandbox_publishes_ports_on_bind_address():
    p = pod(
        containers=[
            {
                "name": "app",
                "image": "i:1",
                "ports": [
                    {"containerPort": 80},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"},
                ],
            }
        ]
    )
    config = sandbox_config(desired(p), settings=SETTINGS, attempt=0, backoff_step=0)
    assert [(r.container_port, r.protocol, r.host_ip, r.host_port) for r in config.ports] == [
        (80, "tcp", "127.0.0.1", None),
        (53, "udp", "127.0.0.1", 5353),
    ]
    assert config.init
    assert config.image == "capstan.local/pause:1"


def test_privileged_and_host_network_are_refused():
    assert desired(pod(hostNetwork=True)).refused
    p = pod(containers=[{"name": "app", "image": "i:1", "securityContext": {"privileged": True}}])
    assert "privileged" in (desired(p).refused or "")


def test_claim_volume_is_a_named_docker_volume_of_this_node():
    p = pod(
        containers=[
            {
                "name": "app",
                "image": "i:1",
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "ro", "mountPath": "/ro"},
                ],
            }
        ],
        volumes=[
            {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}},
            {"name": "ro", "persistentVolumeClaim": {"claimName": "seed", "readOnly": True}},
        ],
    )
    d = desired(p)
    assert d.config_errors == {}
    config = container_config(
        d,
        p.spec.containers[0],
        settings=SETTINGS,
        sandbox_id=ContainerID("sb"),
        attempt=0,
        backoff_step=0,
    )
    mounts = {m.target: m for m in config.mounts}
    # A name, not a path: Docker binds it as (and first creates) the named volume.
    assert mounts["/data"].source == "capstan-pvc.node-a.default.data-db-0"
    assert not mounts["/data"].read_only
    assert mounts["/ro"].source == "capstan-pvc.node-a.default.seed"
    assert mounts["/ro"].read_only


def test_sub_path_on_a_claim_volume_is_a_config_error():
    p = pod(
        containers=[
            {
                "name": "app",
                "image": "i:1",
                "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "x"}],
            }
        ],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}],
    )
    assert "subPath is not supported on persistentVolumeClaim" in desired(p).config_errors["app"]


_TEMPLATE = {
    "volumeClaimTemplate": {
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }
}


def test_ephemeral_volume_is_a_named_docker_volume_of_this_pod():
    p = pod(
        containers=[
            {
                "name": "app",
                "image": "i:1",
                "volumeMounts": [
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "cache", "mountPath": "/ro", "readOnly": True},
                ],
            }
        ],
        volumes=[{"name": "cache", "ephemeral": _TEMPLATE}],
    )
    d = desired(p)
    assert d.config_errors == {}
    config = container_config(
        d,
        p.spec.containers[0],
        settings=SETTINGS,
        sandbox_id=ContainerID("sb"),
        attempt=0,
        backoff_step=0,
    )
    mounts = {m.target: m for m in config.mounts}
    # Named by the pod's UID: a restarted container finds the data, a new pod starts empty.
    assert mounts["/cache"].source == f"capstan-eph.node-a.{d.uid}.cache"
    assert mounts["/cache"].source.startswith(ephemeral_volume_prefix(SETTINGS.node_name, d.uid))
    assert not mounts["/cache"].read_only
    assert mounts["/ro"].source == mounts["/cache"].source
    assert mounts["/ro"].read_only


def test_sub_path_on_an_ephemeral_volume_is_a_config_error():
    p = pod(
        containers=[
            {
                "name": "app",
                "image": "i:1",
                "volumeMounts": [{"name": "cache", "mountPath": "/c", "subPath": "x"}],
            }
        ],
        volumes=[{"name": "cache", "ephemeral": _TEMPLATE}],
    )
    assert "subPath is not supported on ephemeral volumes" in desired(p).config_errors["app"]
