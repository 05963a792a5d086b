"""A plain folder holding Kustomize folders (built through the real kustomize, as Flux's
kustomize-controller does), and manifests committed with template placeholders."""

from __future__ import annotations

import pytest
from source_testdata import DEPLOYMENT

from reconciler.source import ManifestErrors, load_repository
from schemas import Deployment

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n"
# A patch: a partial Deployment, no manifest of its own (no selector, no template).
PATCH = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 5\n"


def errors(root) -> list[str]:
    with pytest.raises(ManifestErrors) as caught:
        load_repository(root)
    return [str(error) for error in caught.value.errors]


def test_a_kustomize_folder_inside_a_plain_folder_is_built_not_read_plainly(make_repo):
    root = make_repo(
        {
            "configmap.yaml": CONFIGMAP,
            "apps/web/Kustomization": (
                "namePrefix: shop-\nresources: [deployment.yaml]\npatches:\n  - path: patch.yaml\n"
            ),
            "apps/web/deployment.yaml": DEPLOYMENT,
            "apps/web/patch.yaml": PATCH,
        }
    )
    repository = load_repository(root)
    objects = {str(item.obj.key): item for item in repository.objects}
    assert set(objects) == {"ConfigMap/default/plain", "Deployment/default/shop-web"}
    deployment = objects["Deployment/default/shop-web"]
    assert isinstance(deployment.obj, Deployment)
    assert deployment.obj.spec.replicas == 5, "the patch is applied, not loaded as a manifest"
    assert deployment.source.file == "apps/web/deployment.yaml"
    assert repository.files == ["apps/web/Kustomization", "configmap.yaml"]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {
                "configmap.yaml": CONFIGMAP,
                "web/kustomization.yml": "resources: [deployment.yaml]\n",
                "web/deployment.yaml": DEPLOYMENT.replace("replicas: 2", "replicas: many"),
            },
            "web/deployment.yaml:6:3: spec.replicas: must be an integer (got 'many')",
            id="at its source file and line",
        ),
        pytest.param(
            {
                "deployment.yaml": DEPLOYMENT,
                "web/kustomization.yaml": "resources: [deployment.yaml]\n",
                "web/deployment.yaml": DEPLOYMENT,
            },
            "web/deployment.yaml:4:3: metadata.name: duplicate Deployment default/web: also "
            "defined at deployment.yaml:4:3",
            id="the same object from a plain file and a built folder",
        ),
    ],
)
def test_errors_of_a_built_folder_name_its_source_file_and_line(make_repo, files, expected):
    assert errors(make_repo(files)) == [expected]


def test_a_kustomization_capstanignore_names_leaves_its_folder_plain(make_repo):
    root = make_repo(
        {
            ".capstanignore": "web/kustomization.yaml\n",
            "web/kustomization.yaml": "namePrefix: shop-\nresources: [deployment.yaml]\n",
            "web/deployment.yaml": DEPLOYMENT,
        }
    )
    names = {str(item.obj.key) for item in load_repository(root).objects}
    assert names == {"Deployment/default/web"}


def test_a_helm_chart_inside_a_plain_folder_is_still_refused(make_repo):
    root = make_repo(
        {
            "configmap.yaml": CONFIGMAP,
            "chart/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
            "chart/templates/deployment.yaml": "kind: {{ .Values.kind }}\n",
        }
    )
    assert [line.split(": ", 1)[0] for line in errors(root)] == ["chart"]
    assert "a Helm chart: Capstan does not run Helm" in errors(root)[0]


def test_placeholders_that_break_a_manifest_are_named_as_a_template(make_repo):
    service = (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: etcd-{{ .Values.cell }}\n"
        "spec:\n  selector:\n    cell: {{cell}}\n  ports: [{port: 4001}]\n"
    )
    labelled = CONFIGMAP.replace("{name: plain}", "{name: plain, labels: {cell: '{{ cell }}'}}")
    root = make_repo({"service.yaml": service, "configmap.yaml": labelled})
    template = (
        "looks like a template placeholder (Helm, Go or Jinja): this file must be rendered "
        "before it is committed (helm template, or the tool it was written for), as kubectl "
        "needs it too; Capstan renders Jinja2 itself only in *.j2 files"
    )
    assert errors(root) == [
        f"configmap.yaml:3:34: metadata.labels.cell: '{{{{ cell }}}}' {template}",
        f"service.yaml:7:12: '{{{{cell}}}}' {template}",
    ]


def test_placeholders_in_string_values_are_data(make_repo):
    """Prometheus rules and Grafana legends carry ``{{ ... }}`` in strings: valid YAML,
    valid values, loaded as they are."""
    rules = CONFIGMAP.replace(
        "data: {a: b}", "data:\n  summary: 'Instance {{ $labels.instance }} down'\n"
    )
    root = make_repo({"rules.yaml": rules})
    (item,) = load_repository(root).objects
    assert item.obj.data == {"summary": "Instance {{ $labels.instance }} down"}  # type: ignore[attr-defined]


def test_kustomize_runs_for_one_commit_are_bounded(make_repo, monkeypatch):
    monkeypatch.setattr("reconciler.source.load.MAX_KUSTOMIZE_BUILDS", 2)
    root = make_repo(
        {f"app{n}/kustomization.yaml": "resources: []\n" for n in range(3)}
        | {"configmap.yaml": CONFIGMAP}
    )
    assert errors(root) == [
        ".: 3 Kustomize directories below this folder: Capstan builds at most 2 for one "
        "commit; point --path at one of them, or list the others' kustomization files in "
        ".capstanignore"
    ]
