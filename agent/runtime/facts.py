"""What the container runtime tells the kubelet, and what the kubelet asks it to run.

Plain frozen data with no Docker import: the kubelet's planner reads
:class:`ObservedContainer` facts and the executor hands :class:`ContainerConfig` values to
:class:`agent.runtime.DockerRuntime`. Ownership lives in container labels (``io.capstan.*``),
so the facts survive an agent restart: the labels *are* the kubelet's memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, NewType

ContainerID = NewType("ContainerID", str)
PodUID = NewType("PodUID", str)
NodeName = NewType("NodeName", str)

LABEL_POD_UID: Final = "io.capstan.pod-uid"
LABEL_POD_NAME: Final = "io.capstan.pod-name"
LABEL_POD_NAMESPACE: Final = "io.capstan.pod-namespace"
LABEL_CONTAINER: Final = "io.capstan.container"
LABEL_SPEC_HASH: Final = "io.capstan.spec-hash"
LABEL_MANAGED_BY: Final = "io.capstan.managed-by"
# Restart bookkeeping rides on the container itself so that an agent restart loses nothing:
# which attempt this is (the restart count), how many crashes in a row preceded it (the
# back-off step) and how long it may take to stop (the pod's grace period, needed to stop an
# orphan whose pod the agent no longer knows).
LABEL_ATTEMPT: Final = "io.capstan.attempt"
LABEL_BACKOFF_STEP: Final = "io.capstan.backoff-step"
LABEL_GRACE_SECONDS: Final = "io.capstan.grace-seconds"

# Kubernetes container names are DNS labels (lower case), so "POD" never collides with one.
SANDBOX_CONTAINER: Final = "POD"

ContainerState = Literal["created", "running", "paused", "restarting", "removing", "exited", "dead"]


@dataclass(frozen=True)
class PortBinding:
    """A container port published on the host (``host_port`` 0 means "not bound yet")."""

    container_port: int
    protocol: Literal["tcp", "udp", "sctp"]
    host_ip: str
    host_port: int


@dataclass(frozen=True)
class ObservedContainer:
    """One Capstan-owned container as Docker reports it (a fact, never a wish)."""

    id: ContainerID
    name: str
    pod_uid: PodUID
    pod_name: str
    pod_namespace: str
    container: str
    spec_hash: str
    image: str
    state: ContainerState
    attempt: int = 0
    backoff_step: int = 0
    grace_seconds: int = 30
    exit_code: int | None = None
    # Wall-clock seconds since the epoch, as Docker reports them; None when never started.
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    pid: int = 0
    oom_killed: bool = False
    error: str = ""
    host_ports: tuple[PortBinding, ...] = ()
    # Docker's hosts file of the container (bind-mounted into every container of the pod);
    # the kubelet rewrites a sandbox's when the node's Services change.
    hosts_path: str = ""

    @property
    def is_sandbox(self) -> bool:
        return self.container == SANDBOX_CONTAINER

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting", "paused")


@dataclass(frozen=True)
class PortRequest:
    """Publish ``container_port`` on ``host_ip``; ``host_port`` None lets Docker choose."""

    container_port: int
    protocol: Literal["tcp", "udp", "sctp"]
    host_ip: str
    host_port: int | None = None


@dataclass(frozen=True)
class Mount:
    """A host directory (or a Docker named volume) bind-mounted into a container.

    ``propagation`` is Docker's bind propagation (``rprivate``, ``rslave``, ``rshared``) when
    the pod asks for one (``mountPropagation``); None leaves Docker's default, rprivate.
    """

    source: str
    target: str
    read_only: bool = False
    propagation: str | None = None


@dataclass(frozen=True)
class ContainerConfig:
    """Everything needed to create and start one container (app or sandbox).

    ``network_mode`` is ``"container:<id>"`` for an app container joining its pod's sandbox,
    ``"host"`` for a host-network pod the agent was told to allow, None for a sandbox on the
    default bridge. There is deliberately no ``privileged`` field: Capstan never asks for it.
    """

    name: str
    image: str
    labels: Mapping[str, str]
    entrypoint: tuple[str, ...] | None = None
    command: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    network_mode: str | None = None
    ports: tuple[PortRequest, ...] = ()
    mounts: tuple[Mount, ...] = ()
    mem_limit_bytes: int | None = None
    nano_cpus: int | None = None
    pids_limit: int = 1024
    init: bool = False
    security_opt: tuple[str, ...] = ("no-new-privileges",)
    hostname: str | None = None
    user: str | None = None
    # Supplementary groups (a pod's fsGroup), as Docker's --group-add takes them.
    group_add: tuple[str, ...] = ()
    read_only_rootfs: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    extra_hosts: Mapping[str, str] = field(default_factory=dict)
    # ``container:<sandbox id>`` when the pod shares one process namespace, ``host`` for a
    # hostPID pod.
    pid_mode: str | None = None
    # ``host`` for a hostIPC pod; None: Docker's default (a private IPC namespace).
    ipc_mode: str | None = None
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry, from a pod's ``imagePullSecrets``; never logged."""

    username: str = field(repr=False)
    password: str = field(repr=False)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str
