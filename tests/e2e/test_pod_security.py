"""Hostile pod specs end to end: from Git, a commit is refused whole and v1 keeps serving;
through ``capstan up``'s HTTP API, the write is refused naming the field (and the level).

One ``capstan up --listen`` on a repository whose v1 is ordinary; then a commit adding
``capabilities.add: [SYS_ADMIN]`` (Pod Security baseline) and one with ``subPath: ../../..``
(an escape from the volume to the host), each refused with file:line:field.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import docker
import httpx
import pytest

from reconciler.client import load_config
from tests.e2e.conftest import CapstanUp, started_up
from tests.e2e.test_gitops_loop import NODE, deployment, serving, version_files, web_ready
from tests.fixtures.waiting import wait_until

CONTAINER = "spec.template.spec.containers[0]"


@pytest.fixture(scope="module")
def up(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CapstanUp]:
    files = {"node.yaml": NODE, **version_files("v1")}
    with started_up(
        docker_client, tmp_path_factory, "podsec", files, "--listen", "127.0.0.1:0"
    ) as capstan:
        wait_until(lambda: web_ready(capstan, "v1"), timeout=60, what="v1 pods serving")
        yield capstan


def hostile(replace: str, by: str) -> str:
    text = deployment("v2")
    assert replace in text
    return text.replace(replace, by, 1)


def refused_commit(up: CapstanUp, message: str, text: str) -> list[str]:
    """Commit ``text`` as the Deployment; wait for the sync to refuse it; its errors."""
    live = up.status()["sync"]["liveCommit"]
    before = {p.metadata.uid for p in up.pods()}
    up.repo.commit(message, {"web/deployment.yaml": text})
    head = up.repo.head()

    def failed() -> dict[str, object] | None:
        sync = up.status()["sync"]
        outcome = sync.get("failed") or {}
        return sync if outcome.get("commit") == head else None  # type: ignore[union-attr]

    sync = wait_until(failed, timeout=30, what=f"commit {message!r} refused")
    assert sync["liveCommit"] == live
    assert sync["lastOutcome"] == "Failed"
    assert {p.metadata.uid for p in up.pods()} == before
    assert serving(up) == {"hello v1"}
    return list(sync["failed"]["errors"])  # type: ignore[index]


def test_a_capability_from_git_is_refused_and_v1_keeps_running(up: CapstanUp) -> None:
    errors = refused_commit(
        up,
        "add SYS_ADMIN",
        hostile(
            "          ports:\n",
            "          securityContext:\n"
            "            capabilities:\n"
            "              add: [SYS_ADMIN]\n"
            "          ports:\n",
        ),
    )
    assert errors == [
        f"web/deployment.yaml:29:21: {CONTAINER}.securityContext.capabilities.add[0]: "
        'violates PodSecurity "baseline:latest": non-default capabilities (container "httpd" '
        'must not include "SYS_ADMIN" in securityContext.capabilities.add); namespace '
        '"default" enforces baseline; to admit it, add namespaces/default.yaml: a Namespace '
        '"default" labelled pod-security.kubernetes.io/enforce: privileged'
    ]


def test_a_sub_path_escape_from_git_is_refused_and_v1_keeps_running(up: CapstanUp) -> None:
    errors = refused_commit(
        up,
        "subPath escape",
        hostile(
            "              mountPath: /www\n",
            "              mountPath: /www\n              subPath: ../../..\n",
        ),
    )
    assert len(errors) == 1
    assert errors[0].startswith(f"web/deployment.yaml:38:15: {CONTAINER}.volumeMounts[0].subPath:")
    assert "must not contain '..'" in errors[0]


def test_the_api_refuses_the_same_writes_naming_the_field(up: CapstanUp) -> None:
    config = load_config(up.state_dir / "config")
    token = config.bearer_token()
    assert config.ca_file is not None
    assert token
    verify = ssl.create_default_context(cafile=str(config.ca_file))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "intruder"},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "capstan.local/busybox:1",
                    "securityContext": {"capabilities": {"add": ["SYS_MODULE"]}},
                    "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                }
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
        },
    }
    with httpx.Client(
        base_url=config.server, verify=verify, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        forbidden = http.post("/api/v1/namespaces/default/pods", json=pod)
        assert forbidden.status_code == 403, forbidden.text
        body = forbidden.json()
        assert 'violates PodSecurity "baseline:latest"' in body["message"]
        assert body["details"]["causes"][0]["field"] == (
            "spec.containers[0].securityContext.capabilities.add[0]"
        )
        del pod["spec"]["containers"][0]["securityContext"]
        pod["spec"]["containers"][0]["volumeMounts"][0]["subPath"] = "/"
        invalid = http.post("/api/v1/namespaces/default/pods", json=pod)
        assert invalid.status_code == 422, invalid.text
        assert invalid.json()["details"]["causes"][0]["field"] == (
            "spec.containers[0].volumeMounts[0].subPath"
        )
    assert not [c for c in up.containers(running_only=False) if "intruder" in c["name"]]


def test_status_names_the_refused_commit(up: CapstanUp) -> None:
    human = up.cli("status")
    assert "web/deployment.yaml:38:15:" in human, human
