"""Pod fields real repositories carry, turned into Docker settings by a real agent (issue 17):
hostAliases, dnsConfig, shareProcessNamespace, enableServiceLinks, projected volumes, native
sidecars, and a gRPC readiness probe against a real gRPC health server."""

from __future__ import annotations

import base64
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from agent_harness import BUSYBOX, Agent, make_pod, pull_secret, ready
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.fixtures.waiting import wait_until

SERVICE = {
    "namespace": "default",
    "name": "web",
    "type": "ClusterIP",
    "ports": [{"name": "http", "protocol": "TCP", "port": 80, "endpoints": []}],
}
SETTINGS = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "settings", "namespace": "default"},
    "data": {"mode": "fast"},
}
PULL_SECRET = pull_secret("capstan.local", base64.b64encode(b"u:p").decode())


def sleeper(name: str, marker: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": BUSYBOX, "command": ["sleep", marker], **extra}


def exec_in(agent: Agent, docker_client, pod: str, container: str, argv: list[str]) -> str:
    (cid,) = [
        i
        for n, i in agent.container_ids().items()
        if f"_{pod}_" in n and n.rsplit("_", 2)[-2] == container
    ]
    exit_code, output = docker_client.containers.get(cid).exec_run(argv)
    assert exit_code == 0, output
    return output.decode()


def test_pod_fields_become_docker_settings(agent, docker_client):
    client = agent.client()
    pod = make_pod(
        "fields",
        [
            sleeper(
                "main",
                "3600",
                terminationMessagePolicy="FallbackToLogsOnError",
                volumeMounts=[{"name": "info", "mountPath": "/info"}],
            )
        ],
        initContainers=[sleeper("sidecar", "3601", restartPolicy="Always")],
        hostAliases=[{"ip": "127.0.0.7", "hostnames": ["db.internal", "cache.internal"]}],
        dnsPolicy="None",
        dnsConfig={
            "nameservers": ["127.0.0.53"],
            "searches": ["svc.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        },
        shareProcessNamespace=True,
        enableServiceLinks=False,
        automountServiceAccountToken=False,
        serviceAccount="default",
        imagePullSecrets=[{"name": "regcred"}],
        volumes=[
            {
                "name": "info",
                "projected": {
                    "sources": [
                        {"configMap": {"name": "settings"}},
                        {
                            "downwardAPI": {
                                "items": [
                                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}
                                ]
                            }
                        },
                        {"serviceAccountToken": {"path": "token"}},
                    ]
                },
            }
        ],
    )
    linked = make_pod("linked", [sleeper("main", "3602")])
    client.sync([pod, linked], 1, services=[SERVICE], configMaps=[SETTINGS], secrets=[PULL_SECRET])
    client.wait_pods(
        lambda s: ready(s.get("fields")) and ready(s.get("linked")), what="both pods ready"
    )

    hosts = exec_in(agent, docker_client, "fields", "main", ["cat", "/etc/hosts"])
    assert "127.0.0.7\tdb.internal" in hosts
    assert "127.0.0.7\tcache.internal" in hosts
    resolv = exec_in(agent, docker_client, "fields", "main", ["cat", "/etc/resolv.conf"])
    assert "nameserver 127.0.0.53" in resolv
    assert "search svc.example" in resolv
    assert "ndots:2" in resolv
    assert "edns0" in resolv
    processes = exec_in(agent, docker_client, "fields", "main", ["ps"])
    assert "sleep 3601" in processes, "the sidecar runs and shares the process namespace"
    assert "WEB_SERVICE_HOST" not in exec_in(agent, docker_client, "fields", "main", ["env"])
    assert "WEB_SERVICE_HOST" in exec_in(agent, docker_client, "linked", "main", ["env"])
    assert "sleep 3601" not in exec_in(agent, docker_client, "linked", "main", ["ps"])
    files = exec_in(agent, docker_client, "fields", "main", ["sh", "-c", "cat /info/*"])
    assert files == "fast" + "fields"
    assert sorted(p.name for p in Path(agent.volume(pod, "info")).iterdir()) == ["mode", "name"]


def test_a_grpc_readiness_probe_follows_the_health_service(docker_client, tmp_path):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.set("shop.Cart", health_pb2.HealthCheckResponse.SERVING)
    # The host network puts 127.0.0.1 of the pod's namespace where this test's server listens;
    # Pod Security's baseline forbids hostNetwork, so this node admits privileged pods.
    node = Agent(docker_client, tmp_path)
    node.start("--allow-host-network", "--pod-security=privileged")
    try:
        client = node.client()
        probe = {
            "grpc": {"port": port, "service": "shop.Cart"},
            "periodSeconds": 1,
            "failureThreshold": 1,
        }
        pod = make_pod("grpc", [sleeper("main", "3600", readinessProbe=probe)], hostNetwork=True)
        client.sync([pod], 1)
        client.wait_pods(lambda s: ready(s.get("grpc")), what="ready while SERVING")
        servicer.set("shop.Cart", health_pb2.HealthCheckResponse.NOT_SERVING)
        client.wait_pods(
            lambda s: s.get("grpc") and not ready(s["grpc"]), what="not ready once NOT_SERVING"
        )
        servicer.set("shop.Cart", health_pb2.HealthCheckResponse.SERVING)
        client.wait_pods(lambda s: ready(s.get("grpc")), what="ready again")
        client.sync([], 2)
        wait_until(lambda: not node.containers(), timeout=30, what="pod removed")
    finally:
        node.close()
        server.stop(grace=None)
