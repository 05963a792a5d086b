"""Each rule, broken once: the error is at the exact Kubernetes field path."""

import pytest

from schemas import parse_object

C0 = ("spec", "template", "spec", "containers", 0)


def _container(doc):
    return doc["spec"]["template"]["spec"]["containers"][0]


def test_the_good_deployment_is_valid(deployment):
    assert parse_object(deployment).key == ("Deployment", "shop", "web")


def test_unknown_field_is_an_error_at_its_path(deployment, error_locs):
    _container(deployment)["imagePolicy"] = "Always"
    deployment["spec"]["replica"] = 3
    assert error_locs(deployment) == {
        (*C0, "imagePolicy"): "extra_forbidden",
        ("spec", "replica"): "extra_forbidden",
    }


def test_unknown_top_level_field(pod, error_locs):
    pod["specs"] = {}
    assert error_locs(pod) == {("specs",): "extra_forbidden"}


def test_wrong_type_is_not_coerced(deployment, error_locs):
    deployment["spec"]["replicas"] = "3"
    _container(deployment)["ports"][0]["containerPort"] = 80.0
    assert error_locs(deployment) == {
        ("spec", "replicas"): "int_type",
        (*C0, "ports", 0, "containerPort"): "int_type",
    }


def test_missing_required_field(deployment, error_locs):
    del _container(deployment)["image"]
    assert error_locs(deployment) == {(*C0, "image"): "missing"}


def test_selector_must_match_template_labels(deployment, error_locs):
    deployment["spec"]["selector"]["matchLabels"] = {"app": "api"}
    assert error_locs(deployment) == {
        ("spec", "template", "metadata", "labels"): "selector_mismatch"
    }


def test_selector_expressions_are_checked_too(deployment, error_locs):
    deployment["spec"]["selector"] = {
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]
    }
    assert error_locs(deployment) == {
        ("spec", "template", "metadata", "labels"): "selector_mismatch"
    }


def test_empty_selector_is_refused(deployment, error_locs):
    deployment["spec"]["selector"] = {}
    assert error_locs(deployment) == {("spec", "selector"): "empty_selector"}


def test_deployment_pods_must_restart_always(deployment, error_locs):
    deployment["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert error_locs(deployment) == {
        ("spec", "template", "spec", "restartPolicy"): "restart_policy"
    }


def test_container_names_are_unique(pod, error_locs):
    pod["spec"]["containers"].append({"name": "main", "image": "x:1"})
    assert error_locs(pod) == {("spec", "containers", 1, "name"): "duplicate_container"}


def test_init_container_names_clash_with_containers(pod, error_locs):
    pod["spec"]["initContainers"] = [{"name": "main", "image": "x:1"}]
    assert error_locs(pod) == {("spec", "containers", 0, "name"): "duplicate_container"}


def test_port_names_are_unique_within_the_pod(pod, error_locs):
    pod["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 80}]
    pod["spec"]["containers"].append(
        {"name": "side", "image": "x:1", "ports": [{"name": "http", "containerPort": 81}]}
    )
    assert error_locs(pod) == {("spec", "containers", 1, "ports", 0, "name"): "duplicate_port_name"}


def test_a_port_number_may_be_listed_twice_but_published_once(pod, error_locs):
    """As Kubernetes (a warning only): ingress-nginx's AWS NLB manifest lists port 80 as both
    ``http`` and ``https``. Two hostPorts for one container port Capstan cannot publish."""
    pod["spec"]["containers"][0]["ports"] = [
        {"containerPort": 80, "name": "http"},
        {"containerPort": 80, "name": "https", "protocol": "TCP"},
        {"containerPort": 53, "hostPort": 5353},
        {"containerPort": 53, "protocol": "UDP", "hostPort": 5353},
    ]
    assert parse_object(pod).spec.containers[0].ports[1].name == "https"  # type: ignore[attr-defined]
    pod["spec"]["containers"][0]["ports"].append({"containerPort": 53, "hostPort": 5354})
    assert error_locs(pod) == {
        ("spec", "containers", 0, "ports", 4, "containerPort"): "duplicate_port"
    }


def test_probe_named_port_must_exist(deployment, error_locs):
    _container(deployment)["livenessProbe"] = {"tcpSocket": {"port": "admin"}}
    assert error_locs(deployment) == {(*C0, "livenessProbe", "tcpSocket", "port"): "probe_port"}


def test_probe_needs_exactly_one_handler(deployment, error_locs):
    _container(deployment)["livenessProbe"] = {
        "exec": {"command": ["true"]},
        "tcpSocket": {"port": 8080},
    }
    assert error_locs(deployment) == {(*C0, "livenessProbe"): "one_of"}


def test_liveness_success_threshold_must_be_one(deployment, error_locs):
    _container(deployment)["livenessProbe"] = {"exec": {"command": ["true"]}, "successThreshold": 2}
    assert error_locs(deployment) == {
        (*C0, "livenessProbe", "successThreshold"): "probe_success_threshold"
    }


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_container_port_range(pod, port, error_locs):
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": port}]
    locs = error_locs(pod)
    assert list(locs) == [("spec", "containers", 0, "ports", 0, "containerPort")]


@pytest.mark.parametrize("port", [0, 70000])
def test_service_port_range(service, port, error_locs):
    service["spec"]["ports"][0]["port"] = port
    assert list(error_locs(service)) == [("spec", "ports", 0, "port")]


@pytest.mark.parametrize("node_port", [29999, 32768, 80])
def test_node_port_range(service, node_port, error_locs):
    service["spec"].update(type="NodePort", ports=[{"port": 80, "nodePort": node_port}])
    assert error_locs(service) == {("spec", "ports", 0, "nodePort"): "node_port_range"}


def test_node_port_in_range_is_valid(service):
    service["spec"].update(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    assert parse_object(service).spec.ports[0].node_port == 30080


def test_node_port_needs_node_port_type(service, error_locs):
    service["spec"]["ports"][0]["nodePort"] = 30080
    assert error_locs(service) == {("spec", "ports", 0, "nodePort"): "node_port_type"}


def test_service_type_external_name_is_unsupported(service, error_locs):
    service["spec"]["type"] = "ExternalName"
    assert error_locs(service) == {("spec", "type"): "literal_error"}


def test_several_service_ports_need_unique_names(service, error_locs):
    service["spec"]["ports"] = [
        {"port": 80, "name": "web"},
        {"port": 81},
        {"port": 82, "name": "web"},
    ]
    assert error_locs(service) == {
        ("spec", "ports", 1, "name"): "missing",
        ("spec", "ports", 2, "name"): "duplicate_port_name",
    }


@pytest.mark.parametrize("target", [True, 1.5, 0, "Not_A_Port"])
def test_target_port_int_or_name(service, target, error_locs):
    service["spec"]["ports"][0]["targetPort"] = target
    assert list(error_locs(service)) == [("spec", "ports", 0, "targetPort")]


def test_bad_quantity(deployment, error_locs):
    _container(deployment)["resources"]["limits"]["memory"] = "128MB"
    assert error_locs(deployment) == {(*C0, "resources", "limits", "memory"): "quantity"}


def test_requests_must_not_exceed_limits(deployment, error_locs):
    _container(deployment)["resources"]["requests"]["memory"] = "1Gi"
    assert error_locs(deployment) == {
        (*C0, "resources", "requests", "memory"): "request_above_limit"
    }


def test_requests_equal_to_limits_in_other_units_are_fine(deployment):
    _container(deployment)["resources"]["requests"]["cpu"] = "0.5"
    parse_object(deployment)


def test_negative_and_unknown_resources(deployment, error_locs):
    _container(deployment)["resources"]["requests"] = {"cpu": "-1", "gpu": "1"}
    assert error_locs(deployment) == {
        (*C0, "resources", "requests", "cpu"): "resource_negative",
        (*C0, "resources", "requests", "gpu"): "resource_name",
    }


def test_max_surge_and_unavailable(deployment, error_locs):
    deployment["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": "10", "maxUnavailable": -1}}
    assert error_locs(deployment) == {
        ("spec", "strategy", "rollingUpdate", "maxSurge"): "int_or_percent",
        ("spec", "strategy", "rollingUpdate", "maxUnavailable"): "int_or_percent",
    }


def test_surge_and_unavailable_not_both_zero(deployment, error_locs):
    deployment["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}
    assert error_locs(deployment) == {
        ("spec", "strategy", "rollingUpdate", "maxUnavailable"): "rolling_update_zero"
    }


def test_recreate_with_rolling_update_is_refused(deployment, error_locs):
    deployment["spec"]["strategy"] = {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}
    assert error_locs(deployment) == {("spec", "strategy", "rollingUpdate"): "strategy_recreate"}


def test_progress_deadline_exceeds_min_ready(deployment, error_locs):
    deployment["spec"].update(minReadySeconds=600, progressDeadlineSeconds=600)
    assert error_locs(deployment) == {("spec", "progressDeadlineSeconds"): "progress_deadline"}


def test_env_value_and_value_from_exclude_each_other(pod, error_locs):
    pod["spec"]["containers"][0]["env"] = [
        {"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "B", "valueFrom": {}},
        {"name": "1BAD", "value": "x"},
    ]
    assert error_locs(pod) == {
        ("spec", "containers", 0, "env", 0, "valueFrom"): "env_value",
        ("spec", "containers", 0, "env", 1, "valueFrom"): "one_of",
        ("spec", "containers", 0, "env", 2, "name"): "env_var_name",
    }


def test_env_references_parse(pod):
    pod["spec"]["containers"][0]["env"] = [
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a.txt"}}},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
        {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    pod["spec"]["containers"][0]["envFrom"] = [
        {"configMapRef": {"name": "cfg"}},
        {"prefix": "S_", "secretRef": {"name": "sec"}},
    ]
    env = parse_object(pod).spec.containers[0].env
    assert env[0].value_from.config_map_key_ref.key == "a.txt"
    assert env[1].value_from.secret_key_ref.name == "sec"
    assert env[2].value_from.field_ref.field_path == "status.podIP"


def test_volume_mounts_need_a_declared_volume(pod, error_locs):
    pod["spec"]["volumes"] = [
        {"name": "cfg", "configMap": {"name": "web", "items": [{"key": "a", "path": "a.conf"}]}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "tls", "secret": {"secretName": "web-tls"}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "cfg", "mountPath": "/etc/web"},
        {"name": "data", "mountPath": "/data"},
    ]
    assert error_locs(pod) == {
        ("spec", "volumes", 3, "name"): "duplicate_volume",
        ("spec", "containers", 0, "volumeMounts", 1, "name"): "volume_not_found",
    }


def test_volume_needs_exactly_one_source(pod, error_locs):
    pod["spec"]["volumes"] = [{"name": "v"}]
    assert error_locs(pod) == {("spec", "volumes", 0): "one_of"}


def test_volume_item_paths_stay_inside(pod, error_locs):
    pod["spec"]["volumes"] = [
        {"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "../etc/passwd"}]}}
    ]
    assert error_locs(pod) == {
        ("spec", "volumes", 0, "configMap", "items", 0, "path"): "relative_path"
    }


def test_tolerations(pod, error_locs):
    pod["spec"]["tolerations"] = [
        {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"},
        {"operator": "Exists"},
        {"key": "k", "operator": "Exists", "value": "v"},
        {"effect": "NoSchedule"},
        {"key": "k", "tolerationSeconds": 5, "effect": "NoSchedule"},
    ]
    assert error_locs(pod) == {
        ("spec", "tolerations", 2, "value"): "toleration_value",
        ("spec", "tolerations", 3, "operator"): "toleration_operator",
        ("spec", "tolerations", 4, "tolerationSeconds"): "toleration_seconds",
    }


def test_full_container_surface_parses(pod):
    pod["spec"].update(
        nodeSelector={"disk": "ssd"},
        nodeName="worker-1",
        serviceAccountName="web",
        hostNetwork=True,
        terminationGracePeriodSeconds=5,
        restartPolicy="OnFailure",
        initContainers=[{"name": "init", "image": "x:1", "command": ["true"]}],
    )
    pod["spec"]["containers"][0].update(
        args=["-v"],
        workingDir="/srv",
        ports=[
            {
                "name": "dns",
                "containerPort": 53,
                "hostPort": 53,
                "protocol": "UDP",
                "hostIP": "127.0.0.1",
            }
        ],
        startupProbe={"exec": {"command": ["true"]}, "failureThreshold": 30},
        lifecycle={"preStop": {"exec": {"command": ["sleep", "1"]}}},
        securityContext={
            "runAsUser": 1000,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    )
    obj = parse_object(pod)
    container = obj.spec.containers[0]
    assert container.ports[0].host_ip == "127.0.0.1"
    assert container.lifecycle.pre_stop.exec_.command == ["sleep", "1"]
    assert container.security_context.capabilities.drop == ["ALL"]
    assert obj.to_dict()["spec"]["containers"][0]["ports"][0]["hostIP"] == "127.0.0.1"
    assert obj.to_dict()["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]


def test_snake_case_field_names_are_unknown_in_manifests(deployment, error_locs):
    _container(deployment)["image_pull_policy"] = "Never"
    deployment["spec"]["min_ready_seconds"] = 5
    assert error_locs(deployment) == {
        (*C0, "image_pull_policy"): "extra_forbidden",
        ("spec", "min_ready_seconds"): "extra_forbidden",
    }


def test_host_network_ports_are_not_mapped(pod, error_locs):
    pod["spec"]["hostNetwork"] = True
    pod["spec"]["containers"][0]["ports"] = [
        {"containerPort": 8080, "hostPort": 8080},
        {"containerPort": 9090, "hostPort": 19090},
    ]
    assert error_locs(pod) == {
        ("spec", "containers", 0, "ports", 1, "hostPort"): "host_network_port"
    }
    pod["spec"]["hostNetwork"] = False
    assert parse_object(pod).spec.containers[0].ports[1].host_port == 19090


def test_port_resolution_helpers(deployment):
    spec = parse_object(deployment).spec.template.spec
    assert spec.port_number("http") == 8080
    assert spec.port_number(9000) == 9000
    assert spec.port_number("http", protocol="UDP") is None
    assert spec.port_number("missing") is None
    assert spec.container("web").port_number("http") == 8080
    assert spec.container("nope") is None
    probe = spec.containers[0].readiness_probe
    assert probe.port == "http"


def test_toleration_matching(pod):
    pod["spec"]["tolerations"] = [
        {"key": "dedicated", "value": "db", "effect": "NoSchedule"},
        {"key": "gpu", "operator": "Exists"},
        {"operator": "Exists", "effect": "NoExecute"},
    ]
    equal, exists, wildcard = parse_object(pod).spec.tolerations
    assert equal.tolerates(key="dedicated", value="db", effect="NoSchedule")
    assert not equal.tolerates(key="dedicated", value="web", effect="NoSchedule")
    assert not equal.tolerates(key="dedicated", value="db", effect="NoExecute")
    assert exists.tolerates(key="gpu", value="anything", effect="PreferNoSchedule")
    assert not exists.tolerates(key="ssd", value=None, effect="NoSchedule")
    assert wildcard.tolerates(key="any", value="x", effect="NoExecute")
    assert not wildcard.tolerates(key="any", value="x", effect="NoSchedule")
