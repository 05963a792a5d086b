"""``capstan validate`` on Kustomize repositories (through the real ``kubectl kustomize``) and on
Helm charts (refused, with what to commit instead)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.source import load_repository
from schemas import Deployment
from tests.unit.source.source_testdata import write_files

BASE = {
    "base/kustomization.yaml": "resources:\n  - deployment.yaml\n  - service.yaml\n",
    "base/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
""",
    "base/service.yaml": (
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
        "spec:\n  selector: {app: web}\n  ports: [{port: 80}]\n"
    ),
    "overlays/prod/kustomization.yaml": """\
namespace: prod
namePrefix: prod-
resources:
  - namespace.yaml
  - ../../base
patches:
  - path: replicas.yaml
""",
    "overlays/prod/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n",
    "overlays/prod/replicas.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n"
    ),
}


def validate(root: Path, *args: str):
    return CliRunner().invoke(cli, ["validate", str(root), *args])


def test_an_overlay_renders_through_kustomize_with_path(tmp_path: Path):
    root = write_files(tmp_path, BASE)
    result = validate(root, "--path", "overlays/prod")
    assert result.exit_code == 0, result.output
    repository = load_repository(root, subdir="overlays/prod")
    objects = {str(item.obj.key): item for item in repository.objects}
    assert set(objects) == {"Namespace/prod", "Service/prod/prod-web", "Deployment/prod/prod-web"}
    deployment = objects["Deployment/prod/prod-web"]
    assert isinstance(deployment.obj, Deployment)
    assert deployment.obj.spec.replicas == 3
    assert "config.kubernetes.io/origin" not in deployment.obj.metadata.annotations
    assert deployment.source.file == "base/deployment.yaml", "placed where kustomize read it"
    assert repository.files == ["overlays/prod/kustomization.yaml"]


def test_errors_in_built_objects_name_the_source_file_and_line(tmp_path: Path):
    files = {
        **BASE,
        "base/deployment.yaml": BASE["base/deployment.yaml"].replace(
            "image: nginx:1.27", "image: nginx:1.27\n          imagePullPolicy: Sometimes"
        ),
    }
    root = write_files(tmp_path, files)
    result = validate(root, "--path", "overlays/prod")
    assert result.exit_code == 1
    assert (
        f"{root}/base/deployment.yaml:14:11: spec.template.spec.containers[0].imagePullPolicy: "
        "must be 'Always', 'IfNotPresent' or 'Never' (got 'Sometimes')"
    ) in result.output


def test_kustomize_errors_name_the_file_kustomize_names(tmp_path: Path):
    files = {**BASE, "base/kustomization.yaml": "resources:\n  - deployment.yaml\n  - gone.yaml\n"}
    root = write_files(tmp_path, files)
    result = validate(root, "--path", "overlays/prod")
    assert result.exit_code == 1
    assert f"{root}/base/gone.yaml: kustomize could not build overlays/prod:" in result.output
    assert str(tmp_path) + "/base/gone.yaml" not in result.output.split(": ", 1)[1]


def test_remote_bases_and_paths_outside_the_repository_are_refused_before_kustomize(
    tmp_path: Path,
):
    (tmp_path / "outside").mkdir()
    root = write_files(
        tmp_path / "repo",
        {
            **BASE,
            "overlays/prod/kustomization.yaml": (
                "resources:\n  - ../../base\n"
                "  - https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.0.0\n"
                "  - ../../../outside\n"
            ),
        },
    )
    result = validate(root, "--path", "overlays/prod")
    assert result.exit_code == 1
    assert "is a remote base: Capstan builds without network access" in result.output
    assert "'../../../outside' is outside the repository" in result.output


def test_only_the_kustomizations_a_build_reads_are_checked_for_remote_bases(tmp_path: Path):
    """As in GKE's samples: another folder's remote base does not refuse this overlay; a remote
    base in a base this overlay reads does, at that base's kustomization."""
    remote = "https://github.com/kubernetes-sigs/kueue/releases/download/v0.12.3/manifests.yaml"
    root = write_files(
        tmp_path,
        {**BASE, "kueue/kustomization.yaml": f"resources:\n  - {remote}\n"},
    )
    result = validate(root, "--path", "overlays/prod")
    assert result.exit_code == 0, result.output
    (root / "base/kustomization.yaml").write_text(
        f"resources:\n  - deployment.yaml\n  - service.yaml\n  - {remote}\n"
    )
    result = validate(root, "--path", "overlays/prod")
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if "remote base" in line]
    assert line.startswith(f"{root}/base/kustomization.yaml: resources: '{remote}' is a remote")


def test_without_path_every_kustomize_directory_below_is_built_as_flux_does(tmp_path: Path):
    """Flux's kustomize-controller, on a path without kustomization, builds each directory
    below that has one as a kustomize resource: here the base and the overlay, side by side."""
    root = write_files(tmp_path, BASE)
    result = validate(root)
    assert result.exit_code == 0, result.output
    repository = load_repository(root)
    assert {str(item.obj.key) for item in repository.objects} == {
        "Namespace/prod",
        "Service/default/web",
        "Deployment/default/web",
        "Service/prod/prod-web",
        "Deployment/prod/prod-web",
    }
    assert repository.files == ["base/kustomization.yaml", "overlays/prod/kustomization.yaml"]
    # A user pointing at such a root usually meant the overlay: the base built alone is said.
    (warning,) = repository.warnings
    assert warning.location.file == "base/kustomization.yaml"
    assert "base is built as a folder of its own and also as a base of overlays/prod" in (
        warning.message
    )
    assert "point --path at overlays/prod" in warning.message
    assert "point --path at overlays/prod" in result.output
    # Pointing at the overlay builds only it, and warns of nothing.
    overlay = load_repository(root, subdir="overlays/prod")
    assert overlay.warnings == ()


def test_a_helm_chart_is_refused_with_the_helm_template_command(tmp_path: Path):
    root = write_files(
        tmp_path,
        {
            "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
            "charts/web/templates/deployment.yaml": "kind: {{ .Values.kind }}\n",
        },
    )
    result = validate(root)
    assert result.exit_code == 1
    assert (
        f"{root}/charts/web: a Helm chart: Capstan does not run Helm. Commit the chart's "
        "output instead: helm template RELEASE charts/web -f VALUES > rendered/web.yaml"
    ) in result.output
