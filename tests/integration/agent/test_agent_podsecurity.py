"""The agent's pod security against the real Docker Engine: what reaches Docker, and what not.

A container plants a symlink to ``/`` in its emptyDir and a later subPath mount tries to
follow it (Kubernetes CVE-2017-1002101); a pod asking for SYS_ADMIN reaches the agent
directly (as if the control plane had been bypassed); runAsNonRoot meets a root image;
runAsUser 0 and fsGroup are applied as given.
"""

from __future__ import annotations

import os
from typing import Any

from agent_harness import BUSYBOX, make_pod, ready

from tests.fixtures.waiting import wait_until

SLEEP = ["sleep", "3600"]


def waiting(status: dict[str, Any] | None, container: str) -> dict[str, Any]:
    for entry in (status or {}).get("containerStatuses", []):
        if entry["name"] == container:
            return entry["state"].get("waiting") or {}
    return {}


def container_of(agent, pod: str, container: str) -> dict[str, Any] | None:
    return next(
        (
            c
            for c in agent.containers()
            if f"_{pod}_" in c["name"] and f"_{container}_" in c["name"]
        ),
        None,
    )


def output(agent, pod: str, container: str) -> str:
    """The first line the container printed (waiting until it has printed one)."""
    found = container_of(agent, pod, container)
    assert found is not None

    def line() -> str:
        return agent.docker.api.logs(found["id"]).decode().partition("\n")[0]

    return wait_until(line, timeout=10, what=f"output of {pod}/{container}")


def test_a_sub_path_through_a_planted_symlink_never_becomes_a_bind(agent):
    client = agent.client()
    planter = {
        "name": "app",
        "image": BUSYBOX,
        "command": SLEEP,
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    pod = make_pod("escape", [planter], volumes=[{"name": "data", "emptyDir": {}}])
    client.sync([pod], 1)
    client.wait_pods(lambda s: ready(s.get("escape")), what="the planter running")
    found = container_of(agent, "escape", "app")
    assert found is not None
    exec_id = agent.docker.api.exec_create(found["id"], ["ln", "-s", "/", "/data/host"])
    agent.docker.api.exec_start(exec_id)
    assert os.path.islink(agent.volume(pod, "data") / "host")

    reader = {
        "name": "reader",
        "image": BUSYBOX,
        "command": SLEEP,
        "volumeMounts": [{"name": "data", "mountPath": "/host", "subPath": "host"}],
    }
    inside = {
        "name": "inside",
        "image": BUSYBOX,
        "command": SLEEP,
        "volumeMounts": [{"name": "data", "mountPath": "/logs", "subPath": "logs/app"}],
    }
    pod["spec"]["containers"] = [planter, reader, inside]
    client.sync([pod], 2)
    statuses = client.wait_pods(
        lambda s: (
            waiting(s.get("escape"), "reader").get("reason") == "CreateContainerConfigError" and s
        ),
        what="the reader refused",
    )
    message = waiting(statuses["escape"], "reader")["message"]
    assert message == (
        'failed to prepare subPath for volumeMount "data" of container "reader": '
        "'host' resolves outside the volume"
    )
    assert container_of(agent, "escape", "reader") is None
    # An ordinary subPath in the same volume is created and bound.
    client.wait_pods(
        lambda s: container_of(agent, "escape", "inside") is not None, what="the inside container"
    )
    assert (agent.volume(pod, "data") / "logs" / "app").is_dir()


def test_the_agent_refuses_what_its_pod_security_level_forbids(agent):
    client = agent.client()
    admin = make_pod(
        "admin",
        [
            {
                "name": "app",
                "image": BUSYBOX,
                "command": SLEEP,
                "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}},
            }
        ],
    )
    plain = make_pod("plain", [{"name": "app", "image": BUSYBOX, "command": SLEEP}])
    client.sync([admin, plain], 1)
    statuses = client.wait_pods(
        lambda s: ready(s.get("plain")) and "admin" in s and s, what="both pods reported"
    )
    assert statuses["admin"]["phase"] == "Failed"
    assert statuses["admin"]["reason"] == "Refused"
    assert (
        'violates PodSecurity "baseline:latest": non-default capabilities'
        in (statuses["admin"]["message"])
    )
    assert not [c for c in agent.containers() if "_admin_" in c["name"]]


def test_run_as_non_root_run_as_user_zero_and_fs_group(agent):
    client = agent.client()
    show = ["sh", "-c", "id; sleep 3600"]
    root_image = make_pod(
        "rootimg",
        [{"name": "app", "image": BUSYBOX, "command": SLEEP}],
        securityContext={"runAsNonRoot": True},
    )
    non_root = make_pod(
        "nonroot",
        [
            {
                "name": "app",
                "image": BUSYBOX,
                "command": show,
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
        securityContext={"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 2000},
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    zero = make_pod(
        "zero",
        [{"name": "app", "image": BUSYBOX, "command": show, "securityContext": {"runAsUser": 0}}],
        securityContext={"runAsUser": 1000},
    )
    client.sync([root_image, non_root, zero], 1)
    statuses = client.wait_pods(
        lambda s: (
            ready(s.get("nonroot"))
            and ready(s.get("zero"))
            and waiting(s.get("rootimg"), "app").get("reason") == "CreateContainerConfigError"
            and s
        ),
        what="two pods running, one refused",
    )
    message = waiting(statuses["rootimg"], "app")["message"]
    assert message.startswith("container has runAsNonRoot and image will run as root (pod: ")
    assert container_of(agent, "rootimg", "app") is None
    assert output(agent, "nonroot", "app").startswith("uid=1000 gid=0(root) groups=0(root),2000")
    assert output(agent, "zero", "app").startswith("uid=0(root)")
    assert os.stat(agent.volume(non_root, "data")).st_gid == 2000
