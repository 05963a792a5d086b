"""A DaemonSet on a fleet of real nodes: one pod on each, and one on a node added later.

Each node is an sshd + ``capstan-agent serve`` pair on loopback (``tests/fixtures/sshd.py``)
running its pods on Docker, declared in Git as a Node manifest with its host key pinned;
``capstan up --no-local-agent`` is the control plane. Adding a node is a commit of its Node
manifest, as a user would do it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from schemas import DaemonSet
from tests.e2e.conftest import CapstanUp, GitRepo
from tests.fixtures.local_agent import BUSYBOX, cleanup_proxy, proxy_args
from tests.fixtures.sshd import SshNode, SshNodeFarm
from tests.fixtures.waiting import wait_until

DAEMONSET = f"""\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-agent
spec:
  selector:
    matchLabels:
      app: node-agent
  template:
    metadata:
      labels:
        app: node-agent
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: {BUSYBOX}
          command: ["sleep", "3600"]
"""


def running_on(node: SshNode) -> list[str]:
    """Ids of the DaemonSet's containers Docker runs for ``node``'s agent."""
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=io.capstan.managed-by={node.name}",
            "--filter",
            "label=io.capstan.container=main",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def placement(up: CapstanUp) -> dict[str, int]:
    """Ready DaemonSet pods per node."""
    counts: dict[str, int] = {}
    for pod in up.ready_pods("node-agent"):
        node = pod.spec.node_name or ""
        counts[node] = counts.get(node, 0) + 1
    return counts


class Fleet:
    """The control plane and the nodes started so far; ``add()`` starts one more."""

    def __init__(self, up: CapstanUp, farm: SshNodeFarm) -> None:
        self.up = up
        self.farm = farm
        self.proxy_args: list[tuple[str, ...]] = []

    def add(self) -> SshNode:
        args = proxy_args("capds")
        self.proxy_args.append(args)
        return self.farm.start(1, agent_args=args)[0]


@pytest.fixture
def fleet(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[Fleet]:
    started: Fleet | None = None
    try:
        with SshNodeFarm(prefix="ds") as farm:
            up = CapstanUp(GitRepo(tmp_path / "repo"), tmp_path, docker_client)
            started = Fleet(up, farm)
            try:
                yield started
            finally:
                up.close()
    finally:
        # After the agents stopped: nothing re-creates the rules.
        for args in started.proxy_args if started is not None else ():
            cleanup_proxy(args)


def test_a_daemonset_runs_on_every_node_and_on_a_node_added_later(fleet: Fleet) -> None:
    up = fleet.up
    first = [fleet.add(), fleet.add()]
    up.repo.commit(
        "two nodes and a daemon",
        {
            **{f"nodes/{n.name}.yaml": n.manifest() for n in first},
            "daemon.yaml": DAEMONSET,
        },
    )
    up.start("--no-local-agent")
    wait_until(
        lambda: placement(up) == {n.name: 1 for n in first},
        timeout=120,
        what="one Ready daemon pod on each of the two nodes",
    )
    assert all(len(running_on(n)) == 1 for n in first)

    # A third host joins the fleet: committing its Node manifest is all it takes.
    added = fleet.add()
    up.repo.commit("a third node", {f"nodes/{added.name}.yaml": added.manifest()})
    nodes = [*first, added]
    wait_until(
        lambda: placement(up) == {n.name: 1 for n in nodes},
        timeout=120,
        what="a daemon pod on the added node too",
    )
    assert all(len(running_on(n)) == 1 for n in nodes)
    wait_until(
        lambda: (
            (s := up.api.get(DaemonSet, "node-agent", namespace="default").status) is not None
            and s.desired_number_scheduled == s.number_available == 3
        ),
        timeout=60,
        what="the DaemonSet's status to count three nodes",
    )
