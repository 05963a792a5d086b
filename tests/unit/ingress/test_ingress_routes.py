"""The ingress routing table: host and path precedence, backends from the Service rules, TLS
certificates from Secrets (agent/ingress/routes.py)."""

from __future__ import annotations

import base64
from typing import Any

from agent.ingress import build_table
from agent.proxy import Endpoint, ServiceRuleSet
from schemas import Secret
from schemas.networking import Ingress
from schemas.protocol import Endpoint as WireEndpoint
from schemas.protocol import ServicePortRule, ServiceRule


def ingress(name: str, spec: dict[str, Any], namespace: str = "default") -> Ingress:
    return Ingress.model_validate(
        {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
    )


def to(service: str, port: int | str = 80) -> dict[str, Any]:
    key = "number" if isinstance(port, int) else "name"
    return {"service": {"name": service, "port": {key: port}}}


def path(text: str, service: str, kind: str = "Prefix") -> dict[str, Any]:
    return {"path": text, "pathType": kind, "backend": to(service)}


RULES = ServiceRuleSet.from_protocol(
    [
        ServiceRule(
            namespace="default",
            name=name,
            ports=[
                ServicePortRule(
                    name="http",
                    port=80,
                    endpoints=[WireEndpoint(address="127.0.0.9", port=port)],
                )
            ],
        )
        for name, port in (("a", 1001), ("b", 1002), ("c", 1003), ("d", 1004), ("e", 1005))
    ]
)


def routed(table: Any, host: str, request_path: str) -> str | None:
    backend = table.route(host, request_path)
    return None if backend is None else backend.label.split("/")[1].split(":")[0]


def test_exact_beats_prefix_and_the_longest_prefix_wins_element_wise() -> None:
    table = build_table(
        [
            ingress(
                "one",
                {
                    "rules": [
                        {
                            "host": "shop.example",
                            "http": {
                                "paths": [
                                    path("/", "a"),
                                    path("/api", "b"),
                                    path("/api/v2/", "c"),
                                    path("/api", "d", "Exact"),
                                ]
                            },
                        }
                    ]
                },
            )
        ],
        [],
        RULES,
    )
    assert routed(table, "shop.example", "/api") == "d"
    assert routed(table, "shop.example", "/api/") == "b"
    assert routed(table, "shop.example", "/api/v2") == "c"
    assert routed(table, "shop.example", "/api/v2/x") == "c"
    assert routed(table, "shop.example", "/apis") == "a"  # not element-wise under /api
    assert routed(table, "other.example", "/") is None  # no rule, no default: 404


def test_exact_host_then_one_label_wildcard_then_any_host_then_default_backend() -> None:
    table = build_table(
        [
            ingress(
                "b-first",
                {
                    "defaultBackend": to("e"),
                    "rules": [
                        {"host": "*.example", "http": {"paths": [path("/", "b")]}},
                        {"http": {"paths": [path("/any", "c")]}},
                    ],
                },
            ),
            ingress(
                "a-first", {"rules": [{"host": "x.example", "http": {"paths": [path("/x", "a")]}}]}
            ),
        ],
        [],
        RULES,
    )
    assert routed(table, "x.example", "/x") == "a"
    assert routed(table, "x.example", "/y") == "e"  # the host matched, its paths did not
    assert routed(table, "y.example", "/") == "b"
    assert routed(table, "z.y.example", "/any") == "c"  # a wildcard covers one label only
    assert routed(table, "example", "/nothing") == "e"


def test_backends_take_the_service_ports_endpoints_by_number_or_name() -> None:
    table = build_table(
        [
            ingress(
                "i",
                {
                    "rules": [
                        {
                            "http": {
                                "paths": [
                                    {"path": "/n", "pathType": "Prefix", "backend": to("a", 80)},
                                    {
                                        "path": "/s",
                                        "pathType": "Prefix",
                                        "backend": to("b", "http"),
                                    },
                                    {"path": "/x", "pathType": "Prefix", "backend": to("zz", 80)},
                                    {"path": "/p", "pathType": "Prefix", "backend": to("a", 81)},
                                ]
                            }
                        }
                    ]
                },
            )
        ],
        [],
        RULES,
    )
    assert table.route("h", "/n").endpoints == (Endpoint("127.0.0.9", 1001),)
    assert table.route("h", "/s").endpoints == (Endpoint("127.0.0.9", 1002),)
    assert table.route("h", "/x").endpoints == ()  # no such Service: 503
    assert table.route("h", "/p").endpoints == ()  # no such port: 503
    drained = build_table(
        [ingress("i", {"defaultBackend": to("a")})],
        [],
        RULES.without_endpoints([Endpoint("127.0.0.9", 1001)]),
    )
    assert drained.route("h", "/").endpoints == ()


def tls_secret(name: str, **data: bytes) -> Secret:
    return Secret.model_validate(
        {
            "metadata": {"name": name, "namespace": "default"},
            "type": "kubernetes.io/tls",
            "data": {k.replace("_", "."): base64.b64encode(v).decode() for k, v in data.items()},
        }
    )


def test_certificates_by_sni_name_and_problems_for_unusable_secrets() -> None:
    spec = {
        "tls": [
            {"hosts": ["a.example", "*.w.example"], "secretName": "good"},
            {"hosts": ["b.example"], "secretName": "missing"},
            {"hosts": ["c.example"], "secretName": "no-key"},
        ],
        "defaultBackend": to("a"),
    }
    table = build_table(
        [ingress("i", spec)],
        [tls_secret("good", tls_crt=b"CHAIN", tls_key=b"KEY"), tls_secret("no-key", tls_crt=b"C")],
        RULES,
    )
    good = table.certificate("a.example")
    assert good is not None
    assert good.source == "default/good"
    assert table.certificate("x.w.example") == good
    assert table.certificate(None) == good  # the default certificate
    assert table.certificate("b.example") == good  # falls back to the default
    assert len(table.problems) == 2
    assert "default/missing does not exist" in table.problems[0]
    assert "has no tls.key" in table.problems[1]
    # Problems never carry a key.
    assert "KEY" not in repr(table)


def test_kubectl_table_shows_class_hosts_address_and_ports() -> None:
    from datetime import UTC, datetime

    from reconciler.api.server._table import table

    now = datetime(2030, 1, 1, tzinfo=UTC)
    shown = ingress(
        "sites",
        {
            "ingressClassName": "capstan",
            "tls": [{"hosts": ["b.example"], "secretName": "b"}],
            "rules": [
                {"host": "a.example", "http": {"paths": [path("/", "a")]}},
                {"host": "b.example", "http": {"paths": [path("/", "b")]}},
            ],
        },
    ).to_dict()
    shown["status"] = {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}}
    shown["metadata"]["creationTimestamp"] = "2029-12-31T23:55:00Z"
    document = table([shown], kind="Ingress", now=now, include="None")
    assert [c["name"] for c in document["columnDefinitions"]] == [
        "Name",
        "Class",
        "Hosts",
        "Address",
        "Ports",
        "Age",
    ]
    assert document["rows"][0]["cells"] == [
        "sites",
        "capstan",
        "a.example,b.example",
        "10.0.0.1,10.0.0.2",
        "80, 443",
        "5m",
    ]
