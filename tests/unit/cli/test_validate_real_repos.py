"""``capstan validate`` on manifests written as real repositories write them (issue 17).

Each test writes a small repository the way public repositories and tools (Helm, kubectl
export, Kustomize) lay it out and runs the command a user runs on it.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.source import load_repository
from schemas import ClusterRole, ClusterRoleBinding, Deployment, Service
from tests.unit.source.source_testdata import write_files


def validate(root: Path, *args: str):
    return CliRunner().invoke(cli, ["validate", str(root), *args])


HELM_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations: null
  labels: null
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
    spec:
      containers:
        - name: web
          image: nginx:1.27
          resources: null
"""

METRICS_SERVER_RBAC = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:metrics-server
rules:
  - apiGroups: [""]
    resources: [nodes/metrics]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:metrics-server
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:metrics-server
subjects:
  - kind: ServiceAccount
    name: metrics-server
    namespace: kube-system
"""

LONG_PORT_NAME = "http-metrics-and-prometheus-scrape"
SERVICE_LONG_PORT_NAME = f"""\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports:
    - name: {LONG_PORT_NAME}
      port: 9090
    - name: http
      port: 80
"""


def test_null_labels_and_annotations_mean_empty(tmp_path: Path):
    root = write_files(tmp_path, {"web.yaml": HELM_DEPLOYMENT})
    result = validate(root)
    assert result.exit_code == 0, result.output
    deployment = load_repository(root).objects[0].obj
    assert isinstance(deployment, Deployment)
    assert deployment.metadata.annotations == {}
    assert deployment.metadata.labels == {}
    assert deployment.spec.template.spec.containers[0].resources.limits == {}


def test_rbac_names_may_hold_colons_as_kubernetes_allows(tmp_path: Path):
    root = write_files(tmp_path, {"rbac.yaml": METRICS_SERVER_RBAC})
    result = validate(root)
    assert result.exit_code == 0, result.output
    objects = {type(item.obj): item.obj for item in load_repository(root).objects}
    assert objects[ClusterRole].name == "system:metrics-server"
    binding = objects[ClusterRoleBinding]
    assert isinstance(binding, ClusterRoleBinding)
    assert binding.role_ref.name == "system:metrics-server"


def test_rbac_names_still_refuse_slashes(tmp_path: Path):
    root = write_files(
        tmp_path, {"rbac.yaml": METRICS_SERVER_RBAC.replace("system:metrics", "a/b", 1)}
    )
    result = validate(root)
    assert result.exit_code == 1
    assert "rbac.yaml:4:3: metadata.name: 'a/b-server': may not contain '/'" in result.output


def test_service_port_names_may_be_63_characters(tmp_path: Path):
    root = write_files(tmp_path, {"svc.yaml": SERVICE_LONG_PORT_NAME})
    result = validate(root)
    assert result.exit_code == 0, result.output
    service = load_repository(root).objects[0].obj
    assert isinstance(service, Service)
    assert service.spec.ports[0].name == LONG_PORT_NAME


def test_container_port_names_keep_the_15_character_limit(tmp_path: Path):
    text = HELM_DEPLOYMENT.replace(
        "          resources: null\n",
        f"          ports:\n            - name: {LONG_PORT_NAME}\n"
        "              containerPort: 80\n",
    )
    root = write_files(tmp_path, {"web.yaml": text})
    result = validate(root)
    assert result.exit_code == 1
    assert "ports[0].name" in result.output
    assert "no more than 15 characters" in result.output


def namespaced_configmap(namespace: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: {namespace}\n"


def test_kubernetes_namespaces_exist_without_a_manifest(tmp_path: Path):
    root = write_files(
        tmp_path,
        {
            "rbac.yaml": METRICS_SERVER_RBAC,
            "system.yaml": namespaced_configmap("kube-system"),
            "public.yaml": namespaced_configmap("kube-public"),
        },
    )
    result = validate(root)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    kinds = [item.obj.kind for item in load_repository(root).objects]
    assert "Namespace" not in kinds


def test_a_namespace_used_but_not_defined_is_created_with_a_warning_naming_the_file(
    tmp_path: Path,
):
    root = write_files(tmp_path, {"apps/cm.yaml": namespaced_configmap("shop")})
    result = validate(root)
    assert result.exit_code == 0, result.output
    assert (
        f"warning: {root}/apps/cm.yaml:5:3: metadata.namespace: namespace 'shop' is not "
        "defined in the repository; Capstan creates it" in result.output
    )
    assert "add namespaces/shop.yaml with: apiVersion: v1, kind: Namespace" in result.output
    keys = [str(item.obj.key) for item in load_repository(root).objects]
    assert keys == ["Namespace/shop", "ConfigMap/shop/c"]


# --- messages: what to write instead, in plain words -----------------------------------------

PYDANTIC_PHRASES = (
    "Input should",
    "input should",
    "should have",
    "after validation",
    "valid dictionary",
    "Value error",
    "Extra inputs",
    "instance of",
    "unable to parse",
    "remove it",
    "schemas/",
)

BAD_VALUES = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: [app, web]
spec:
  replicas: two
  paused: "yes"
  strategy:
    type: Sometimes
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: -1
      runtimeClassName: gvisor
      initContainers: []
      containers:
        - name: web
          image: ""
          args: "--port=80"
          readinessProbe:
            periodSeconds: 0
            tcpSocket: {port: 80}
"""


def test_errors_are_worded_for_people_not_in_pydantics_words(tmp_path: Path):
    root = write_files(tmp_path, {"web.yaml": BAD_VALUES})
    result = validate(root)
    assert result.exit_code == 1
    lines = result.output.replace(f"{root}/", "").splitlines()
    for phrase in PYDANTIC_PHRASES:
        assert phrase not in result.output, phrase
    expected = [
        "web.yaml:5:3: metadata.labels: must be a mapping",
        "web.yaml:7:3: spec.replicas: must be an integer (got 'two')",
        "web.yaml:8:3: spec.paused: must be true or false (got 'yes')",
        "web.yaml:10:5: spec.strategy.type: must be 'RollingUpdate' or 'Recreate' "
        "(got 'Sometimes')",
        "web.yaml:17:7: spec.template.spec.terminationGracePeriodSeconds: must be 0 or more",
        "web.yaml:22:11: spec.template.spec.containers[0].image: must not be empty",
        "web.yaml:23:11: spec.template.spec.containers[0].args: must be a list (got '--port=80')",
        "web.yaml:25:13: spec.template.spec.containers[0].readinessProbe.periodSeconds: "
        "must be 1 or more",
    ]
    for line in expected:
        assert line in lines, (line, lines)
    (runtime,) = [line for line in lines if "runtimeClassName" in line]
    assert runtime.startswith("web.yaml:18:7: spec.template.spec.runtimeClassName: not supported")
    assert "with the node's default Docker runtime" in runtime
    assert "`capstan schema Deployment` prints every field Capstan reads" in runtime


def test_capstan_schema_prints_the_fields_the_messages_point_at():
    result = CliRunner().invoke(cli, ["schema", "deployment"])
    assert result.exit_code == 0, result.output
    assert '"serviceAccountName"' in result.output
    listing = CliRunner().invoke(cli, ["schema"])
    assert "Deployment\tapps/v1" in listing.output.splitlines()
    unknown = CliRunner().invoke(cli, ["schema", "Gateway"])
    assert unknown.exit_code != 0
    assert "unknown kind 'Gateway'; supported: Namespace" in unknown.output


# --- what is skipped, and why ----------------------------------------------------------------


def test_a_folder_starting_with_underscore_is_read(tmp_path: Path):
    root = write_files(
        tmp_path,
        {"_base/cm.yaml": namespaced_configmap("default"), "_base/meta.j2": "{{ undefined }}"},
    )
    result = validate(root)
    assert result.exit_code == 0, result.output
    assert [str(item.obj.key) for item in load_repository(root).objects] == ["ConfigMap/default/c"]


def test_validate_verbose_lists_what_it_skipped_and_why(tmp_path: Path):
    root = write_files(
        tmp_path,
        {
            "cm.yaml": namespaced_configmap("default"),
            "_helpers.j2": "{% macro x() %}{% endmacro %}",
            "old/cm.yaml": "broken: [\n",
            "README.md": "# docs\n",
            ".github/workflows/ci.yml": "broken: [\n",
            ".capstanignore": "old/\n",
        },
    )
    result = validate(root, "-v")
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped")]
    assert skipped == [
        f"skipped {root}/.capstanignore: lists the paths to skip",
        f"skipped {root}/.github: hidden (never read)",
        f"skipped {root}/README.md: not a manifest (.yaml, .yml or .j2)",
        f"skipped {root}/_helpers.j2: a template partial (a '_' name or folder): read only "
        "when a template includes it",
        f"skipped {root}/old: matches 'old/' in .capstanignore",
    ]
    quiet = validate(root)
    assert "skipped" not in quiet.output


def test_exported_status_is_accepted_and_not_desired_state(tmp_path: Path):
    exported = (
        HELM_DEPLOYMENT
        + "status: {}\n---\n"
        + SERVICE_LONG_PORT_NAME.replace("spec:\n", "spec:\n  type: LoadBalancer\n")
        + "status:\n  loadBalancer: {}\n"
    )
    root = write_files(tmp_path, {"exported.yaml": exported})
    result = validate(root)
    assert result.exit_code == 0, result.output
    objects = {item.obj.kind: item.obj for item in load_repository(root).objects}
    service = objects["Service"]
    assert isinstance(service, Service)
    assert service.spec.type == "LoadBalancer"
    assert service.status is None
    assert objects["Deployment"].to_dict().get("status") is None
