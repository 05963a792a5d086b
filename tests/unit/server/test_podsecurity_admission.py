"""Pod Security admission through the HTTP API: 403 naming the field and the level."""

from __future__ import annotations

import copy

import pytest

from reconciler.api import Api, Forbidden
from schemas import Namespace, ObjectMeta
from schemas.podsecurity import ENFORCE_LABEL
from tests.unit.server.conftest import assert_status

DEPLOYMENTS = "/apis/apps/v1/namespaces/shop/deployments"
PODS = "/api/v1/namespaces/shop/pods"
ADD = "spec.template.spec.containers[0].securityContext.capabilities.add[0]"


def deployment(**context: object) -> dict:
    container: dict = {"name": "app", "image": "capstan.local/busybox:1"}
    if context:
        container["securityContext"] = context
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [container]},
            },
        },
    }


def label(api: Api, level: str) -> None:
    namespace = api.get(Namespace, "shop")
    labels = {**namespace.metadata.labels, ENFORCE_LABEL: level}
    api.update(
        namespace.model_copy(
            update={"metadata": namespace.metadata.model_copy(update={"labels": labels})}
        )
    )


def test_create_with_an_added_capability_is_forbidden_naming_field_and_level(admin):
    response = admin.post(DEPLOYMENTS, json=deployment(capabilities={"add": ["SYS_ADMIN"]}))
    body = assert_status(response, 403, "Forbidden")
    assert body["message"] == (
        'Deployment "web" is forbidden: violates PodSecurity "baseline:latest": non-default '
        'capabilities (container "app" must not include "SYS_ADMIN" in '
        "securityContext.capabilities.add)"
    )
    [cause] = body["details"]["causes"]
    assert cause["field"] == ADD
    assert 'violates PodSecurity "baseline:latest"' in cause["message"]
    assert admin.get(f"{DEPLOYMENTS}/web").status_code == 404


def test_a_pod_asking_for_host_network_is_forbidden(admin):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {
            "hostNetwork": True,
            "containers": [{"name": "app", "image": "capstan.local/busybox:1"}],
        },
    }
    body = assert_status(admin.post(PODS, json=pod), 403, "Forbidden")
    assert body["details"]["causes"][0]["field"] == "spec.hostNetwork"


def test_host_path_and_host_pid_are_forbidden_below_privileged(admin, api):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {
            "hostPID": True,
            "hostIPC": True,
            "volumes": [{"name": "logs", "hostPath": {"path": "/var/log", "type": "Directory"}}],
            "containers": [
                {
                    "name": "app",
                    "image": "capstan.local/busybox:1",
                    "volumeMounts": [
                        {
                            "name": "logs",
                            "mountPath": "/logs",
                            "mountPropagation": "HostToContainer",
                        }
                    ],
                }
            ],
        },
    }
    body = assert_status(admin.post(PODS, json=pod), 403, "Forbidden")
    assert body["message"] == (
        'Pod "p" is forbidden: violates PodSecurity "baseline:latest": host namespaces '
        '(hostPID=true, hostIPC=true), hostPath volumes (volume "logs")'
    )
    assert [c["field"] for c in body["details"]["causes"]] == [
        "spec.hostPID",
        "spec.hostIPC",
        "spec.volumes[0].hostPath",
    ]
    label(api, "privileged")
    created = admin.post(PODS, json=pod)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["volumes"][0]["hostPath"] == {
        "path": "/var/log",
        "type": "Directory",
    }


def test_an_update_that_adds_a_capability_is_forbidden(admin):
    created = admin.post(DEPLOYMENTS, json=deployment())
    assert created.status_code == 201, created.text
    hostile = copy.deepcopy(created.json())
    container = hostile["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"] = {"capabilities": {"add": ["ALL"]}}
    body = assert_status(admin.put(f"{DEPLOYMENTS}/web", json=hostile), 403, "Forbidden")
    assert body["details"]["causes"][0]["field"] == ADD
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "capstan.local/busybox:1",
                            "securityContext": {"privileged": True},
                        }
                    ]
                }
            }
        }
    }
    body = assert_status(
        admin.patch(
            f"{DEPLOYMENTS}/web",
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        ),
        403,
        "Forbidden",
    )
    assert "privileged" in body["message"]
    stored = admin.get(f"{DEPLOYMENTS}/web").json()
    assert "securityContext" not in stored["spec"]["template"]["spec"]["containers"][0]


def test_the_namespace_label_sets_the_level(admin, api):
    label(api, "restricted")
    body = assert_status(admin.post(DEPLOYMENTS, json=deployment()), 403, "Forbidden")
    assert 'violates PodSecurity "restricted:latest"' in body["message"]
    fields = {c["field"] for c in body["details"]["causes"]}
    assert "spec.template.spec.containers[0].securityContext.runAsNonRoot" in fields
    restricted = deployment(
        runAsNonRoot=True,
        allowPrivilegeEscalation=False,
        capabilities={"drop": ["ALL"]},
        seccompProfile={"type": "RuntimeDefault"},
    )
    assert admin.post(DEPLOYMENTS, json=restricted).status_code == 201
    label(api, "privileged")
    hostile = deployment(capabilities={"add": ["SYS_ADMIN"]})
    hostile["metadata"]["name"] = "tools"
    assert admin.post(DEPLOYMENTS, json=hostile).status_code == 201


def test_an_update_leaving_the_pod_spec_alone_is_not_judged_again(api):
    created = api.create(deployment())
    label(api, "restricted")
    labels = {"team": "a"}
    relabelled = api.update(
        created.model_copy(
            update={"metadata": created.metadata.model_copy(update={"labels": labels})}
        )
    )
    assert relabelled.metadata.labels == labels


def test_an_invalid_level_label_is_refused(admin):
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "tools", "labels": {ENFORCE_LABEL: "none"}},
    }
    body = assert_status(admin.post("/api/v1/namespaces", json=namespace), 422, "Invalid")
    assert body["details"]["causes"][0]["field"].startswith("metadata.labels")


def test_controllers_writing_through_the_api_are_held_to_it_too(api):
    api.create(Namespace(metadata=ObjectMeta(name="tools")))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "tools"},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "capstan.local/busybox:1",
                    "securityContext": {"privileged": True},
                }
            ]
        },
    }
    with pytest.raises(Forbidden) as refused:
        api.create(pod)
    assert refused.value.causes[0].field == "spec.containers[0].securityContext.privileged"


def _privileged_template(restart: str) -> dict:
    return {
        "metadata": {"labels": {"app": "w"}},
        "spec": {
            "restartPolicy": restart,
            "containers": [
                {
                    "name": "w",
                    "image": "capstan.local/busybox:1",
                    "securityContext": {"privileged": True},
                }
            ],
        },
    }


WORKLOADS = {
    "daemonsets": (
        "/apis/apps/v1/namespaces/shop/daemonsets",
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "spec": {
                "selector": {"matchLabels": {"app": "w"}},
                "template": _privileged_template("Always"),
            },
        },
        "spec.template.spec",
    ),
    "statefulsets": (
        "/apis/apps/v1/namespaces/shop/statefulsets",
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "spec": {
                "serviceName": "w",
                "selector": {"matchLabels": {"app": "w"}},
                "template": _privileged_template("Always"),
            },
        },
        "spec.template.spec",
    ),
    "jobs": (
        "/apis/batch/v1/namespaces/shop/jobs",
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "spec": {"template": _privileged_template("Never")},
        },
        "spec.template.spec",
    ),
    "cronjobs": (
        "/apis/batch/v1/namespaces/shop/cronjobs",
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {"spec": {"template": _privileged_template("Never")}},
            },
        },
        "spec.jobTemplate.spec.template.spec",
    ),
}


@pytest.mark.parametrize("resource", sorted(WORKLOADS))
def test_every_kind_that_makes_pods_is_admitted_by_the_level(admin, resource):
    path, body, spec_path = WORKLOADS[resource]
    body = {**copy.deepcopy(body), "metadata": {"name": "w", "namespace": "shop"}}
    refused = assert_status(admin.post(path, json=body), 403, "Forbidden")
    [cause] = refused["details"]["causes"]
    assert cause["field"] == f"{spec_path}.containers[0].securityContext.privileged"
    assert admin.get(f"{path}/w").status_code == 404
