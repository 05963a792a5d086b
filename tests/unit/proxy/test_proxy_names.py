"""Hosts-file entries and Service environment variables for a pod's containers."""

from __future__ import annotations

from agent.proxy import ServiceRuleSet, extra_hosts, rewrite_hosts, service_env
from schemas.protocol import ServicePortRule, ServiceRule


def rules() -> ServiceRuleSet:
    return ServiceRuleSet.from_protocol(
        [
            ServiceRule(
                namespace="shop",
                name="web-front",
                ports=[
                    ServicePortRule(name="http", port=8080),
                    ServicePortRule(name="admin-ui", port=9090),
                ],
            ),
            ServiceRule(namespace="db", name="pg", ports=[ServicePortRule(port=5432)]),
        ]
    )


def test_short_names_only_for_the_pods_own_namespace():
    r = rules()
    web = r.service("shop", "web-front")[0].virtual_address
    pg = r.service("db", "pg")[0].virtual_address
    hosts = extra_hosts(r, namespace="shop")
    assert hosts == {
        "web-front": web,
        "web-front.shop": web,
        "web-front.shop.svc": web,
        "web-front.shop.svc.cluster.local": web,
        "pg.db": pg,
        "pg.db.svc": pg,
        "pg.db.svc.cluster.local": pg,
    }
    assert "web-front" not in extra_hosts(r, namespace="db")
    assert extra_hosts(r, namespace="db")["pg"] == pg


def test_env_is_kubernetes_style_and_namespaced():
    r = rules()
    web = r.service("shop", "web-front")[0].virtual_address
    env = service_env(r, namespace="shop")
    assert env["WEB_FRONT_SERVICE_HOST"] == web
    assert env["WEB_FRONT_SERVICE_PORT"] == "8080"
    assert env["WEB_FRONT_SERVICE_PORT_HTTP"] == "8080"
    assert env["WEB_FRONT_SERVICE_PORT_ADMIN_UI"] == "9090"
    assert env["WEB_FRONT_PORT"] == f"tcp://{web}:8080"
    assert env["WEB_FRONT_PORT_9090_TCP_ADDR"] == web
    assert env["WEB_FRONT_PORT_9090_TCP_PROTO"] == "tcp"
    assert not any(key.startswith("PG_") for key in env)
    assert service_env(r, namespace="db")["PG_SERVICE_PORT"] == "5432"


def test_empty_rule_set_gives_nothing():
    assert extra_hosts(ServiceRuleSet(), namespace="x") == {}
    assert service_env(ServiceRuleSet(), namespace="x") == {}


def test_rewrite_hosts_replaces_only_service_lines():
    r = rules()
    docker_written = (
        "127.0.0.1\tlocalhost\n"
        "127.200.0.9\told-service.shop\n"  # a Service that has gone since
        "172.17.0.5\tab6e7b3af3d0\n"
    )
    text = rewrite_hosts(docker_written, r, namespace="shop")
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "172.17.0.5\tab6e7b3af3d0" in lines
    assert "old-service" not in text
    web = r.service("shop", "web-front")[0].virtual_address
    assert f"{web}\tweb-front" in lines
    assert rewrite_hosts(text, r, namespace="shop") == text  # idempotent


def test_pods_of_a_headless_service_get_names_of_their_own():
    from schemas.protocol import Endpoint as WireEndpoint

    web = ServiceRule(
        namespace="shop",
        name="web",
        clusterIP=None,
        ports=[
            ServicePortRule(
                name="http",
                port=80,
                endpoints=[
                    WireEndpoint(address="127.0.0.5", port=40001, hostname="web-0"),
                    WireEndpoint(address="127.0.0.5", port=40002, hostname="web-1"),
                ],
            )
        ],
    )
    alone = ServiceRuleSet.from_protocol(
        [web.model_copy(update={"ports": [ServicePortRule(name="http", port=80)]})]
    )
    rules = ServiceRuleSet.from_protocol([web])
    by_key = {rule.service: rule for rule in rules}
    assert [(str(e.address), e.port) for e in by_key["shop/web-0.web"].endpoints] == [
        ("127.0.0.5", 40001)
    ]
    assert len(by_key["shop/web"].endpoints) == 2
    # A pod's name never moves the Service's own address.
    assert by_key["shop/web"].virtual_address == alone.service("shop", "web")[0].virtual_address
    hosts = extra_hosts(rules, namespace="shop")
    zero = by_key["shop/web-0.web"].virtual_address
    for name in (
        "web-0.web",
        "web-0.web.shop",
        "web-0.web.shop.svc",
        "web-0.web.shop.svc.cluster.local",
    ):
        assert hosts[name] == zero
    assert "web-0.web" not in extra_hosts(rules, namespace="other")
    assert hosts["web-1.web.shop"] not in (zero, hosts["web.shop"])
    assert not [k for k in service_env(rules, namespace="shop") if k.startswith("WEB_0")]
