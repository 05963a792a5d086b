"""``capstan up --listen``: the HTTP API inside ``capstan up``, used by the CLI and by webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from reconciler.client import Client, load_config
from schemas import Deployment
from tests.e2e.conftest import CapstanUp, GitRepo
from tests.e2e.test_gitops_loop import NODE, version_files
from tests.fixtures.waiting import wait_until

SECRET = "e2e-webhook-secret"


@pytest.fixture
def up_http(
    docker_client: docker.DockerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CapstanUp]:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("v1", {"node.yaml": NODE, **version_files("v1")})
    capstan = CapstanUp(repo, tmp_path, docker_client)
    monkeypatch.setenv("CAPSTAN_WEBHOOK_SECRET", SECRET)  # inherited by capstan up
    try:
        capstan.start("--listen", "127.0.0.1:0")
        yield capstan
    finally:
        capstan.close()


def test_cli_goes_through_the_api_and_webhooks_are_verified(up_http: CapstanUp) -> None:
    up = up_http
    config_file = up.state_dir / "config"
    wait_until(config_file.exists, timeout=30, what="client config")
    wait_until(lambda: len(up.ready_pods()) == 2, timeout=60, what="pods Ready")
    status = up.status()
    assert status["via"].startswith("https://127.0.0.1:")
    assert status["sync"]["state"] == "Synced"
    pods = json.loads(up.cli("get", "pods", "-o", "json"))
    assert len(pods["items"]) == 2
    assert "suspended" in up.cli("sync", "--suspend")
    assert up.status()["sync"]["state"] == "Suspended"
    assert "active" in up.cli("sync", "--resume")
    assert "ScalingReplicaSet" in up.cli("events")  # events through the API too

    with Client.from_config(config_file) as client:
        syncs = client.syncs()
        assert syncs
        assert syncs[0]["commit"] == up.repo.head()
        plan = client.plan()
        assert isinstance(plan, dict)

    config = load_config(config_file)
    assert config.ca_file is not None
    verify = ssl.create_default_context(cafile=str(config.ca_file))
    with httpx.Client(base_url=config.server, verify=verify) as http:
        body = b'{"ref": "refs/heads/main"}'
        refused = http.post(
            "/hooks/git",
            content=body,
            headers={
                "X-Hub-Signature-256": "sha256=" + "0" * 64,
                "Content-Type": "application/json",
            },
        )
        assert refused.status_code == 401
        pushed = up.repo.commit("v2", version_files("v2"))
        body = json.dumps({"ref": "refs/heads/main", "after": pushed}).encode()
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        accepted = http.post(
            "/hooks/git",
            content=body,
            headers={
                "X-Hub-Signature-256": f"sha256={signature}",
                "Content-Type": "application/json",
            },
        )
        assert accepted.status_code < 300, accepted.text
        # The sync followed: the pushed commit is recorded as applied and its Deployment is
        # what the API now holds.
        wait_until(
            lambda: any(
                s["commit"] == pushed and s["outcome"] == "Succeeded" for s in up_syncs(up)
            ),
            timeout=30,
            what="a successful sync of the pushed commit",
        )
        assert deployed_version(up) == "v2"
        # Without the admin token the API itself refuses.
        assert http.get("/api/v1/pods").status_code == 401


def up_syncs(up: CapstanUp) -> list[dict[str, object]]:
    """The sync records, newest first, as the API serves them."""
    with Client.from_config(up.state_dir / "config") as client:
        return list(client.syncs())


def deployed_version(up: CapstanUp) -> str | None:
    """The version annotation of the ``web`` Deployment's pod template in the API."""
    deployment = up.api.get(Deployment, "web", namespace="default")
    return deployment.spec.template.metadata.annotations.get("example.com/version")
