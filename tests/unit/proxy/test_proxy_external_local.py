"""``externalTrafficPolicy: Local`` from the Service to the node's rules: the rule the control
plane builds (``service_rule``), what each agent release is sent (``encode_sync``), and what
the node proxy programs in each mode from it (pure renderers, userspace listeners)."""

from __future__ import annotations

import json
import re

import pytest

from agent.proxy import Proxy, ServiceRuleSet
from agent.proxy import _iptables as ipt
from agent.proxy import _nftables as nft
from agent.proxy._userspace import HOST_SCOPE
from agent.proxy.model import Endpoint
from reconciler.nodes._wire import DesiredSet, encode_sync
from reconciler.nodes.desired import service_rule
from schemas import Service, parse_object
from schemas.protocol import FEATURE_EXTERNAL_TRAFFIC_POLICY, WIRE_FEATURES, ServiceRule

THIS_NODE = ("127.0.0.2",)
LOCAL = [Endpoint("127.0.0.2", 31000), Endpoint("127.0.0.2", 31001)]
ELSEWHERE = Endpoint("127.0.0.3", 31002)


def _service(kind: str, policy: str | None) -> Service:
    spec: dict = {
        "type": kind,
        "selector": {"app": "web"},
        "ports": [{"port": 80, **({"nodePort": 30080} if kind != "ClusterIP" else {})}],
    }
    if policy is not None:
        spec["externalTrafficPolicy"] = policy
    service = parse_object(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
        }
    )
    assert isinstance(service, Service)
    return service


def _wire(local: bool, endpoints: list[Endpoint]) -> ServiceRule:
    return ServiceRule.model_validate(
        {
            "namespace": "default",
            "name": "web",
            "type": "NodePort",
            **({"externalTrafficPolicy": "Local"} if local else {}),
            "ports": [
                {
                    "port": 80,
                    "nodePort": 30080,
                    "endpoints": [{"address": e.address, "port": e.port} for e in endpoints],
                }
            ],
        }
    )


def _rules(local: bool, endpoints: list[Endpoint]) -> ServiceRuleSet:
    return ServiceRuleSet.from_protocol([_wire(local, endpoints)])


@pytest.mark.parametrize("kind", ["NodePort", "LoadBalancer"])
def test_the_rule_says_local_for_a_node_port_service(kind):
    rule = service_rule(_service(kind, "Local"), None)
    assert rule.type == "NodePort"
    assert rule.external_traffic_policy == "Local"
    assert rule.model_dump(by_alias=True, exclude_none=True)["externalTrafficPolicy"] == "Local"


@pytest.mark.parametrize(("kind", "policy"), [("NodePort", "Cluster"), ("NodePort", None)])
def test_a_cluster_rule_is_the_same_bytes_as_before(kind, policy):
    rule = service_rule(_service(kind, policy), None)
    assert "externalTrafficPolicy" not in rule.model_dump(by_alias=True, exclude_none=True)


@pytest.mark.parametrize("cached", [False, True])
def test_only_an_agent_that_lists_the_feature_gets_the_field(cached):
    rule = service_rule(_service("LoadBalancer", "Local"), None)
    text = rule.model_dump_json(by_alias=True, exclude_none=True) if cached else None
    desired = DesiredSet(services=(rule,), services_json=text)
    new = json.loads(encode_sync(1, desired))
    assert new["services"][0]["externalTrafficPolicy"] == "Local"
    older = frozenset(WIRE_FEATURES) - {FEATURE_EXTERNAL_TRAFFIC_POLICY}
    old = json.loads(encode_sync(1, desired, features=older))
    assert "externalTrafficPolicy" not in old["services"][0]
    assert old["services"][0]["ports"][0]["nodePort"] == 30080
    # An agent of the first release: neither this field nor the endpoints' hostnames.
    first = json.loads(encode_sync(1, desired, features=frozenset()))
    assert "externalTrafficPolicy" not in first["services"][0]


def test_the_node_port_keeps_only_this_nodes_endpoints():
    (rule,) = _rules(True, [*LOCAL, ELSEWHERE])
    assert rule.endpoints == (*LOCAL, ELSEWHERE)  # the virtual address: every endpoint
    assert rule.node_port_endpoints(THIS_NODE) == tuple(LOCAL)
    assert rule.node_port_endpoints(("127.0.0.4",)) == ()
    (cluster,) = _rules(False, [*LOCAL, ELSEWHERE])
    assert cluster.node_port_endpoints(THIS_NODE) == (*LOCAL, ELSEWHERE)


def _nft(rule_set: ServiceRuleSet) -> nft.Plan:
    return nft.render(
        rule_set, node_addresses=THIS_NODE, table="capstan", existing=None, referenced=None
    )


def _chain_rules(plan: nft.Plan, chain: str) -> list[str]:
    return [
        line
        for line in plan.create.splitlines()
        if line.startswith(f"add rule ip capstan {chain} ")
    ]


def test_nft_local_node_port_goes_to_local_endpoints_unmasqueraded():
    rule_set = _rules(True, [*LOCAL, ELSEWHERE])
    plan = _nft(rule_set)
    (rule,) = rule_set
    local_chain = nft.chain_name(rule, tuple(LOCAL))
    assert "add element ip capstan node_ports { tcp . 30080 : goto " + local_chain + " }" in (
        plan.switch
    )
    assert _chain_rules(plan, local_chain) == [
        f"add rule ip capstan {local_chain} meta l4proto tcp dnat to numgen random mod 2 map "
        "{ 0 : 127.0.0.2 . 31000, 1 : 127.0.0.2 . 31001 }"
    ]
    # The virtual address still balances over all three, marked for masquerade.
    cluster_chain = nft.chain_name(rule)
    assert f"goto {cluster_chain}" in plan.switch.split("virtual_ports", 2)[-1]
    cluster = _chain_rules(plan, cluster_chain)
    assert any("meta mark set" in line for line in cluster)
    assert any("mod 3" in line for line in cluster)


def test_nft_local_node_port_without_local_endpoint_drops():
    plan = _nft(_rules(True, [ELSEWHERE]))
    (rule,) = _rules(True, [ELSEWHERE])
    assert _chain_rules(plan, nft.chain_name(rule, ())) == [
        f"add rule ip capstan {nft.chain_name(rule, ())} meta l4proto tcp drop"
    ]
    assert plan.digest != _nft(_rules(False, [ELSEWHERE])).digest


def test_iptables_local_node_port_goes_to_local_endpoints_unmarked():
    script, _ = ipt.render(
        _rules(True, [*LOCAL, ELSEWHERE]), node_addresses=THIS_NODE, prefix="CAPSTAN", stale=()
    )
    (nodeport,) = [line for line in script.splitlines() if line.startswith("-A CAPSTAN-NODEPORTS")]
    local_chain = nodeport.rsplit(" ", 1)[-1]
    assert local_chain.startswith("CAPSTAN-L-")
    body = [line for line in script.splitlines() if line.startswith(f"-A {local_chain} ")]
    assert [re.sub(r".*--to-destination ", "", line) for line in body] == [
        "127.0.0.2:31000",
        "127.0.0.2:31001",
    ]
    assert "MARK" not in "\n".join(body)
    # The virtual address: all three endpoints, each marked.
    assert script.count("-j MARK --or-mark") == 3


def test_iptables_local_node_port_without_local_endpoint_is_not_forwarded():
    script, _ = ipt.render(
        _rules(True, [ELSEWHERE]), node_addresses=THIS_NODE, prefix="CAPSTAN", stale=()
    )
    assert "CAPSTAN-NODEPORTS -p" not in script
    assert "-A CAPSTAN-SERVICES -d " in script  # the virtual address still forwards


def test_userspace_node_port_listens_with_local_endpoints_only():
    with Proxy(node_addresses=THIS_NODE, mode="userspace") as proxy:
        rule_set = _rules(True, [*LOCAL, ELSEWHERE])
        (rule,) = rule_set
        wanted = proxy._host_listeners(rule_set)
        assert wanted[(HOST_SCOPE, "127.0.0.2", 30080)] == tuple(LOCAL)
        assert wanted[(HOST_SCOPE, rule.virtual_address, 80)] == (*LOCAL, ELSEWHERE)
        elsewhere = proxy._host_listeners(_rules(True, [ELSEWHERE]))
        assert elsewhere[(HOST_SCOPE, "127.0.0.2", 30080)] == ()  # reset on accept
