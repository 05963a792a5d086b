"""A node that goes silent (its agent host frozen with SIGSTOP) under an HA control plane.

The control plane stops hearing the node while its containers keep running — what a
partition looks like from the control plane. After the grace period the node turns Unknown
and its pods leave every Service's endpoints at once (Ready=False), before they are evicted;
after the eviction timeout they are deleted and replaced; when the node comes back, the
replacements run on it and the agent stops the evicted pods' containers (no duplicates).
"""

from __future__ import annotations

import signal
from pathlib import Path

import docker
import pytest

from reconciler.api import Api, NotFound
from reconciler.workloads.endpoints import read_endpoints
from schemas import ConfigMap, Node, Pod
from tests.e2e.test_gitops_loop import SERVICE
from tests.faults.scenario import REPLICAS, fault_rig, rolled_out
from tests.fixtures.waiting import wait_until

GRACE_S = 8
EVICTION_S = 20


def _endpoint_pods(api: Api) -> set[str]:
    try:
        config_map = api.get(ConfigMap, "web.endpoints", namespace="default")
    except NotFound:
        return set()
    endpoints = read_endpoints(config_map)
    if endpoints is None:
        return set()
    return {
        target.pod for port in endpoints.ports for target in port.targets if target.pod is not None
    }


def _web_pods(api: Api) -> list[Pod]:
    return [p for p in api.list(Pod).items if p.metadata.labels.get("app") == "web"]


def _node_ready(api: Api) -> str | None:
    node = api.get(Node, "local")
    ready = node.status.condition("Ready") if node.status is not None else None
    return ready.status if ready is not None else None


@pytest.mark.timeout(600)
def test_a_silent_node_leaves_endpoints_at_once_and_is_evicted_later(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    args = ("--node-monitor-grace-period", str(GRACE_S), "--pod-eviction-timeout", str(EVICTION_S))
    with fault_rig(
        docker_client, tmp_path, replicas=2, extra_args=args, files={"service.yaml": SERVICE}
    ) as rig:
        api = rig.plane.api
        wait_until(lambda: rolled_out(api, "v1"), timeout=240, what="v1 rolled out")
        before = {p.metadata.uid for p in _web_pods(api)}
        wait_until(
            lambda: len(_endpoint_pods(api)) == REPLICAS,
            timeout=60,
            what="every pod in the Service's endpoints",
        )
        agent = rig.agent.proc
        assert agent is not None
        agent.send_signal(signal.SIGSTOP)
        try:
            wait_until(
                lambda: not _endpoint_pods(api),
                timeout=GRACE_S + 120,
                what="the silent node's pods out of the endpoints",
            )
            # Out of the endpoints first, evicted later: the same pods, not yet deleted.
            pods = _web_pods(api)
            assert {p.metadata.uid for p in pods} == before
            assert all(p.metadata.deletion_timestamp is None for p in pods)
            assert not any(p.status is not None and p.status.ready for p in pods)
            assert _node_ready(api) == "Unknown"
            wait_until(
                lambda: (
                    all(
                        p.metadata.uid not in before or p.metadata.deletion_timestamp is not None
                        for p in _web_pods(api)
                    )
                    and len([p for p in _web_pods(api) if p.metadata.uid not in before]) == REPLICAS
                ),
                timeout=EVICTION_S + 120,
                what="the pods evicted and replaced",
            )
        finally:
            agent.send_signal(signal.SIGCONT)
        wait_until(lambda: _node_ready(api) == "True", timeout=120, what="the node back")
        wait_until(
            lambda: rolled_out(api, "v1") and not {p.metadata.uid for p in _web_pods(api)} & before,
            timeout=240,
            what="the replacements running on the node",
        )
        wait_until(
            lambda: _endpoint_pods(api) == {p.name for p in _web_pods(api)},
            timeout=60,
            what="the replacements in the endpoints",
        )
        wait_until(
            lambda: len(rig.app_containers()) == REPLICAS,
            timeout=120,
            what="the evicted pods' containers stopped (no duplicates)",
        )
