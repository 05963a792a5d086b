"""Acceptance: each single defect fails ``capstan validate`` with file, line and field or name.

Every case starts from a valid repository, breaks one thing, and checks the
exit code, the one error line on stderr, and the loader's structured error.
Nothing outside the repository may be read or executed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_testdata import DEPLOYMENT
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.source import ManifestErrors, load_repository


@dataclass(frozen=True)
class Defect:
    files: dict[str, str]
    where: str  # "file:line" or "file:line:column"
    says: tuple[str, ...]  # the field path or name, and what is wrong
    symlinks: dict[str, str] = field(default_factory=dict)  # link in repo -> target under tmp


def broken(old: str, new: str) -> dict[str, str]:
    assert old in DEPLOYMENT
    return {"web.yaml": DEPLOYMENT.replace(old, new)}


CONFIGMAP_C = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"


def service_at(name: str, cluster_ip: str) -> str:
    return (
        f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n"
        f"  clusterIP: {cluster_ip}\n  ports:\n  - port: 80\n"
    )


DEFECTS = {
    "unknown field": Defect(
        broken("          resources:", "          imagePolicy: Always\n          resources:"),
        "web.yaml:18:11",
        ("spec.template.spec.containers[0].imagePolicy", "unknown field"),
    ),
    "wrong type": Defect(
        broken("replicas: 2", "replicas: two"),
        "web.yaml:6:3",
        ("spec.replicas", "must be an integer", "'two'"),
    ),
    "bad name": Defect(
        broken("  name: web\nspec", "  name: Web_App\nspec"),
        "web.yaml:4:3",
        ("metadata.name", "Web_App", "DNS-1123"),
    ),
    "yaml syntax error": Defect(
        broken("      app: web\n  template", "      app: [web\n  template"),
        "web.yaml:10:",
        ("YAML syntax error",),
    ),
    "duplicate object": Defect(
        {"a.yaml": CONFIGMAP_C, "b/c.yaml": "---\n" + CONFIGMAP_C},
        "b/c.yaml:5:3",
        ("metadata.name", "duplicate ConfigMap default/c", "also defined at", "a.yaml:4:3"),
    ),
    "two Services with one clusterIP": Defect(
        {
            "a.yaml": service_at("a", "127.192.0.9"),
            "b.yaml": service_at("b", "127.192.0.9"),
            "c.yaml": service_at("c", "127.192.0.10"),
        },
        "b.yaml:6:3",
        (
            "spec.clusterIP",
            "clusterIP 127.192.0.9 is also the clusterIP of Service default/a",
            "a.yaml:6:3",
        ),
    ),
    "unsupported kind": Defect(
        broken("kind: Deployment", "kind: ReplicaSetX"),
        "web.yaml:2:1",
        ("kind", "unsupported kind 'ReplicaSetX'", "supported:", "apps/v1 Deployment"),
    ),
    "selector/labels mismatch": Defect(
        broken("        app: web\n    spec", "        app: api\n    spec"),
        "web.yaml:12:7",
        ("spec.template.metadata.labels", "selector"),
    ),
    "bad quantity": Defect(
        broken("cpu: 100m", "cpu: 100x"),
        "web.yaml:20:15",
        ("spec.template.spec.containers[0].resources.requests.cpu", "quantity"),
    ),
    "missing required field": Defect(
        broken("          image: capstan.local/busybox:1\n", ""),
        "web.yaml:16:11",
        ("spec.template.spec.containers[0].image", "field required"),
    ),
    "undefined template variable": Defect(
        {"web.yaml.j2": DEPLOYMENT.replace("replicas: 2", "replicas: {{ values.replicas }}")},
        "web.yaml.j2:6",
        ("undefined template variable", "replicas"),
    ),
    "template include escaping the repository": Defect(
        {"web.yaml.j2": "{% include '../outside/secret.yaml' %}\n"},
        "web.yaml.j2:1",
        ("include '../outside/secret.yaml'", "outside the repository"),
    ),
    "template touching python internals": Defect(
        {"web.yaml.j2": "a: 1\nb: {{ ''.__class__.__mro__[1].__subclasses__() }}\n"},
        "web.yaml.j2:2",
        ("sandbox", "__class__"),
    ),
    "symlink escaping the repository": Defect(
        {"ok.yaml": CONFIGMAP_C},
        "linked.yaml",
        ("symlink points outside the repository",),
        symlinks={"linked.yaml": "outside/secret.yaml"},
    ),
    "directory symlink escaping the repository": Defect(
        {"ok.yaml": CONFIGMAP_C},
        "apps",
        ("symlink points outside the repository",),
        symlinks={"apps": "outside"},
    ),
    "python yaml tag": Defect(
        {
            "web.yaml": (
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                "  name: !!python/object/apply:os.system ['touch MARKER']\n"
            )
        },
        "web.yaml:4:9",
        ("!!python/object/apply:os.system", "not allowed"),
    ),
}


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """``repo/`` to validate, and ``outside/`` beside it holding what must never be read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    # Valid YAML whose object would be a *second* error if it were ever loaded.
    (outside / "secret.yaml").write_text("apiVersion: v1\nkind: Gateway\nSECRET: hunter2\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    return repo, outside


@pytest.mark.parametrize("name", list(DEFECTS))
def test_each_single_defect_fails_with_file_line_and_field(name, layout, monkeypatch):
    repo, _outside = layout
    defect = DEFECTS[name]
    for relative, text in defect.files.items():
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).write_text(text)
    for link, target in defect.symlinks.items():
        os.symlink(repo.parent / target, repo / link)
    # A `!!python/object/apply` that ran would create MARKER in the working directory.
    monkeypatch.chdir(repo.parent)

    result = CliRunner().invoke(cli, ["validate", str(repo)])

    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr  # the error, then the summary
    error, summary = lines
    assert error.startswith(f"{repo}/{defect.where}"), error
    for text in defect.says:
        assert text in error, (text, error)
    assert summary == f"{repo}: 1 error, nothing is valid"
    assert result.stdout == ""
    # Nothing outside the repository was read or executed.
    assert "hunter2" not in result.output
    assert "Gateway" not in result.output
    assert not (repo.parent / "MARKER").exists()
    assert not (repo / "MARKER").exists()

    with pytest.raises(ManifestErrors) as caught:
        load_repository(repo)
    (structured,) = caught.value.errors
    file, _, position = defect.where.partition(":")
    assert structured.file == file
    if position:
        assert structured.line == int(position.split(":")[0])


def test_any_number_of_headless_services_say_cluster_ip_none(layout):
    repo, _outside = layout
    for name in ("a", "b", "c"):
        (repo / f"{name}.yaml").write_text(service_at(name, "None"))
    result = CliRunner().invoke(cli, ["validate", str(repo)])
    assert result.exit_code == 0, result.output
    addresses = [item.obj.spec.cluster_ip for item in load_repository(repo).objects]  # type: ignore[attr-defined]
    assert addresses == ["None", "None", "None"]


def test_two_defects_in_two_files_are_both_listed(layout):
    repo, _outside = layout
    (repo / "web.yaml").write_text(DEPLOYMENT.replace("replicas: 2", "replicas: two"))
    (repo / "cm.yaml").write_text(CONFIGMAP_C.replace("name: c", "name: C!"))
    result = CliRunner().invoke(cli, ["validate", str(repo)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{repo}/cm.yaml:4:3: metadata.name: ")
    assert lines[1].startswith(f"{repo}/web.yaml:6:3: spec.replicas: ")
    assert lines[2] == f"{repo}: 2 errors, nothing is valid"


def test_errors_as_json_for_programs(layout):
    import json

    repo, _outside = layout
    (repo / "web.yaml").write_text(DEPLOYMENT.replace("replicas: 2", "replicas: two"))
    result = CliRunner().invoke(cli, ["validate", str(repo), "-o", "json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["valid"] is False
    (error,) = document["errors"]
    assert error["file"] == "web.yaml"
    assert (error["line"], error["column"], error["field_path"]) == (6, 3, "spec.replicas")
