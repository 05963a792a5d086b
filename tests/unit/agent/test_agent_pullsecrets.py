"""imagePullSecrets: registry credentials from dockerconfigjson Secrets, matched to images."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from agent.kubelet._pullsecrets import registry_of
from agent.kubelet.podspec import ConfigIndex, NodeName, NodeSettings, desired_pod
from agent.runtime.facts import RegistryAuth
from schemas import Pod, Secret


def docker_config(auths: dict[str, dict[str, str]], *, name: str = "regcred") -> Secret:
    document = json.dumps({"auths": auths}).encode()
    return Secret.model_validate(
        {
            "metadata": {"name": name, "namespace": "shop"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(document).decode()},
        }
    )


def test_registry_of_follows_dockers_rule():
    assert registry_of("nginx:1.27") == "docker.io"
    assert registry_of("library/nginx") == "docker.io"
    assert registry_of("ghcr.io/stefanprodan/podinfo:6") == "ghcr.io"
    assert registry_of("localhost:5000/app") == "localhost:5000"
    assert registry_of("localhost/app") == "localhost"


def test_a_pods_pull_secrets_give_each_images_registry_its_credentials(tmp_path: Path):
    hub = base64.b64encode(b"hubuser:hubpass").decode()
    secrets = [
        docker_config(
            {
                "https://index.docker.io/v1/": {"auth": hub},
                "ghcr.io": {"username": "gh", "password": "token"},
            }
        ),
        docker_config({"ghcr.io": {"username": "other", "password": "x"}}, name="later"),
    ]
    pod = Pod.model_validate(
        {
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": {
                "imagePullSecrets": [{"name": "regcred"}, {"name": "later"}, {"name": "missing"}],
                "containers": [{"name": "c", "image": "ghcr.io/o/app:1"}],
            },
        }
    )
    settings = NodeSettings(node_name=NodeName("n"), state_dir=tmp_path)
    desired = desired_pod(pod, configs=ConfigIndex.of([], secrets), settings=settings)
    assert desired.pull_auth("ghcr.io/o/app:1") == RegistryAuth("gh", "token")
    assert desired.pull_auth("nginx:1.27") == RegistryAuth("hubuser", "hubpass")
    assert desired.pull_auth("quay.io/x/y") is None
    assert "token" not in repr(desired.pull_auth("ghcr.io/o/app:1"))
