"""``capstan --version``, ``validate`` and ``render`` on repositories that are valid."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from cli_testdata import EXAMPLE_REPO, ORDINARY
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.source import load_repository
from tests.fixtures.corpus import corpus_folder_params, require_shared_corpus


def run(*args: str):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.output == f"capstan, version {version('capstan')}\n"


def test_help_lists_the_commands():
    result = run("--help")
    assert result.exit_code == 0
    assert "validate" in result.output
    assert "render" in result.output


@pytest.mark.parametrize("env", [None, "dev", "prod"])
def test_validate_example_repo_prints_a_summary_table(env):
    args = ["validate", EXAMPLE_REPO] + (["--env", env] if env else [])
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KIND", "NAMESPACE", "OBJECTS", "NAMES"]
    rows = {tuple(line.split()[:3]) for line in lines[1:] if line.strip()}
    assert ("Deployment", "shop", "2") in rows
    assert ("Namespace", "-", "1") in rows
    assert ("Node", "-", "1") in rows
    # Columns are aligned: every row's OBJECTS column ends where the header's does.
    end = lines[0].index("OBJECTS") + len("OBJECTS")
    assert all(line[end - 1].isdigit() for line in lines[1:6])
    env_note = f" (env {env})" if env else ""
    assert lines[-1] == f"{EXAMPLE_REPO}{env_note}: valid, 8 objects in 8 files"


@pytest.mark.parametrize("folder", corpus_folder_params())
def test_validate_corpus_folders(folder: Path):
    require_shared_corpus()
    result = run("validate", folder)
    assert result.exit_code == 0, result.output
    assert "default" in result.stdout


def test_validate_ordinary_manifests():
    result = run("validate", ORDINARY)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].endswith("valid, 7 objects in 2 files")


def test_validate_json_lists_objects_with_their_sources():
    result = run("validate", EXAMPLE_REPO, "-o", "json", "--env", "dev")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["valid"] is True
    assert document["env"] == "dev"
    web = next(o for o in document["objects"] if o["kind"] == "Deployment" and o["name"] == "web")
    assert web == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "namespace": "shop",
        "name": "web",
        "source": web["source"],
    }
    assert web["source"].startswith("web/deployment.yaml.j2 (rendered):")


def test_validate_unknown_env_lists_the_available_ones():
    result = run("validate", EXAMPLE_REPO, "--env", "staging")
    assert result.exit_code == 1
    assert (
        f"{EXAMPLE_REPO}/environments: unknown environment 'staging'; available: dev, prod"
        in result.stderr
    )


def test_validate_a_path_that_is_not_a_directory_is_a_usage_error(tmp_path):
    result = run("validate", tmp_path / "missing")
    assert result.exit_code == 2


def test_render_yaml_round_trips_to_the_loaded_objects():
    result = run("render", EXAMPLE_REPO, "--env", "prod")
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    loaded = load_repository(EXAMPLE_REPO, env="prod")
    assert documents == [item.obj.to_dict() for item in loaded.objects]
    assert result.stdout.startswith("# Source: namespaces.yaml:2:1\napiVersion: v1\n")
    web = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "web")
    assert web["spec"]["replicas"] == 3
    # Defaults are filled in.
    probe = web["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["timeoutSeconds"] == 1
    assert probe["failureThreshold"] == 3
    # Multi-line strings stay readable blocks.
    assert "  index.html: |\n" in result.stdout


def test_render_json_is_a_v1_list():
    result = run("render", EXAMPLE_REPO, "-o", "json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["kind"] == "List"
    assert len(document["items"]) == 8


SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: db
data:
  password: aHVudGVyMg==
stringData:
  user: admin
"""


def test_render_masks_secret_values_unless_asked(tmp_path):
    (tmp_path / "secret.yaml").write_text(SECRET)
    masked = run("render", tmp_path)
    assert masked.exit_code == 0
    assert "aHVudGVyMg==" not in masked.stdout
    assert "admin" not in masked.stdout
    (document,) = yaml.safe_load_all(masked.stdout)
    assert document["data"] == {"password": "***"}
    assert document["stringData"] == {"user": "***"}
    masked_json = run("render", tmp_path, "-o", "json")
    assert "aHVudGVyMg==" not in masked_json.stdout
    shown = run("render", tmp_path, "--show-secrets")
    (document,) = yaml.safe_load_all(shown.stdout)
    assert document["data"] == {"password": "aHVudGVyMg=="}


def test_render_reports_errors_like_validate(tmp_path):
    (tmp_path / "bad.yaml").write_text("kind: [\n")
    result = run("render", tmp_path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"{tmp_path}/bad.yaml:2:1: YAML syntax error")
