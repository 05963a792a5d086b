"""parse_object / model_for / to_dict, the corpus of real manifests, round trips."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from schemas import (
    SUPPORTED_KINDS,
    ConfigMap,
    Deployment,
    KubeObject,
    Secret,
    Service,
    UnsupportedKindError,
    model_for,
    parse_object,
)
from tests.fixtures.corpus import SHARED_CORPUS, require_shared_corpus

# A copy of ../shared/corpus (real published manifests, unchanged) so that a fresh clone has it.
CORPUS = Path(__file__).parent / "corpus"
CORPUS_FILES = sorted(CORPUS.glob("*/*.yaml")) + sorted(CORPUS.glob("*/*.yml"))


def test_supported_kinds():
    assert set(SUPPORTED_KINDS) == {
        ("v1", "Namespace"),
        ("v1", "Pod"),
        ("v1", "Service"),
        ("v1", "ServiceAccount"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Node"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "StatefulSet"),
        ("v1", "PersistentVolumeClaim"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("networking.k8s.io/v1", "Ingress"),
        ("networking.k8s.io/v1", "IngressClass"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
    }
    for api_version, kind in SUPPORTED_KINDS:
        model = model_for(api_version, kind)
        assert issubclass(model, KubeObject)
        assert model.model_fields["kind"].default == kind
        assert model.model_fields["api_version"].default == api_version


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("v1", "Ingress"),
        ("batch/v1beta1", "CronJob"),
        ("v1", "Deployment"),
        ("apps/v2", "Deployment"),
        ("extensions/v1beta1", "Deployment"),
    ],
)
def test_unsupported_kinds_list_the_supported_ones(api_version, kind):
    with pytest.raises(UnsupportedKindError) as info:
        parse_object({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}})
    assert (info.value.api_version, info.value.kind) == (api_version, kind)
    assert "apps/v1/Deployment" in str(info.value)
    assert "v1/ConfigMap" in str(info.value)
    with pytest.raises(UnsupportedKindError):
        model_for(api_version, kind)


@pytest.mark.parametrize(
    ("doc", "loc", "error_type"),
    [
        ({"kind": "Pod"}, ("apiVersion",), "missing"),
        ({"apiVersion": "v1"}, ("kind",), "missing"),
        ({"apiVersion": 1, "kind": "Pod"}, ("apiVersion",), "string_type"),
        ({"apiVersion": "v1", "kind": ["Pod"]}, ("kind",), "string_type"),
        (["not", "a", "mapping"], (), "object_type"),
    ],
)
def test_documents_without_a_type(doc, loc, error_type):
    with pytest.raises(ValidationError) as info:
        parse_object(doc)
    (error,) = info.value.errors()
    assert (error["loc"], error["type"]) == (loc, error_type)


def test_parse_object_does_not_default_the_namespace(deployment):
    del deployment["metadata"]["namespace"]
    obj = parse_object(deployment)
    assert obj.metadata.namespace is None
    assert obj.key == ("Deployment", "", "web")


def test_corpus_is_present_and_unchanged():
    assert len(CORPUS_FILES) >= 3
    require_shared_corpus()
    shared = sorted(p.relative_to(SHARED_CORPUS) for p in SHARED_CORPUS.glob("*/*.y*ml"))
    assert [p.relative_to(CORPUS) for p in CORPUS_FILES] == shared
    for relative in shared:
        assert (CORPUS / relative).read_bytes() == (SHARED_CORPUS / relative).read_bytes()


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_corpus_document_parses_and_round_trips(path):
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert docs
    for doc in docs:
        obj = parse_object(doc)
        again = parse_object(obj.to_dict())
        assert again == obj
        assert again.to_dict() == obj.to_dict()


def test_corpus_quirks():
    docs = {}
    for path in CORPUS_FILES:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            obj = parse_object(doc)
            docs[(path.parent.name, obj.kind, obj.name)] = obj
    ui = docs[("argocd-example-apps-guestbook", "Deployment", "guestbook-ui")]
    assert isinstance(ui, Deployment)
    memory = ui.spec.template.spec.containers[0].resources.requests["memory"]
    assert (memory.text, memory.bytes) == ("100m", 1)
    replica = docs[("kubernetes-examples-guestbook", "Service", "redis-replica")]
    assert isinstance(replica, Service)
    assert replica.spec.ports[0].target_port == 6379
    frontend = docs[("kubernetes-examples-guestbook", "Service", "frontend")]
    assert frontend.spec.type == "NodePort"


def test_to_dict_is_the_manifest_form(deployment):
    obj = parse_object(deployment)
    data = obj.to_dict()
    container = data["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "128Mi"}
    assert container["readinessProbe"]["httpGet"]["port"] == "http"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert "env" not in container  # empty defaults are left out
    assert "annotations" not in data["metadata"]
    assert data["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    assert parse_object(data) == obj
    assert parse_object(data).to_dict() == data


def test_to_dict_keeps_meaningful_empty_values(pod):
    pod["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    data = parse_object(pod).to_dict()
    assert data["spec"]["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert parse_object(data) == parse_object(pod)


def test_snake_case_names_construct_too():
    obj = ConfigMap.model_validate({"metadata": {"name": "c"}, "binary_data": {"k": "AAEC"}})
    assert obj.to_dict() == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "binaryData": {"k": "AAEC"},
    }


def test_pod_with_status_round_trips(pod):
    pod["status"] = {
        "phase": "Running",
        "hostIP": "127.0.0.2",
        "podIP": "172.17.0.5",
        "startTime": "2026-11-27T17:00:00Z",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-27T17:00:05Z"}
        ],
        "containerStatuses": [
            {
                "name": "main",
                "ready": True,
                "restartCount": 2,
                "image": "capstan.local/busybox:1",
                "containerID": "docker://abc",
                "state": {"running": {"startedAt": "2026-11-27T17:00:01Z"}},
                "lastState": {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "OOMKilled",
                        "finishedAt": "2026-11-27T17:00:00Z",
                    }
                },
            },
        ],
        "hostPorts": [
            {
                "containerName": "main",
                "containerPort": 8080,
                "hostIP": "127.0.0.2",
                "hostPort": 31080,
            }
        ],
    }
    obj = parse_object(pod)
    assert obj.status.ready
    assert obj.status.container_statuses[0].last_state.terminated.exit_code == 137
    assert obj.status.host_ports[0].protocol == "TCP"
    assert parse_object(obj.to_dict()) == obj
    assert obj.to_dict()["status"]["hostPorts"][0]["hostIP"] == "127.0.0.2"


def test_container_state_is_at_most_one(pod, error_locs):
    pod["status"] = {
        "containerStatuses": [
            {
                "name": "main",
                "image": "x",
                "state": {"waiting": {"reason": "ContainerCreating"}, "running": {}},
            }
        ]
    }
    assert error_locs(pod) == {("status", "containerStatuses", 0, "state"): "one_of"}


def test_deployment_and_replicaset_status(deployment):
    deployment["status"] = {
        "observedGeneration": 4,
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "unavailableReplicas": 1,
        "conditions": [
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "lastUpdateTime": "2026-11-27T17:00:00Z",
            }
        ],
    }
    obj = parse_object(deployment)
    assert obj.status.ready_replicas == 2
    assert parse_object(obj.to_dict()) == obj


def test_configmap_data(error_locs):
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"app.conf": "x=1\n"},
        "binaryData": {"logo.png": "iVBORw0KGgo="},
    }
    assert parse_object(doc).data == {"app.conf": "x=1\n"}
    doc["binaryData"] = {"bad": "***", "app.conf": "AA=="}
    assert error_locs(doc) == {("binaryData", "bad"): "base64"}
    doc["binaryData"] = {"app.conf": "AA=="}
    assert error_locs(doc) == {("binaryData", "app.conf"): "duplicate_key"}
    doc["binaryData"] = {}
    doc["data"] = {"bad/key": "x"}
    assert list(error_locs(doc)) == [("data", "bad/key", "[key]")]


def test_secret_values_never_appear_in_errors_or_repr():
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"password": "hunter2-not-base64!"},
        "stringData": {"token": 12345},
    }
    with pytest.raises(ValidationError) as info:
        parse_object(doc)
    text = str(info.value) + repr(info.value.errors())
    assert "hunter2" not in text
    assert "12345" not in text
    assert {tuple(e["loc"]) for e in info.value.errors()} == {
        ("data", "password"),
        ("stringData", "token"),
    }
    good = parse_object(
        {**doc, "data": {"password": "aHVudGVyMg=="}, "stringData": {"token": "t0k3n"}}
    )
    assert isinstance(good, Secret)
    assert "aHVudGVyMg" not in repr(good)
    assert "t0k3n" not in repr(good)
    assert good.decoded() == {"password": b"hunter2", "token": b"t0k3n"}
