"""Service IP families as the API server of an IPv4 single-stack Kubernetes cluster defaults
and checks them (its Service allocator and validation), with its words."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from schemas import Service


def service(*, selector: bool = True, **spec: Any) -> Service:
    data: dict[str, Any] = {"ports": [{"port": 80}], **spec}
    if selector:
        data["selector"] = {"app": "web"}
    return Service.model_validate(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": data}
    )


def families(obj: Service) -> tuple[Any, Any]:
    spec = obj.to_dict()["spec"]
    return spec["ipFamilyPolicy"], spec["ipFamilies"]


def refusals(**spec: Any) -> list[tuple[str, str]]:
    with pytest.raises(pydantic.ValidationError) as caught:
        service(**spec)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in caught.value.errors()]


IPV4_ONLY = "the Service network of a Capstan cluster is IPv4 only (single-stack)"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, ("SingleStack", ["IPv4"])),
        ({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}, ("SingleStack", ["IPv4"])),
        ({"ipFamilyPolicy": "PreferDualStack"}, ("PreferDualStack", ["IPv4"])),
        ({"clusterIPs": ["10.96.0.20"]}, ("SingleStack", ["IPv4"])),
    ],
)
def test_single_stack_and_prefer_dual_stack_get_ipv4_only(spec, expected):
    assert families(service(**spec)) == expected


def test_a_headless_service_without_selector_gets_both_families_as_kubernetes_gives():
    # It has no address of its own: Kubernetes defaults it to RequireDualStack, both families.
    assert families(service(selector=False, clusterIP="None")) == (
        "RequireDualStack",
        ["IPv4", "IPv6"],
    )


def test_require_dual_stack_is_refused_saying_the_cluster_is_single_stack():
    assert refusals(ipFamilyPolicy="RequireDualStack") == [
        (
            "spec.ipFamilyPolicy",
            f"this cluster is not configured for dual-stack services: {IPV4_ONLY}; write "
            "PreferDualStack (IPv4 here, both families on a dual-stack cluster) or SingleStack",
        )
    ]


def test_an_ipv6_family_or_address_is_refused_where_it_is_written():
    assert refusals(ipFamilyPolicy="PreferDualStack", ipFamilies=["IPv4", "IPv6"]) == [
        (
            "spec.ipFamilies.1",
            f"IPv6 is not configured on this cluster: {IPV4_ONLY}; list IPv4 only, or leave "
            "ipFamilies out",
        )
    ]
    assert refusals(clusterIPs=["fd00::20"]) == [
        (
            "spec.clusterIPs.0",
            f"IPv6 is not configured on this cluster: {IPV4_ONLY}; give an IPv4 address, or "
            "leave clusterIP out to have one allocated",
        )
    ]


def test_two_families_need_a_dual_stack_policy_in_kubernetes_words():
    assert refusals(ipFamilies=["IPv4", "IPv6"]) == [
        (
            "spec.ipFamilyPolicy",
            "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are "
            "specified",
        )
    ]
