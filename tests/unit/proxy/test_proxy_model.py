"""The proxy's input model: the adapter from the wire and the virtual addresses."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.proxy import DEFAULT_VIRTUAL_RANGE, Endpoint, ServiceRuleSet, allocate_virtual_addresses
from agent.proxy.addresses import hashed_address
from schemas.protocol import Endpoint as WireEndpoint
from schemas.protocol import ServicePortRule, ServiceRule


def wire(
    name: str, *, namespace: str = "default", node_port: int | None = None, **kw
) -> ServiceRule:
    return ServiceRule(
        namespace=namespace,
        name=name,
        type="NodePort" if node_port else "ClusterIP",
        ports=[
            ServicePortRule(
                name="http",
                port=80,
                node_port=node_port,
                endpoints=[
                    WireEndpoint(address="127.0.0.3", port=30002),
                    WireEndpoint(address="127.0.0.2", port=30001),
                    WireEndpoint(address="127.0.0.2", port=30001),
                ],
            ),
            ServicePortRule(name="metrics", protocol="UDP", port=9100),
        ],
        **kw,
    )


def test_adapter_flattens_ports_and_sorts_deduplicated_endpoints():
    rules = ServiceRuleSet.from_protocol([wire("web", node_port=30080)])
    http, metrics = rules.service("default", "web")
    assert http.endpoints == (Endpoint("127.0.0.2", 30001), Endpoint("127.0.0.3", 30002))
    assert http.node_port == 30080
    assert http.port_name == "http"
    assert http.label == "default/web:http"
    assert metrics.protocol == "UDP"
    assert metrics.endpoints == ()
    assert http.virtual_address == metrics.virtual_address
    assert ipaddress.IPv4Address(http.virtual_address) in ipaddress.IPv4Network(
        DEFAULT_VIRTUAL_RANGE
    )


def test_adapter_is_deterministic_whatever_the_order():
    services = [wire("a"), wire("b", namespace="shop"), wire("c")]
    assert ServiceRuleSet.from_protocol(services) == ServiceRuleSet.from_protocol(services[::-1])


def test_virtual_address_does_not_move_when_other_services_come_and_go():
    alone = ServiceRuleSet.from_protocol([wire("web")]).service("default", "web")[0]
    crowd = ServiceRuleSet.from_protocol([wire(f"s{i}") for i in range(200)] + [wire("web")])
    assert crowd.service("default", "web")[0].virtual_address == alone.virtual_address


def test_cluster_ip_inside_the_range_is_kept_outside_it_is_replaced():
    pinned = ServiceRuleSet.from_protocol([wire("web", clusterIP="127.192.0.7")])
    assert pinned.service("default", "web")[0].virtual_address == "127.192.0.7"
    foreign = ServiceRuleSet.from_protocol([wire("web", clusterIP="10.96.0.1")])
    assert foreign.service("default", "web")[0].virtual_address != "10.96.0.1"


def test_collisions_are_probed_to_distinct_addresses():
    # A /24 holds 254 candidates: 200 Services collide often and must still all differ.
    keys = [("ns", f"svc-{i}") for i in range(200)]
    addresses = allocate_virtual_addresses(keys, virtual_range="127.250.1.0/24")
    assert len(set(addresses.values())) == 200
    assert addresses == allocate_virtual_addresses(keys[::-1], virtual_range="127.250.1.0/24")


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_hashed_address_stays_inside_the_range_and_skips_its_ends(namespace, name):
    address = ipaddress.IPv4Address(hashed_address(namespace, name, virtual_range="127.250.1.0/24"))
    assert ipaddress.IPv4Address("127.250.1.1") <= address <= ipaddress.IPv4Address("127.250.1.254")


def test_a_virtual_range_outside_loopback_is_refused():
    with pytest.raises(ValueError, match=r"not inside 127\.0\.0\.0/8"):
        ServiceRuleSet.from_protocol([wire("web")], virtual_range="10.0.0.0/16")


def test_one_node_port_for_two_services_is_refused():
    with pytest.raises(ValueError, match="nodePort 30080/TCP is used by both"):
        ServiceRuleSet.from_protocol([wire("a", node_port=30080), wire("b", node_port=30080)])


def test_endpoint_must_be_ipv4_with_a_valid_port():
    with pytest.raises(ValueError):
        Endpoint("node-1", 80)
    with pytest.raises(ValueError):
        Endpoint("127.0.0.1", 0)


def test_without_endpoints_drains_a_stopping_pod_everywhere():
    rules = ServiceRuleSet.from_protocol([wire("a", node_port=30080), wire("b")])
    drained = rules.without_endpoints([Endpoint("127.0.0.2", 30001)])
    for rule in drained:
        assert Endpoint("127.0.0.2", 30001) not in rule.endpoints
    assert drained.service("default", "a")[0].endpoints == (Endpoint("127.0.0.3", 30002),)
    assert drained.service("default", "a")[0].node_port == 30080


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"name": "web\n-A INPUT -j ACCEPT"}, "name 'web\\n-A INPUT -j ACCEPT': must be"),
        ({"name": "web\n"}, "name 'web\\n': must be a DNS-1035"),
        ({"namespace": 'de"fault'}, "namespace 'de\"fault': must be a DNS-1123"),
        (
            {"ports": [ServicePortRule.model_construct(name='x" accept', port=80, protocol="TCP")]},
            "port name 'x\" accept': a port name must",
        ),
    ],
)
def test_rule_text_is_built_only_from_validated_values(fields, expected):
    # Values that bypassed the wire's validation (model_construct) are refused again before
    # any script is rendered from them: the proxy keeps its previous rules.
    service = wire("web").model_copy(update=fields)
    with pytest.raises(ValueError, match="Service port rule refused") as info:
        ServiceRuleSet.from_protocol([service])
    assert expected in str(info.value)
