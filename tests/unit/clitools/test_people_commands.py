"""``capstan get/describe/events/status/sync`` against a real temp store (opened with --store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler.api import Api
from reconciler.cli._app import cli
from reconciler.store import open_store
from reconciler.sync import read_sync_state
from schemas import Pod


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url)
    try:
        api = Api(store)
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "n1"},
                "spec": {"address": "local"},
            }
        )
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "creds", "namespace": "default"},
                "stringData": {"password": "hunter2-secret"},
            }
        )
        api.create(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": "web",
                    "namespace": "default",
                    "labels": {"capstan.io/managed-by": "capstan"},
                    "annotations": {"capstan.io/source": "web.yaml:1:1"},
                },
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "image": "img"}]},
                    },
                },
            }
        )
        pod = api.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "img"}]},
            }
        )
        assert isinstance(pod, Pod)
        api.bind(pod, "n1")
        api.record_event(pod, reason="Pulled", message="image pulled", source="test")
    finally:
        store.close()
    return url


def run(store_url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--store", store_url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_get_table_json_yaml(store_url: str) -> None:
    table = run(store_url, "get", "pods")
    assert table.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "web-1" in table
    wide = run(store_url, "get", "po", "-o", "wide")
    assert "n1" in wide
    listed = json.loads(run(store_url, "get", "pods", "-o", "json"))
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web-1"]
    one = yaml.safe_load(run(store_url, "get", "deploy", "web", "-o", "yaml"))
    assert one["spec"]["replicas"] == 1
    nodes = run(store_url, "get", "nodes")
    assert "n1" in nodes


def test_unknown_kind_is_a_usage_error(store_url: str) -> None:
    result = CliRunner().invoke(cli, ["get", "widgets", "--store", store_url])
    assert result.exit_code == 2
    assert "unknown kind 'widgets'" in result.output


def test_secret_values_are_never_printed(store_url: str) -> None:
    for args in (
        ("get", "secret", "creds", "-o", "yaml"),
        ("get", "secrets", "-o", "json"),
        ("describe", "secret", "creds"),
        ("describe", "secret", "creds", "-o", "json"),
    ):
        out = run(store_url, *args)
        assert "hunter2" not in out
        assert "aHVudGVyMi" not in out  # nor its base64
        assert "password" in out


def test_describe_shows_conditions_source_and_events(store_url: str) -> None:
    out = run(store_url, "describe", "pod", "web-1")
    assert "PodScheduled" in out
    assert "Pulled" in out
    assert "image pulled" in out
    deploy = run(store_url, "describe", "deploy", "web")
    assert "Source:       web.yaml:1:1" in deploy
    node = run(store_url, "describe", "node", "n1")
    assert "default/web-1" in node


def test_events_table_and_json(store_url: str) -> None:
    table = run(store_url, "events")
    assert "Pulled" in table
    assert "pod/web-1" in table
    records = json.loads(run(store_url, "events", "-o", "json"))
    assert records[0]["reason"] == "Pulled"


def test_status_json(store_url: str) -> None:
    data = json.loads(run(store_url, "status", "-o", "json"))
    assert data["sync"]["state"] == "Unknown"
    assert [a["name"] for a in data["apps"]] == ["web"]
    assert data["nodes"][0]["name"] == "n1"
    assert data["nodes"][0]["pods"] == 1
    human = run(store_url, "status")
    assert "default/web" in human


def test_sync_suspend_and_resume(store_url: str) -> None:
    assert "suspended" in run(store_url, "sync", "--suspend")
    store = open_store(store_url)
    try:
        assert read_sync_state(Api(store)).suspended
    finally:
        store.close()
    assert json.loads(run(store_url, "sync", "--resume", "-o", "json"))["suspended"] is False
    assert json.loads(run(store_url, "status", "-o", "json"))["sync"]["suspended"] is False


def test_no_capstan_found(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["status", "--state-dir", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "no capstan found" in result.output
