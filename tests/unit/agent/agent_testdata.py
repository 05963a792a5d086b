"""Plain-data builders for the agent's unit tests (pods as manifests, containers as facts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.kubelet.podspec import (
    ConfigIndex,
    DesiredPod,
    NodeSettings,
    container_config,
    desired_pod,
)
from agent.runtime.facts import (
    SANDBOX_CONTAINER,
    ContainerConfig,
    ContainerID,
    NodeName,
    ObservedContainer,
    PodUID,
    PortBinding,
)
from schemas.pod import Pod

SETTINGS = NodeSettings(node_name=NodeName("node-a"), state_dir=Path("/var/lib/capstan"))


def pod(
    name: str = "web",
    *,
    uid: str | None = None,
    containers: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> Pod:
    return Pod.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": uid or f"uid-{name}"},
            "spec": {
                "containers": containers or [{"name": "app", "image": "capstan.local/busybox:1"}],
                **spec,
            },
        }
    )


def desired(
    p: Pod, configs: ConfigIndex | None = None, settings: NodeSettings = SETTINGS
) -> DesiredPod:
    return desired_pod(p, configs=configs or ConfigIndex(), settings=settings)


def app_config(p: Pod, *, settings: NodeSettings = SETTINGS, **kwargs: Any) -> ContainerConfig:
    """The Docker config of ``p``'s first container (attempt 0, sandbox ``sb``) on a node
    with ``settings``; ``kwargs`` go to :func:`container_config`."""
    return container_config(
        desired(p, settings=settings),
        p.spec.containers[0],
        settings=settings,
        sandbox_id=ContainerID("sb"),
        attempt=0,
        backoff_step=0,
        **kwargs,
    )


def observed(
    d: DesiredPod,
    container: str,
    *,
    state: str = "running",
    attempt: int = 0,
    spec_hash: str | None = None,
    exit_code: int | None = None,
    started_at: float | None = 1000.0,
    finished_at: float | None = None,
    backoff_step: int = 0,
    cid: str | None = None,
    host_ports: tuple[PortBinding, ...] = (),
    error: str = "",
) -> ObservedContainer:
    if spec_hash is None:
        is_sandbox = container == SANDBOX_CONTAINER
        spec_hash = d.sandbox_hash if is_sandbox else d.container_hashes[container]
    return ObservedContainer(
        id=ContainerID(cid or f"{d.uid}-{container}-{attempt}"),
        name=f"n-{container}-{attempt}",
        pod_uid=PodUID(d.uid),
        pod_name=d.name,
        pod_namespace=d.namespace,
        container=container,
        spec_hash=spec_hash,
        image="capstan.local/busybox:1",
        state=state,  # type: ignore[arg-type]
        attempt=attempt,
        backoff_step=backoff_step,
        grace_seconds=d.grace_seconds,
        exit_code=exit_code,
        created_at=started_at,
        started_at=started_at,
        finished_at=finished_at,
        pid=4242,
        host_ports=host_ports,
        error=error,
    )


def running_pod(d: DesiredPod) -> list[ObservedContainer]:
    return [observed(d, SANDBOX_CONTAINER)] + [observed(d, c) for c in d.container_hashes]
