"""A fleet in Git: ``capstan up`` drives two real sshd nodes declared as Node manifests.

Each node is an sshd + ``capstan-agent serve`` pair on loopback (``tests/fixtures/sshd.py``),
reached over SSH with its host key pinned in the Node manifest. ``capstan up --no-local-agent``
runs the control plane; a Deployment spreads over both nodes, a push rolls it on both, and an
sshd killed and restarted is reconnected without duplicating containers.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.e2e.conftest import CapstanUp, GitRepo, pod_endpoint, try_fetch
from tests.e2e.test_gitops_loop import page
from tests.fixtures.local_agent import cleanup_proxy, proxy_args
from tests.fixtures.sshd import SshNode, SshNodeFarm
from tests.fixtures.waiting import wait_until


def deployment(version: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 4
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: httpd
          image: capstan.local/busybox:1
          command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
          ports:
            - containerPort: 8080
          readinessProbe:
            tcpSocket:
              port: 8080
            periodSeconds: 1
          volumeMounts:
            - name: page
              mountPath: /www
      volumes:
        - name: page
          configMap:
            name: page-{version}
"""


def node_containers(node: SshNode) -> list[str]:
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            f"label=io.capstan.managed-by={node.name}",
            "--filter",
            "label=io.capstan.container=httpd",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return sorted(out.split())


@pytest.fixture
def fleet(
    docker_client: docker.DockerClient, tmp_path: Path
) -> Iterator[tuple[CapstanUp, list[SshNode]]]:
    args = [proxy_args("capf"), proxy_args("capf")]
    try:
        with SshNodeFarm(prefix="e2e") as farm:
            nodes = [farm.start(1, agent_args=a)[0] for a in args]
            repo = GitRepo(tmp_path / "repo")
            repo.commit(
                "v1",
                {
                    **{f"nodes/{n.name}.yaml": n.manifest() for n in nodes},
                    "page.yaml": page("v1"),
                    "web.yaml": deployment("v1"),
                },
            )
            capstan = CapstanUp(repo, tmp_path, docker_client)
            try:
                capstan.start("--no-local-agent")
                yield capstan, nodes
            finally:
                capstan.close()
    finally:
        for a in args:  # after the agents stopped: nothing re-creates the rules
            cleanup_proxy(a)


def serving(up: CapstanUp, version: str, nodes: list[SshNode], *, spread: bool = True) -> bool:
    pods = up.ready_pods()
    if len(pods) != 4 or len(up.pods()) != 4:
        return False
    if spread and {p.spec.node_name for p in pods} != {n.name for n in nodes}:
        return False
    return all(try_fetch(*pod_endpoint(p)) == f"hello {version}" for p in pods)


def test_two_ssh_nodes_from_git(fleet: tuple[CapstanUp, list[SshNode]]) -> None:
    up, nodes = fleet
    # The pods exist before the nodes first report: the scheduler may put them all on the
    # node that turned Ready first. The rollout below starts with both nodes Ready.
    wait_until(lambda: serving(up, "v1", nodes, spread=False), timeout=90, what="4 pods Ready")
    status = up.status()
    assert {n["name"]: n["agent"] for n in status["nodes"]} == {n.name: "Connected" for n in nodes}
    assert sum(len(node_containers(n)) for n in nodes) == 4
    # Two pods per node: the scheduler spreads one owner's replicas over ready nodes.

    up.repo.commit("v2", {"page.yaml": page("v2"), "web.yaml": deployment("v2")})
    wait_until(lambda: serving(up, "v2", nodes), timeout=90, what="v2 on both nodes")

    # sshd (and the agent channel through it) dies and comes back: reconnected, re-pushed,
    # and no container is duplicated or restarted.
    wait_until(
        lambda: sum(len(node_containers(n)) for n in nodes) == 4,
        timeout=30,
        what="v1 containers removed",
    )
    before = {n.name: node_containers(n) for n in nodes}
    victim = nodes[0]
    victim.kill_sshd()
    wait_until(
        lambda: {n["name"]: n["agent"] for n in up.status()["nodes"]}[victim.name] != "Connected",
        timeout=30,
        what="the link to be seen down",
    )
    victim.start_sshd()
    wait_until(
        lambda: {n["name"]: n["agent"] for n in up.status()["nodes"]}[victim.name] == "Connected",
        timeout=60,
        what="reconnected",
    )
    assert {n.name: node_containers(n) for n in nodes} == before
    assert serving(up, "v2", nodes)
