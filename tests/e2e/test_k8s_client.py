"""The official clients against a real ``capstan up --listen``: the Python ``kubernetes``
client on every kind Capstan serves, and kubectl's server-side apply, ``auth can-i --list``
and ``--as``.

One ``capstan up`` per module (``cluster`` in conftest: a Git repository with a node, a
Deployment of two pods and its ConfigMap, a Role bound to the default service account);
``capstan kubeconfig`` writes the kubeconfig both clients use. The Python client decodes
every answer into its typed models, so a field Kubernetes guarantees (a string that is
null, a missing required field) fails the call itself. Each kind's row runs the whole
cycle on an object of its own: create, read, list, watch, strategic / merge / JSON patch,
server-side apply (a conflict, then ``force``), delete; a write that creates answers 201.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    AutoscalingV2Api,
    BatchV1Api,
    CoreV1Api,
    NetworkingV1Api,
    PolicyV1Api,
    RbacAuthorizationV1Api,
    SchedulingV1Api,
)
from kubernetes.client.exceptions import ApiException

from reconciler.api.server._resources import RESOURCES
from tests.e2e.conftest import Cluster
from tests.fixtures.waiting import wait_until

NAMESPACE = "default"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


# -- every kind through the Python client ---------------------------------------------------

_CONTAINERS = [{"name": "main", "image": "capstan.local/busybox:1", "command": ["sleep", "3600"]}]


def _template(app: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}}, "spec": {"containers": _CONTAINERS, **spec}}


def _selector(app: str) -> dict[str, Any]:
    return {"matchLabels": {"app": app}}


_SUBJECTS = [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]
_VIEW = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
_RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]


@dataclass(frozen=True)
class Kind:
    """A kind and how the client names it: ``{verb}_namespaced_{suffix}`` or
    ``{verb}_{suffix}`` on ``api``; ``spec`` builds the object's body (None: read-only)."""

    api_version: str
    kind: str
    api: type
    suffix: str
    namespaced: bool
    spec: Callable[[str], dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def method(
        self, client: ApiClient, verb: str, *, http_info: bool = False
    ) -> Callable[..., Any]:
        scope = "namespaced_" if self.namespaced else ""
        info = "_with_http_info" if http_info else ""
        return getattr(self.api(client), f"{verb}_{scope}{self.suffix}{info}")

    def call(
        self, client: ApiClient, verb: str, *args: Any, http_info: bool = False, **kwargs: Any
    ) -> Any:
        """The client's answer; with ``http_info``, (answer, HTTP status, headers)."""
        method = self.method(client, verb, http_info=http_info)
        where = (NAMESPACE,) if self.namespaced else ()
        if verb in ("create", "list"):
            return method(*where, *args, **kwargs)
        name, *rest = args
        return method(name, *where, *rest, **kwargs)

    def manifest(self, name: str) -> dict[str, Any]:
        assert self.spec is not None
        metadata: dict[str, Any] = {"name": name, "labels": {"suite": "k8s-client"}}
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": metadata,
            **self.spec(name),
        }


KINDS = [
    Kind("v1", "Namespace", CoreV1Api, "namespace", False, lambda n: {}),
    Kind(
        "v1",
        "Pod",
        CoreV1Api,
        "pod",
        True,
        lambda n: {"spec": {"containers": _CONTAINERS, "terminationGracePeriodSeconds": 1}},
    ),
    Kind(
        "v1",
        "Service",
        CoreV1Api,
        "service",
        True,
        lambda n: {"spec": {"selector": {"app": n}, "ports": [{"port": 80, "targetPort": 8080}]}},
    ),
    Kind("v1", "ServiceAccount", CoreV1Api, "service_account", True, lambda n: {}),
    Kind("v1", "ConfigMap", CoreV1Api, "config_map", True, lambda n: {"data": {"a": "1"}}),
    Kind(
        "v1",
        "Secret",
        CoreV1Api,
        "secret",
        True,
        lambda n: {"type": "Opaque", "data": {"a": "MQ=="}},
    ),
    Kind(
        "v1",
        "PersistentVolumeClaim",
        CoreV1Api,
        "persistent_volume_claim",
        True,
        lambda n: {
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Mi"}},
            }
        },
    ),
    Kind(
        "apps/v1",
        "Deployment",
        AppsV1Api,
        "deployment",
        True,
        lambda n: {"spec": {"replicas": 0, "selector": _selector(n), "template": _template(n)}},
    ),
    Kind(
        "apps/v1",
        "ReplicaSet",
        AppsV1Api,
        "replica_set",
        True,
        lambda n: {"spec": {"replicas": 0, "selector": _selector(n), "template": _template(n)}},
    ),
    Kind(
        "apps/v1",
        "DaemonSet",
        AppsV1Api,
        "daemon_set",
        True,
        # No node has the label: the DaemonSet is stored and runs nothing.
        lambda n: {
            "spec": {
                "selector": _selector(n),
                "template": _template(n, nodeSelector={"example.com/none": "x"}),
            }
        },
    ),
    Kind(
        "apps/v1",
        "StatefulSet",
        AppsV1Api,
        "stateful_set",
        True,
        lambda n: {
            "spec": {
                "replicas": 0,
                "serviceName": n,
                "selector": _selector(n),
                "template": _template(n),
            }
        },
    ),
    Kind(
        "batch/v1",
        "Job",
        BatchV1Api,
        "job",
        True,
        lambda n: {
            "spec": {
                "suspend": True,
                "template": {"spec": {"containers": _CONTAINERS, "restartPolicy": "Never"}},
            }
        },
    ),
    Kind(
        "batch/v1",
        "CronJob",
        BatchV1Api,
        "cron_job",
        True,
        lambda n: {
            "spec": {
                "schedule": "0 0 1 1 *",
                "suspend": True,
                "jobTemplate": {
                    "spec": {
                        "template": {"spec": {"containers": _CONTAINERS, "restartPolicy": "Never"}}
                    }
                },
            }
        },
    ),
    Kind(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        AutoscalingV2Api,
        "horizontal_pod_autoscaler",
        True,
        lambda n: {
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": n},
                "minReplicas": 1,
                "maxReplicas": 2,
            }
        },
    ),
    Kind(
        "policy/v1",
        "PodDisruptionBudget",
        PolicyV1Api,
        "pod_disruption_budget",
        True,
        lambda n: {"spec": {"minAvailable": 1, "selector": _selector(n)}},
    ),
    Kind(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        NetworkingV1Api,
        "network_policy",
        True,
        lambda n: {"spec": {"podSelector": _selector(n), "policyTypes": ["Ingress"]}},
    ),
    Kind(
        "networking.k8s.io/v1",
        "Ingress",
        NetworkingV1Api,
        "ingress",
        True,
        lambda n: {
            "spec": {
                "ingressClassName": "capstan",
                "rules": [
                    {
                        "host": f"{n}.example.test",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": n, "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            }
        },
    ),
    Kind(
        "networking.k8s.io/v1",
        "IngressClass",
        NetworkingV1Api,
        "ingress_class",
        False,
        lambda n: {"spec": {"controller": "example.test/not-capstan"}},
    ),
    Kind(
        "rbac.authorization.k8s.io/v1",
        "Role",
        RbacAuthorizationV1Api,
        "role",
        True,
        lambda n: {"rules": _RULES},
    ),
    Kind(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        RbacAuthorizationV1Api,
        "role_binding",
        True,
        lambda n: {"subjects": _SUBJECTS, "roleRef": _VIEW},
    ),
    Kind(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        RbacAuthorizationV1Api,
        "cluster_role",
        False,
        lambda n: {"rules": _RULES},
    ),
    Kind(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        RbacAuthorizationV1Api,
        "cluster_role_binding",
        False,
        lambda n: {"subjects": _SUBJECTS, "roleRef": _VIEW},
    ),
    Kind(
        "scheduling.k8s.io/v1",
        "PriorityClass",
        SchedulingV1Api,
        "priority_class",
        False,
        lambda n: {"value": 1000},
    ),
]
#: Served, but not written over this suite: Nodes join from Git (a Node's spec holds where
#: to reach its agent), Events are read-only over HTTP (watching them is not served yet).
READ_ONLY = [
    Kind("v1", "Node", CoreV1Api, "node", False),
    Kind("v1", "Event", CoreV1Api, "event", True),
]


def test_every_served_kind_has_a_row():
    """A kind added to the server without a row here fails this test."""
    served = {(r.group, r.version, r.kind) for r in RESOURCES.values()}
    rows = {(*(k.api_version.rpartition("/")[::2]), k.kind) for k in (*KINDS, *READ_ONLY)}
    assert served == rows


def _name(kind: Kind) -> str:
    return f"py-{kind.kind.lower()[:20]}-{uuid.uuid4().hex[:6]}"


def _gone(kind: Kind, client: ApiClient, name: str) -> bool:
    try:
        kind.call(client, "read", name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        return True
    return False


def _watch_first(kind: Kind, client: ApiClient, name: str) -> tuple[str, Any]:
    where = (NAMESPACE,) if kind.namespaced else ()
    stream = watch.Watch()
    for event in stream.stream(
        kind.method(client, "list"),
        *where,
        field_selector=f"metadata.name={name}",
        timeout_seconds=20,
    ):
        stream.stop()
        return event["type"], event["object"]
    raise AssertionError(f"no watch event for {kind.kind} {name}")


@pytest.mark.parametrize("kind", KINDS, ids=[k.kind for k in KINDS])
def test_python_client_full_cycle(cluster: Cluster, kind: Kind) -> None:
    name = _name(kind)
    with cluster.client() as client:
        created, code, _headers = kind.call(client, "create", kind.manifest(name), http_info=True)
        try:
            assert code == 201
            assert created.metadata.name == name
            assert created.metadata.managed_fields[0].operation == "Update"
            assert kind.call(client, "read", name).metadata.uid == created.metadata.uid
            listed = kind.call(client, "list")
            assert name in [item.metadata.name for item in listed.items]
            if kind.namespaced:
                everywhere = getattr(kind.api(client), f"list_{kind.suffix}_for_all_namespaces")()
                assert name in [item.metadata.name for item in everywhere.items]
            event_type, obj = _watch_first(kind, client, name)
            assert (event_type, obj.metadata.name) == ("ADDED", name)

            strategic = kind.call(client, "patch", name, {"metadata": {"labels": {"py": "s"}}})
            assert strategic.metadata.labels["py"] == "s"
            merged = kind.call(
                client,
                "patch",
                name,
                {"metadata": {"annotations": {"note": "m"}}},
                _content_type=MERGE,
            )
            assert (merged.metadata.labels["py"], merged.metadata.annotations["note"]) == ("s", "m")
            patched = kind.call(
                client,
                "patch",
                name,
                [{"op": "replace", "path": "/metadata/labels/py", "value": "j"}],
            )
            assert patched.metadata.labels["py"] == "j"

            # Server-side apply: the label is the client's (an Update), so a second manager
            # setting it another way conflicts until it forces.
            config = kind.manifest(name)
            config["metadata"]["labels"]["py"] = "apply"
            body = config  # the client sends it as JSON, which is YAML
            with pytest.raises(ApiException) as caught:
                kind.call(
                    client, "patch", name, body, field_manager="py-apply", _content_type=APPLY
                )
            assert caught.value.status == 409
            status = json.loads(caught.value.body)
            assert status["reason"] == "Conflict"
            assert {c["field"] for c in status["details"]["causes"]} == {".metadata.labels.py"}
            applied, code, _headers = kind.call(
                client,
                "patch",
                name,
                body,
                field_manager="py-apply",
                force=True,
                _content_type=APPLY,
                http_info=True,
            )
            assert code == 200  # an apply that updates
            assert applied.metadata.labels["py"] == "apply"
            owners = {e.manager: e for e in applied.metadata.managed_fields}
            assert owners["py-apply"].operation == "Apply"
            # Applied again: nothing changes, not even the entries' times. (Whether the
            # resourceVersion stays is shown on kinds no controller writes the status of,
            # in test_kubectl_server_side_apply_twice_changes_nothing.)
            again = kind.call(
                client, "patch", name, body, field_manager="py-apply", _content_type=APPLY
            )
            assert again.metadata.generation == applied.metadata.generation
            assert again.metadata.managed_fields == applied.metadata.managed_fields
        finally:
            kind.call(client, "delete", name)
        wait_until(lambda: _gone(kind, client, name), timeout=60, what=f"{kind.kind} deleted")


@pytest.mark.parametrize("kind", KINDS, ids=[k.kind for k in KINDS])
def test_python_client_applies_a_new_object(cluster: Cluster, kind: Kind) -> None:
    """Server-side apply of an object that does not exist creates it: 201 Created, as
    Kubernetes answers."""
    name = _name(kind)
    with cluster.client() as client:
        try:
            created, code, _headers = kind.call(
                client,
                "patch",
                name,
                kind.manifest(name),
                field_manager="py-apply",
                _content_type=APPLY,
                http_info=True,
            )
            assert code == 201
            assert created.metadata.name == name
            assert [(e.manager, e.operation) for e in created.metadata.managed_fields] == [
                ("py-apply", "Apply")
            ]
        finally:
            kind.call(client, "delete", name)
        wait_until(lambda: _gone(kind, client, name), timeout=60, what=f"{kind.kind} deleted")


def test_python_client_replace_creates_only_kinds_kubernetes_creates_on_update(
    cluster: Cluster,
) -> None:
    """``replace`` (a PUT) of a missing Service or Role creates it (201), as Kubernetes'
    AllowCreateOnUpdate kinds do; of a missing ConfigMap it is 404."""
    service, role, configmap = (
        next(k for k in KINDS if k.kind == kind) for kind in ("Service", "Role", "ConfigMap")
    )
    with cluster.client() as client:
        for kind in (service, role):
            name = _name(kind)
            try:
                created, code, _headers = kind.call(
                    client, "replace", name, kind.manifest(name), http_info=True
                )
                assert (code, created.metadata.name) == (201, name)
                manifest = kind.manifest(name)
                manifest["metadata"]["resourceVersion"] = created.metadata.resource_version
                manifest["metadata"]["labels"]["py"] = "replaced"
                replaced, code, _headers = kind.call(
                    client, "replace", name, manifest, http_info=True
                )
                assert (code, replaced.metadata.uid) == (200, created.metadata.uid)
            finally:
                kind.call(client, "delete", name)
        name = _name(configmap)
        manifest = configmap.manifest(name)
        manifest["metadata"]["resourceVersion"] = "1"
        with pytest.raises(ApiException) as caught:
            configmap.call(client, "replace", name, manifest)
        assert caught.value.status == 404
        assert _gone(configmap, client, name)


def test_python_client_reads_nodes_and_events(cluster: Cluster) -> None:
    node, event = READ_ONLY
    with cluster.client() as client:
        nodes = node.call(client, "list").items
        assert [n.metadata.name for n in nodes] == ["local"]
        local = node.call(client, "read", "local")
        assert isinstance(local.status.node_info.boot_id, str)
        assert _watch_first(node, client, "local")[0] == "ADDED"
        with pytest.raises(ApiException) as caught:
            node.call(client, "patch", "local", {"metadata": {"labels": {"py": "s"}}})
        assert caught.value.status == 409
        assert "comes from Git" in caught.value.body
        events = event.call(client, "list").items
        assert events
        first = events[0].metadata.name
        assert event.call(client, "read", first).metadata.name == first
        assert CoreV1Api(client).list_event_for_all_namespaces().items


def test_python_client_pods_deserialize_with_their_status(cluster: Cluster) -> None:
    with cluster.client() as client:
        pods = CoreV1Api(client).list_namespaced_pod(NAMESPACE, label_selector="app=web").items
    assert len(pods) == 2
    for pod in pods:
        status = pod.status.container_statuses[0]
        assert (pod.status.phase, status.ready) == ("Running", True)
        assert isinstance(status.image_id, str)
        assert isinstance(status.container_id, str)


# -- kubectl: server-side apply --------------------------------------------------------------


def _configmap(name: str, **data: str) -> str:
    lines = "".join(f"  {key}: {value!r}\n" for key, value in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{lines}"


def _resource_version(cluster: Cluster, what: str) -> str:
    done = cluster.kubectl("get", what, "-o", "jsonpath={.metadata.resourceVersion}")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_kubectl_server_side_apply_twice_changes_nothing(cluster: Cluster, tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(_configmap("ssa-twice", mode="fast"))
    try:
        first = cluster.kubectl("apply", "--server-side", "-f", str(manifest))
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == "configmap/ssa-twice serverside-applied"
        version = _resource_version(cluster, "cm/ssa-twice")
        second = cluster.kubectl("apply", "--server-side", "-f", str(manifest))
        assert second.returncode == 0, second.stderr
        assert _resource_version(cluster, "cm/ssa-twice") == version
        fields = cluster.kubectl("get", "cm", "ssa-twice", "-o", "json", "--show-managed-fields")
        entries = json.loads(fields.stdout)["metadata"]["managedFields"]
        assert [(e["manager"], e["operation"], e["fieldsV1"]) for e in entries] == [
            ("kubectl", "Apply", {"f:data": {"f:mode": {}}})
        ]
        manifest.write_text(_configmap("ssa-twice", speed="slow"))
        third = cluster.kubectl("apply", "--server-side", "-f", str(manifest))
        assert third.returncode == 0, third.stderr
        data = cluster.kubectl("get", "cm", "ssa-twice", "-o", "jsonpath={.data}")
        assert json.loads(data.stdout) == {"speed": "slow"}  # mode is no longer applied
    finally:
        cluster.kubectl("delete", "-f", str(manifest))


def test_kubectl_server_side_apply_conflict_then_force(cluster: Cluster, tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(_configmap("ssa-conflict", owner="alice"))
    try:
        alice = cluster.kubectl(
            "apply", "--server-side", "--field-manager=alice", "-f", str(manifest)
        )
        assert alice.returncode == 0, alice.stderr
        manifest.write_text(_configmap("ssa-conflict", owner="bob"))
        bob = cluster.kubectl("apply", "--server-side", "--field-manager=bob", "-f", str(manifest))
        assert bob.returncode == 1
        assert 'Apply failed with 1 conflict: conflict with "alice" using v1: .data.owner' in (
            bob.stderr
        )
        assert "--force-conflicts" in bob.stderr  # kubectl's advice on a conflict
        forced = cluster.kubectl(
            "apply",
            "--server-side",
            "--field-manager=bob",
            "--force-conflicts",
            "-f",
            str(manifest),
        )
        assert forced.returncode == 0, forced.stderr
        read = cluster.kubectl("get", "cm", "ssa-conflict", "-o", "json", "--show-managed-fields")
        obj = json.loads(read.stdout)
        assert obj["data"] == {"owner": "bob"}
        assert [e["manager"] for e in obj["metadata"]["managedFields"]] == ["bob"]
    finally:
        cluster.kubectl("delete", "-f", str(manifest))


def test_kubectl_create_then_server_side_apply_conflicts_with_kubectl_create(
    cluster: Cluster, tmp_path: Path
) -> None:
    created = cluster.kubectl("create", "configmap", "ssa-created", "--from-literal=a=1")
    assert created.returncode == 0, created.stderr
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(_configmap("ssa-created", a="2"))
    try:
        applied = cluster.kubectl("apply", "--server-side", "-f", str(manifest))
        assert applied.returncode == 1
        assert 'conflict with "kubectl-create"' in applied.stderr, applied.stderr
    finally:
        cluster.kubectl("delete", "cm", "ssa-created")


def test_kubectl_server_side_apply_of_an_object_from_git_is_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(_configmap("page-v1", extra="x"))
    version = _resource_version(cluster, "cm/page-v1")
    done = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
    assert done.returncode == 1
    assert "comes from Git" in done.stderr, done.stderr
    assert _resource_version(cluster, "cm/page-v1") == version


def test_kubectl_client_side_apply_twice_keeps_the_last_applied_annotation(
    cluster: Cluster, tmp_path: Path
) -> None:
    manifest = tmp_path / "deploy.yaml"
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "csa-twice"},
        "spec": {"replicas": 0, "selector": _selector("csa"), "template": _template("csa")},
    }
    manifest.write_text(json.dumps(deployment))
    try:
        outputs = [cluster.kubectl("apply", "-f", str(manifest)) for _ in range(2)]
        assert [o.stdout.strip() for o in outputs] == [
            "deployment.apps/csa-twice created",
            "deployment.apps/csa-twice unchanged",
        ], [o.stderr for o in outputs]
        read = cluster.kubectl("get", "deploy", "csa-twice", "-o", "json")
        annotations = json.loads(read.stdout)["metadata"]["annotations"]
        last = json.loads(annotations["kubectl.kubernetes.io/last-applied-configuration"])
        assert last["spec"]["replicas"] == 0
    finally:
        cluster.kubectl("delete", "-f", str(manifest))


# -- kubectl auth can-i --list, --as -------------------------------------------------------


def _default_account_token(cluster: Cluster) -> str:
    with cluster.client() as client:
        secrets = CoreV1Api(client).list_namespaced_secret(
            NAMESPACE, field_selector="type=kubernetes.io/service-account-token"
        )
    return next(
        base64.b64decode(s.data["token"]).decode()
        for s in secrets.items
        if (s.metadata.annotations or {}).get("kubernetes.io/service-account.name") == "default"
    )


def test_kubectl_auth_can_i_list(cluster: Cluster) -> None:
    admin = cluster.kubectl("auth", "can-i", "--list")
    assert admin.returncode == 0, admin.stderr
    lines = [line.split() for line in admin.stdout.splitlines()]
    assert lines[0] == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    assert ["*.*", "[]", "[]", "[*]"] in lines
    token = wait_until(lambda: _default_account_token(cluster), what="the default token")
    account = cluster.kubectl("--token", token, "auth", "can-i", "--list")
    assert account.returncode == 0, account.stderr
    rows = [line.split() for line in account.stdout.splitlines()]
    assert ["configmaps", "[]", "[]", "[get]"] in rows
    assert not any(row[0] == "*.*" for row in rows)


@pytest.mark.parametrize(
    ("args", "code", "answer"),
    [
        (["create", "deployments", "--as=alice"], 1, "no"),
        (["get", "configmaps", "--as=system:serviceaccount:default:default"], 0, "yes"),
        (["delete", "pods", "--as=system:serviceaccount:default:default"], 1, "no"),
        (["delete", "pods", "--as=alice", "--as-group=system:masters"], 0, "yes"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_kubectl_auth_can_i_as(cluster: Cluster, args: list[str], code: int, answer: str) -> None:
    """The admin may impersonate anyone; the answer is then the impersonated user's."""
    done = cluster.kubectl("auth", "can-i", *args)
    assert (done.returncode, done.stdout.strip()) == (code, answer), done.stderr


def test_kubectl_as_without_the_impersonate_verb_is_refused(cluster: Cluster) -> None:
    token = wait_until(lambda: _default_account_token(cluster), what="the default token")
    done = cluster.kubectl("--token", token, "--as=alice", "get", "configmaps")
    assert done.returncode == 1
    assert 'cannot impersonate resource "users"' in done.stderr, done.stderr
