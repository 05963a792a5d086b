"""Generic ephemeral volumes on a real Docker Engine: a Docker named volume of the pod that
outlives a container restart and goes with the pod."""

from __future__ import annotations

import contextlib

import docker
from agent_harness import BUSYBOX, make_pod

from tests.fixtures.waiting import wait_until

# The first start records itself and fails; the second finds the first's line in the volume
# and stays up. So a container that keeps running after a restart read what the one before
# it wrote.
_TWO_STARTS = (
    'echo started >> /data/starts; [ "$(wc -l < /data/starts)" -ge 2 ] || exit 1; exec sleep 3600'
)


def _volumes(agent, prefix: str) -> list[str]:
    listed = agent.docker.api.volumes(filters={"name": prefix}).get("Volumes") or []
    return sorted(v["Name"] for v in listed if v["Name"].startswith(prefix))


def test_ephemeral_volume_survives_a_restart_and_goes_with_the_pod(agent):
    client = agent.client()
    pod = make_pod(
        "scratch",
        [
            {
                "name": "app",
                "image": BUSYBOX,
                "command": ["sh", "-c", _TWO_STARTS],
                "volumeMounts": [{"name": "cache", "mountPath": "/data"}],
            }
        ],
        volumes=[
            {
                "name": "cache",
                "ephemeral": {
                    "volumeClaimTemplate": {
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        }
                    }
                },
            }
        ],
    )
    prefix = f"capstan-eph.{agent.node}.{pod['metadata']['uid']}."
    try:
        client.sync([pod], 1)
        status = client.wait_pods(
            lambda s: (
                (app := s.get("scratch", {}).get("containerStatuses", [{}])[0])
                and app.get("restartCount", 0) >= 1
                and "running" in app.get("state", {})
                and s["scratch"]
            ),
            what="the app running again after one restart",
        )
        assert status["containerStatuses"][0]["restartCount"] == 1
        assert _volumes(agent, prefix) == [f"{prefix}cache"]
        # Docker's volume, not a directory under the agent's state.
        assert not agent.volume(pod, "cache").exists()

        client.sync([], 2)
        wait_until(lambda: not agent.containers(), timeout=30, what="the pod's containers gone")
        wait_until(lambda: not _volumes(agent, prefix), timeout=30, what="the volume removed")
        wait_until(
            lambda: not (agent.state_dir / "pods" / pod["metadata"]["uid"]).exists(),
            timeout=30,
            what="the pod's directory removed",
        )
    finally:
        for name in _volumes(agent, prefix):
            with contextlib.suppress(docker.errors.APIError):
                for container in agent.containers():
                    agent.docker.api.remove_container(container["id"], force=True)
                agent.docker.api.remove_volume(name)
