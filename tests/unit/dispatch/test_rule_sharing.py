"""A rebuilt Service rule shares the endpoint models its previous version had, so each
node's push compares the rules mostly by identity; its wire form is unchanged."""

from __future__ import annotations

from reconciler.nodes.dispatch import _sharing_endpoints
from schemas.protocol import Endpoint, ServicePortRule, ServiceRule


def _rule(*ports: int, hostname: str | None = None) -> ServiceRule:
    return ServiceRule(
        namespace="default",
        name="web",
        cluster_ip="10.96.0.10",
        ports=[
            ServicePortRule(
                port=80,
                endpoints=[Endpoint(address="10.0.0.1", port=p, hostname=hostname) for p in ports],
            )
        ],
    )


def test_unchanged_endpoints_become_the_previous_models_and_the_wire_form_stays() -> None:
    previous = _rule(30001, 30002, 30003)
    rebuilt = _rule(30001, 30004, 30003)
    shared = _sharing_endpoints(rebuilt, previous)

    assert shared.model_dump_json() == rebuilt.model_dump_json()
    assert shared == rebuilt
    old, new = previous.ports[0].endpoints, shared.ports[0].endpoints
    assert new[0] is old[0]
    assert new[2] is old[2]
    assert new[1] is rebuilt.ports[0].endpoints[1]  # a new endpoint stays new
    assert shared != previous


def test_an_endpoint_is_shared_only_when_address_port_and_hostname_all_match() -> None:
    previous = _rule(30001, hostname="web-0")
    shared = _sharing_endpoints(_rule(30001, hostname="web-1"), previous)
    assert shared.ports[0].endpoints[0].hostname == "web-1"
    assert shared.ports[0].endpoints[0] is not previous.ports[0].endpoints[0]


def test_a_rebuilt_rule_of_the_same_value_compares_by_identity_throughout() -> None:
    previous = _rule(*range(30000, 30500))
    shared = _sharing_endpoints(_rule(*range(30000, 30500)), previous)
    assert all(
        a is b for a, b in zip(shared.ports[0].endpoints, previous.ports[0].endpoints, strict=True)
    )
    assert shared == previous
