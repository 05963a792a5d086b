"""A Service's address is its own: the API refuses a ``clusterIP`` another Service holds, by
its ``clusterIP`` or by the address the agents' allocator gives it, in any namespace."""

from __future__ import annotations

from agent.proxy import ServiceRuleSet
from schemas import Namespace, ObjectMeta, Service
from schemas.protocol import ServicePortRule, ServiceRule
from schemas.service_addresses import hashed_address
from tests.unit.server.conftest import assert_status

EVIL = "/api/v1/namespaces/evil/services"
SHOP = "/api/v1/namespaces/shop/services"


def service(name: str, cluster_ip: str | None = None) -> dict:
    spec: dict = {"selector": {"app": name}, "ports": [{"port": 80}]}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def agents_addresses(api) -> dict[str, str]:
    """The address each stored Service gets on a node (the agent's proxy model)."""
    rules = ServiceRuleSet.from_protocol(
        [
            ServiceRule(
                namespace=s.namespace,
                name=s.name,
                type=s.spec.type,
                cluster_ip=s.spec.cluster_ip,
                ports=[ServicePortRule(port=p.port, protocol=p.protocol) for p in s.spec.ports],
            )
            for s in api.list(Service).items
        ]
    )
    return {f"{r.namespace}/{r.name}": r.virtual_address for r in rules.rules}


def refused(response, holder: str) -> None:
    body = assert_status(response, 422, "Invalid")
    (cause,) = body["details"]["causes"]
    assert cause["field"] == "spec.clusterIP"
    assert f"already allocated to Service {holder}" in cause["message"]


def test_a_clusterip_cannot_take_another_namespaces_service_address(admin, api):
    api.create(Namespace(metadata=ObjectMeta(name="evil")))
    assert admin.post(SHOP, json=service("web")).status_code == 201
    assert admin.post(SHOP, json=service("db", "127.192.5.5")).status_code == 201
    assert admin.post(SHOP, json=service("legacy", "10.96.0.7")).status_code == 201
    before = agents_addresses(api)
    web_address = before["shop/web"]
    assert web_address == hashed_address("shop", "web", virtual_range="127.192.0.0/12")
    # The address web has from the allocator, the clusterIP db set, one outside the range.
    refused(admin.post(EVIL, json=service("web-twin", web_address)), "shop/web")
    refused(admin.post(EVIL, json=service("db-twin", "127.192.5.5")), "shop/db")
    refused(admin.post(EVIL, json=service("legacy-twin", "10.96.0.7")), "shop/legacy")
    assert api.list(Service, namespace="evil").items == ()
    # Moving an existing Service onto a held address is refused the same way.
    created = admin.post(EVIL, json=service("x", "127.192.9.9"))
    assert created.status_code == 201, created.text
    moved = created.json()
    moved["spec"]["clusterIP"] = web_address
    refused(admin.put(f"{EVIL}/x", json=moved), "shop/web")
    refused(admin.patch(f"{EVIL}/x", json={"spec": {"clusterIP": "127.192.5.5"}}), "shop/db")
    # Its own address is its own: an update that keeps it is fine.
    kept = admin.patch(f"{EVIL}/x", json={"spec": {"selector": {"app": "other"}}})
    assert kept.status_code == 200, kept.text
    # Nothing moved on the nodes.
    assert {k: v for k, v in agents_addresses(api).items() if k in before} == before


def test_the_allocator_never_hands_out_an_address_a_clusterip_holds(admin, api):
    later = hashed_address("shop", "later", virtual_range="127.192.0.0/12")
    # Free when asked for (no Service holds it yet), so it is granted ...
    assert admin.post(SHOP, json=service("early", later)).status_code == 201
    # ... and the Service whose hash it is gets another one.
    assert admin.post(SHOP, json=service("later")).status_code == 201
    addresses = agents_addresses(api)
    assert addresses["shop/early"] == later
    assert addresses["shop/later"] == hashed_address(
        "shop", "later", virtual_range="127.192.0.0/12", attempt=1
    )


def test_headless_services_share_cluster_ip_none(admin):
    # "None" is no address: Kubernetes admits any number of headless Services.
    for name in ("kube-state-metrics", "node-exporter"):
        assert admin.post(SHOP, json=service(name, "None")).status_code == 201
    listed = admin.get(SHOP).json()["items"]
    assert sorted(s["spec"]["clusterIP"] for s in listed) == ["None", "None"]
