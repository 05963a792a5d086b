"""Deployment → scheduler → dispatcher → real agent → Docker, and status back into the API."""

from __future__ import annotations

import urllib.request

import pytest
from click.testing import CliRunner

from reconciler.api import Api, Conflict
from reconciler.cli._app import cli
from reconciler.nodes import AGENT_CONNECTED, NodeEndpoint, NodeName
from reconciler.nodes.logs import LogsError, stream_logs
from schemas import Deployment, Node, Pod
from tests.fixtures.waiting import wait_until
from tests.integration.dispatch.conftest import Cluster, node_condition

BUSYBOX = "capstan.local/busybox:1"


def web_deployment(
    replicas: int,
    *,
    env: list[dict[str, object]] | None = None,
    extra_spec: dict[str, object] | None = None,
) -> dict[str, object]:
    container: dict[str, object] = {
        "name": "web",
        "image": BUSYBOX,
        "command": [
            "sh",
            "-c",
            "mkdir -p /www && echo hello-$POD_COLOR > /www/index.html "
            "&& exec httpd -f -p 8080 -h /www",
        ],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
        "env": env or [{"name": "POD_COLOR", "value": "blue"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [container],
                    **(extra_spec or {}),
                },
            },
        },
    }


def scale(api: Api, replicas: int) -> None:
    # Read-modify-write with optimistic concurrency, as kubectl scale does: the Deployment
    # controller may write status between the read and the update; then read again.
    for _attempt in range(20):
        current = api.get(Deployment, "web", namespace="default")
        spec = current.spec.model_copy(update={"replicas": replicas})
        try:
            api.update(current.model_copy(update={"spec": spec}))
        except Conflict:
            continue
        return
    raise AssertionError("the Deployment kept changing under 20 scale attempts")


def fetch(pod: Pod) -> str:
    assert pod.status is not None
    mapping = next(m for m in pod.status.host_ports if m.container_port == 8080)
    with urllib.request.urlopen(
        f"http://{mapping.host_ip}:{mapping.host_port}/", timeout=5
    ) as response:
        return response.read().decode().strip()


def test_node_connects_and_reports_status(cluster: Cluster) -> None:
    api = cluster.api
    wait_until(lambda: node_condition(api, cluster.node, "Ready") == "True", what="node Ready")
    wait_until(
        lambda: node_condition(api, cluster.node, AGENT_CONNECTED) == "True",
        what="AgentConnected=True",
    )
    node = api.get(Node, cluster.node)
    assert node.status is not None
    assert node.status.allocatable["cpu"].value >= 1
    assert node.status.node_info is not None
    assert node.status.node_info.docker_version
    assert any(
        a.type == "InternalIP" and a.address == cluster.agent.bind for a in node.status.addresses
    )
    lease = api.get_node_lease(cluster.node)
    assert lease is not None


def test_deployment_runs_on_the_local_node_and_scales_down(cluster: Cluster) -> None:
    api = cluster.api
    api.create(web_deployment(2))
    pods = wait_until(
        lambda: len(cluster.ready_pods(app="web")) == 2 and cluster.ready_pods(app="web"),
        what="2 pods Ready in the API",
    )
    assert isinstance(pods, list)
    for pod in pods:
        assert pod.spec.node_name == cluster.node
        assert pod.status is not None
        assert pod.status.phase == "Running"
        # The scheduler's condition survives the agent's reports.
        scheduled = pod.status.condition("PodScheduled")
        assert scheduled is not None
        assert scheduled.status == "True"
        assert fetch(pod) == "hello-blue"
    # Pod containers (plus their sandboxes) are running in Docker under the node's label.
    uids = {pod.metadata.uid for pod in pods}
    running = cluster.running_containers()
    assert {c["labels"].get("io.capstan.pod-uid") for c in running} == uids

    scale(api, 0)
    wait_until(lambda: not cluster.pods(app="web"), what="pods deleted")
    wait_until(lambda: not cluster.agent.containers(), timeout=20, what="containers removed")


def test_config_and_secret_references_reach_the_agent(cluster: Cluster) -> None:
    api = cluster.api
    api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "colors", "namespace": "default"},
            "data": {"color": "green"},
        }
    )
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "default"},
            "stringData": {"token": "s3cr3t-value"},
        }
    )
    env = [
        {"name": "POD_COLOR", "valueFrom": {"configMapKeyRef": {"name": "colors", "key": "color"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
    ]
    api.create(web_deployment(1, env=env))
    pods = wait_until(lambda: cluster.ready_pods(app="web"), what="pod Ready")
    assert isinstance(pods, list)
    assert fetch(pods[0]) == "hello-green"
    desired = cluster.dispatcher.desired_for(cluster.node)
    assert [cm.name for cm in desired.config_maps] == ["colors"]
    assert [s.name for s in desired.secrets] == ["creds"]
    assert "s3cr3t" not in repr(desired)
    # Only what the pods reference travels: the Service endpoints ConfigMaps do not.
    api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "unrelated", "namespace": "default"},
            "data": {"a": "b"},
        }
    )
    assert [cm.name for cm in cluster.dispatcher.desired_for(cluster.node).config_maps] == [
        "colors"
    ]


def test_service_rules_carry_ready_endpoints(cluster: Cluster) -> None:
    api = cluster.api
    api.create(web_deployment(2))
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": "http", "nodePort": 30999}],
            },
        }
    )

    def endpoints() -> list[tuple[str, int]]:
        rules = cluster.dispatcher.desired_for(cluster.node).services
        web = [r for r in rules if r.name == "web"]
        if not web:
            return []
        return [(e.address, e.port) for e in web[0].ports[0].endpoints]

    found = wait_until(lambda: len(endpoints()) == 2 and endpoints(), what="2 endpoints")
    pods = cluster.ready_pods(app="web")
    published = set()
    for pod in pods:
        assert pod.status is not None
        published.update((m.host_ip, m.host_port) for m in pod.status.host_ports)
    assert set(found) <= published  # type: ignore[arg-type]
    rule = next(r for r in cluster.dispatcher.desired_for(cluster.node).services if r.name == "web")
    assert rule.type == "NodePort"
    assert rule.ports[0].node_port == 30999


def test_deleting_the_node_drains_its_host_and_disconnects(cluster: Cluster) -> None:
    api = cluster.api
    api.create(web_deployment(1))
    wait_until(lambda: cluster.ready_pods(app="web"), what="pod Ready")
    assert cluster.running_containers()
    api.delete(Node, cluster.node)
    wait_until(
        lambda: not cluster.agent.containers(),
        timeout=20,
        what="the deleted node's containers removed",
    )
    wait_until(
        lambda: cluster.node not in cluster.dispatcher.pool.names(), what="connection removed"
    )


def test_logs_come_from_the_agent_through_the_node_link(cluster: Cluster) -> None:
    api = cluster.api
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "talker", "namespace": "default"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": BUSYBOX,
                        "command": ["sh", "-c", "echo first-line; echo second-line; sleep 3600"],
                    }
                ],
            },
        }
    )

    def running() -> bool:
        pod = api.get(Pod, "talker", namespace="default")
        return pod.status is not None and pod.status.phase == "Running"

    wait_until(running, what="talker running")
    endpoint = NodeEndpoint(
        name=NodeName(cluster.node), address="local", agent_command=cluster.agent.connect_command
    )
    text = wait_until(
        lambda: "".join(stream_logs(endpoint, namespace="default", pod="talker")), what="log text"
    )
    assert text == "first-line\nsecond-line\n"
    assert "".join(stream_logs(endpoint, namespace="default", pod="talker", tail=1)) == (
        "second-line\n"
    )
    with pytest.raises(LogsError):
        "".join(stream_logs(endpoint, namespace="default", pod="nobody"))
    # Follow: the existing text arrives, then the stream stays open until we close it.
    follow = stream_logs(endpoint, namespace="default", pod="talker", follow=True)
    received = ""
    while received != "first-line\nsecond-line\n":
        received += next(follow)
    follow.close()

    store_url = f"sqlite:///{cluster.store_path}"
    result = CliRunner(env={"CAPSTAN_AGENT_SOCKET": str(cluster.agent.socket)}).invoke(
        cli, ["logs", "talker", "--store", store_url], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert result.output == "first-line\nsecond-line\n"
