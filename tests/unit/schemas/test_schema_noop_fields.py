"""Issue 17 item 6 fields that have no unit test of their own elsewhere: a Service port's
``appProtocol`` (accepted and kept, no effect: the node proxies forward bytes whatever the
protocol above TCP) and a pod's ``serviceAccount``, the old name of ``serviceAccountName``."""

from __future__ import annotations

from schemas import Pod, Service, parse_object


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
