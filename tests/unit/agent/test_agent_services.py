"""The kubelet's side of Services, as plain data: what a pod's containers get from Services."""

from __future__ import annotations

import asyncio

from agent_testdata import SETTINGS, desired, observed, pod

from agent.kubelet.podspec import container_config, sandbox_config
from agent.kubelet.services import NodeServices, published_endpoints
from agent.proxy import CommandResult, Endpoint, Proxy, ServiceRuleSet, extra_hosts, service_env
from agent.runtime.facts import SANDBOX_CONTAINER, ContainerID, PortBinding
from schemas.protocol import Endpoint as WireEndpoint
from schemas.protocol import ServicePortRule, ServiceRule


def rules(*endpoint_ports: int, name: str = "api") -> ServiceRuleSet:
    return ServiceRuleSet.from_protocol(
        [
            ServiceRule(
                namespace="default",
                name=name,
                ports=[
                    ServicePortRule(
                        port=80,
                        endpoints=[
                            WireEndpoint(address="127.0.0.2", port=p) for p in endpoint_ports
                        ],
                    )
                ],
            )
        ]
    )


def test_service_env_goes_under_the_containers_own_env():
    d = desired(
        pod(
            containers=[
                {
                    "name": "app",
                    "image": "i:1",
                    "env": [{"name": "API_SERVICE_PORT", "value": "mine"}],
                }
            ]
        )
    )
    env = service_env(rules(31000), namespace="default")
    config = container_config(
        d,
        d.pod.spec.containers[0],
        settings=SETTINGS,
        sandbox_id=ContainerID("s"),
        attempt=0,
        backoff_step=0,
        service_env=env,
    )
    values = dict(config.env)
    assert values["API_SERVICE_PORT"] == "mine"
    assert values["API_SERVICE_HOST"] == env["API_SERVICE_HOST"]


def test_sandbox_gets_the_service_names_in_its_hosts_file():
    d = desired(pod())
    hosts = extra_hosts(rules(31000), namespace="default")
    config = sandbox_config(d, settings=SETTINGS, attempt=0, backoff_step=0, hosts=hosts)
    assert config.extra_hosts["api"] == config.extra_hosts["api.default"]


def test_spec_hashes_do_not_depend_on_services():
    # Services are not an input of desired_pod at all: pods never restart for an endpoint
    # change; this pins that the configs built with different Services keep the labels.
    d = desired(pod())
    spec = d.pod.spec.containers[0]
    before = container_config(
        d,
        spec,
        settings=SETTINGS,
        sandbox_id=ContainerID("s"),
        attempt=0,
        backoff_step=0,
        service_env=service_env(rules(31000), namespace="default"),
    )
    after = container_config(
        d,
        spec,
        settings=SETTINGS,
        sandbox_id=ContainerID("s"),
        attempt=0,
        backoff_step=0,
        service_env=service_env(rules(31001, name="other"), namespace="default"),
    )
    assert before.env != after.env
    assert before.labels == after.labels


def test_published_endpoints_are_the_sandboxs_ipv4_host_ports():
    d = desired(pod())
    sandbox = observed(
        d,
        SANDBOX_CONTAINER,
        host_ports=(
            PortBinding(container_port=8080, protocol="tcp", host_ip="127.0.0.2", host_port=32001),
            PortBinding(container_port=8080, protocol="tcp", host_ip="::", host_port=32001),
            PortBinding(container_port=9090, protocol="tcp", host_ip="127.0.0.2", host_port=0),
        ),
    )
    assert published_endpoints(sandbox) == (Endpoint("127.0.0.2", 32001),)


def test_proxy_ready_names_the_sync_generation_whose_services_are_programmed():
    kernel_ok = [True]

    def nft(argv, *, stdin=None):
        return CommandResult(0 if kernel_ok[0] else 1, "", "" if kernel_ok[0] else "refused")

    def service(*endpoint_ports: int) -> list[ServiceRule]:
        (rule,) = [
            ServiceRule(
                namespace="default",
                name="api",
                ports=[
                    ServicePortRule(
                        port=80,
                        endpoints=[
                            WireEndpoint(address="127.0.0.2", port=p) for p in endpoint_ports
                        ],
                    )
                ],
            )
        ]
        return [rule]

    async def scenario() -> list[str]:
        services = NodeServices(Proxy(node_addresses=["127.0.0.2"], mode="nftables", runner=nft))
        seen = []

        async def take(rules: list[ServiceRule], generation: int) -> None:
            services.take(rules, generation=generation)
            await services.apply()  # queued behind the take's own apply: both are done
            seen.append(services.condition().message or "")

        first = service(31000, 31001)
        await take(first, 3)
        await take(first, 4)  # the very rules again: nothing programmed
        await take(service(31000), 5)
        kernel_ok[0] = False
        await take(service(31001), 6)  # the kernel refuses: generation 5 still serves
        return seen

    assert [m.rsplit("; ", 1)[-1] for m in asyncio.run(scenario())] == [
        "Services of sync generation 3",
        "Services of sync generation 3",
        "Services of sync generation 5",
        "Services of sync generation 5",
    ]
