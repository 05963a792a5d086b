"""The kernel rule renderers (pure): what nft and iptables-restore are given."""

from __future__ import annotations

import re

import pytest

from agent.proxy import ServiceRuleSet
from agent.proxy import _iptables as ipt
from agent.proxy import _nftables as nft
from agent.proxy._userspace import _Pool
from agent.proxy.model import Endpoint
from schemas.protocol import Endpoint as WireEndpoint
from schemas.protocol import ServicePortRule, ServiceRule

NODES = ("127.0.0.2", "127.0.0.3")


def rules(*counts: int, node_port: int | None = 30080) -> ServiceRuleSet:
    return ServiceRuleSet.from_protocol(
        [
            ServiceRule(
                namespace="default",
                name=f"svc{i}",
                type="NodePort",
                ports=[
                    ServicePortRule(
                        port=80,
                        node_port=None if node_port is None else node_port + i,
                        endpoints=[
                            WireEndpoint(address="127.0.0.2", port=31000 + j) for j in range(count)
                        ],
                    )
                ],
            )
            for i, count in enumerate(counts)
        ]
    )


def render_nft(rule_set: ServiceRuleSet, **kw):
    kw.setdefault("node_addresses", NODES)
    kw.setdefault("existing", None)
    kw.setdefault("referenced", None)
    return nft.render(rule_set, table="capstan", **kw)


def test_nft_fresh_table_is_created_then_switched():
    plan = render_nft(rules(3))
    create = plan.create.splitlines()
    assert create[:3] == ["table ip capstan {}", "delete table ip capstan", "table ip capstan {"]
    assert "    type nat hook output priority -100; policy accept;" in create
    (chain,) = plan.chains
    assert (
        f"add rule ip capstan {chain} meta l4proto tcp dnat to numgen random mod 3 map "
        "{ 0 : 127.0.0.2 . 31000, 1 : 127.0.0.2 . 31001, 2 : 127.0.0.2 . 31002 }" in create
    )
    switch = plan.switch.splitlines()
    assert "add element ip capstan node_addresses { 127.0.0.2, 127.0.0.3 }" in switch
    assert f"add element ip capstan node_ports {{ tcp . 30080 : goto {chain} }}" in switch
    assert f"capstan-proxy v2 sha256:{plan.digest}" in plan.switch
    # The switch only touches set and map elements: no rule of a live chain changes.
    assert all(line.startswith(("flush set", "flush map", "add element")) for line in switch)


def test_nft_live_chains_are_never_rewritten_only_added_and_later_deleted():
    first = render_nft(rules(3))
    (old,) = first.chains
    second = render_nft(rules(2), existing={old, "services", "output"}, referenced=first.chains)
    (new,) = second.chains
    assert new != old  # another endpoint set is another chain
    assert f"add chain ip capstan {new}" in second.create
    assert old not in second.create  # still referenced until the switch: kept this time
    assert f"goto {new}" in second.switch
    third = render_nft(rules(2), existing={old, new, "services"}, referenced=second.chains)
    assert third.create.splitlines() == [f"delete chain ip capstan {old}"]
    assert third.digest == second.digest


def test_nft_unknown_references_delete_nothing():
    plan = render_nft(rules(1), existing={"svc_stale", "services"}, referenced=None)
    assert "delete chain" not in plan.create


def test_nft_digest_follows_the_content_only():
    assert render_nft(rules(3)).digest == render_nft(rules(3), node_addresses=NODES[::-1]).digest
    assert render_nft(rules(3)).digest != render_nft(rules(2)).digest
    assert render_nft(rules(3)).digest != render_nft(rules(3), node_addresses=NODES[:1]).digest


def test_nft_port_without_endpoints_rejects_and_single_endpoint_is_plain_dnat():
    plan = render_nft(rules(0, 1))
    assert "meta l4proto tcp reject with tcp reset" in plan.create
    assert "meta l4proto tcp dnat to 127.0.0.2:31000" in plan.create


def test_nft_table_name_is_checked():
    with pytest.raises(ValueError):
        nft.validate_table_name("capstan; flush ruleset")


def test_iptables_probabilities_make_each_endpoint_one_nth():
    script, _ = ipt.render(rules(3), node_addresses=NODES, prefix="CAPSTAN", stale=())
    chances = re.findall(r"--probability (\S+)", script)
    assert [float(c) for c in chances] == pytest.approx([1 / 3, 1 / 2])
    assert script.count("-j DNAT --to-destination") == 3
    assert script.startswith("*nat\n")
    assert script.endswith("COMMIT\n")
    assert "-A CAPSTAN-SERVICES -d 127.0.0.3/32 -j CAPSTAN-NODEPORTS" in script


def test_iptables_deletes_only_its_own_stale_chains():
    script, _ = ipt.render(
        rules(1),
        node_addresses=NODES,
        prefix="CAPSTAN",
        stale=("CAPSTAN-S-OLD", "CAPSTAN-SERVICES"),
    )
    assert "-X CAPSTAN-S-OLD" in script
    assert "-X CAPSTAN-SERVICES" not in script
    assert all(
        line.split()[1].startswith("CAPSTAN-")
        for line in script.splitlines()
        if line.startswith(("-A", "-X"))
    )


def test_iptables_chain_names_fit_the_kernel_limit():
    script, _ = ipt.render(rules(2, 2), node_addresses=NODES, prefix="CAPSTANLONGX", stale=())
    for chain in re.findall(r"^:(\S+)", script, re.MULTILINE):
        assert len(chain) <= 28


def test_round_robin_pool_rotates_and_sees_replacements_at_once():
    pool = _Pool((Endpoint("127.0.0.2", 1), Endpoint("127.0.0.2", 2), Endpoint("127.0.0.2", 3)))
    firsts = [pool.candidates()[0].port for _ in range(6)]
    assert firsts == [1, 2, 3, 1, 2, 3]
    assert [e.port for e in pool.candidates()] == [1, 2, 3]
    pool.endpoints = (Endpoint("127.0.0.2", 9),)
    assert [e.port for e in pool.candidates()] == [9]
    pool.endpoints = ()
    assert pool.candidates() == []
