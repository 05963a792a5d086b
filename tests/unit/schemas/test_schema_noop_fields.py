"""Fields real repositories write that Capstan accepts with Kubernetes' meaning or as a
documented no-op: a Service port's ``appProtocol`` (the node proxies forward bytes whatever the
protocol above TCP), a pod's ``serviceAccount`` (the old name of ``serviceAccountName``), a
ServiceAccount's ``secrets`` (kept, no effect), a Service's traffic policies (``Cluster``;
``externalTrafficPolicy: Local`` with ``healthCheckNodePort``, which the node proxy serves;
``internalTrafficPolicy: Local`` is refused saying why), and Secret ``data`` wrapped over lines
(Go's base64 skips line breaks)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import Pod, Secret, Service, ServiceAccount, parse_object


def test_app_protocol_is_accepted_and_kept(service):
    service["spec"]["ports"][0]["appProtocol"] = "kubernetes.io/h2c"
    parsed = parse_object(service)
    assert isinstance(parsed, Service)
    assert parsed.to_dict()["spec"]["ports"][0]["appProtocol"] == "kubernetes.io/h2c"


def test_service_account_is_read_as_service_account_name(pod):
    pod["spec"]["serviceAccount"] = "builder"
    parsed = parse_object(pod)
    assert isinstance(parsed, Pod)
    assert parsed.spec.service_account_name == "builder"


def test_both_service_account_names_must_agree(pod, error_locs):
    pod["spec"] |= {"serviceAccount": "builder", "serviceAccountName": "builder"}
    assert parse_object(pod).spec.service_account_name == "builder"  # type: ignore[attr-defined]
    pod["spec"]["serviceAccountName"] = "deployer"
    assert error_locs(pod) == {("spec", "serviceAccount"): "service_account"}


def test_service_account_secrets_are_kept():
    account = parse_object(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "argocd-redis-ha", "namespace": "argocd"},
            "secrets": [{"name": "argocd-redis-ha-token"}],
        }
    )
    assert isinstance(account, ServiceAccount)
    assert account.to_dict()["secrets"] == [{"name": "argocd-redis-ha-token"}]


@pytest.mark.parametrize("field", ["externalTrafficPolicy", "internalTrafficPolicy"])
def test_traffic_policy_cluster_is_accepted(service, field):
    service["spec"]["type"] = "NodePort"
    service["spec"][field] = "Cluster"
    assert parse_object(service).to_dict()["spec"][field] == "Cluster"


@pytest.mark.parametrize("kind", ["NodePort", "LoadBalancer"])
def test_external_traffic_policy_local_is_accepted(service, kind):
    service["spec"] |= {"type": kind, "externalTrafficPolicy": "Local"}
    parsed = parse_object(service)
    assert isinstance(parsed, Service)
    assert parsed.spec.external_traffic_policy == "Local"
    assert parsed.to_dict()["spec"]["externalTrafficPolicy"] == "Local"


def test_health_check_node_port_is_accepted_where_kubernetes_accepts_it(service, error_locs):
    service["spec"] |= {
        "type": "LoadBalancer",
        "externalTrafficPolicy": "Local",
        "healthCheckNodePort": 32123,
    }
    assert parse_object(service).to_dict()["spec"]["healthCheckNodePort"] == 32123
    service["spec"]["externalTrafficPolicy"] = "Cluster"
    assert error_locs(service) == {("spec", "healthCheckNodePort"): "health_check_node_port"}
    service["spec"] |= {"externalTrafficPolicy": "Local", "type": "NodePort"}
    assert error_locs(service) == {("spec", "healthCheckNodePort"): "health_check_node_port"}


def test_internal_traffic_policy_local_is_refused_saying_why(service, error_locs):
    service["spec"]["internalTrafficPolicy"] = "Local"
    assert error_locs(service) == {("spec", "internalTrafficPolicy"): "traffic_policy"}
    with pytest.raises(ValidationError) as raised:
        parse_object(service)
    assert "which is what 'Cluster' means" in raised.value.errors()[0]["msg"]


def _secret(value: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tls", "namespace": "default"},
        "data": {"tls.crt": value},
    }


def test_secret_data_may_be_wrapped_over_lines(error_locs):
    wrapped = "aGVsbG8g\nd29ybGQ=\r\n"
    secret = parse_object(_secret(wrapped))
    assert isinstance(secret, Secret)
    assert secret.decoded()["tls.crt"] == b"hello world"
    assert error_locs(_secret("aGVsbG8g d29ybGQ=")) == {("data", "tls.crt"): "base64"}
