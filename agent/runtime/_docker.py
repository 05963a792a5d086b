"""The Docker Engine behind the kubelet: the only module in Capstan that imports ``docker``.

Called from the kubelet's worker threads (every method blocks); it turns Docker's JSON into
:mod:`agent.runtime.facts` values and :class:`~agent.runtime.facts.ContainerConfig` into
``create``/``start`` calls. It never decides anything: which container to start or stop is
the planner's business.
"""

from __future__ import annotations

import io
import tarfile
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors

from agent.runtime.base import ImageError, RuntimeFailure, StartFailed, Stream
from agent.runtime.facts import (
    LABEL_ATTEMPT,
    LABEL_BACKOFF_STEP,
    LABEL_CONTAINER,
    LABEL_GRACE_SECONDS,
    LABEL_MANAGED_BY,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_SPEC_HASH,
    ContainerConfig,
    ContainerID,
    ContainerState,
    ExecResult,
    Mount,
    NodeName,
    ObservedContainer,
    PodUID,
    PortBinding,
    RegistryAuth,
)

# Docker's connection pool defaults to 10; the executor runs more calls than that at once
# and requests would otherwise open and discard a connection per extra call.
_POOL_SIZE = 32
_API_TIMEOUT_S = 120
_NEVER = "0001-01-01T00:00:00Z"


def _parse_time(text: str | None) -> float | None:
    if not text or text.startswith(_NEVER[:4]):
        return None
    # Docker writes nanoseconds; datetime takes at most microseconds.
    text = text.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _int_label(labels: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(labels.get(key, default))
    except ValueError:
        return default


def _host_ports(inspect: Mapping[str, Any]) -> tuple[PortBinding, ...]:
    ports = (inspect.get("NetworkSettings") or {}).get("Ports") or {}
    found: list[PortBinding] = []
    for key, bindings in sorted(ports.items()):
        port, _, proto = key.partition("/")
        for binding in bindings or ():
            found.append(
                PortBinding(
                    container_port=int(port),
                    protocol=cast(Any, proto or "tcp"),
                    host_ip=str(binding.get("HostIp", "")),
                    host_port=int(binding.get("HostPort") or 0),
                )
            )
    return tuple(found)


def _observed(inspect: Mapping[str, Any]) -> ObservedContainer:
    config = inspect.get("Config") or {}
    labels: Mapping[str, str] = config.get("Labels") or {}
    state = inspect.get("State") or {}
    status = cast(ContainerState, state.get("Status", "dead"))
    return ObservedContainer(
        id=ContainerID(str(inspect["Id"])),
        name=str(inspect.get("Name", "")).lstrip("/"),
        pod_uid=PodUID(labels.get(LABEL_POD_UID, "")),
        pod_name=labels.get(LABEL_POD_NAME, ""),
        pod_namespace=labels.get(LABEL_POD_NAMESPACE, ""),
        container=labels.get(LABEL_CONTAINER, ""),
        spec_hash=labels.get(LABEL_SPEC_HASH, ""),
        image=str(config.get("Image", "")),
        state=status,
        attempt=_int_label(labels, LABEL_ATTEMPT, 0),
        backoff_step=_int_label(labels, LABEL_BACKOFF_STEP, 0),
        grace_seconds=_int_label(labels, LABEL_GRACE_SECONDS, 30),
        exit_code=int(state["ExitCode"]) if status in ("exited", "dead", "created") else None,
        created_at=_parse_time(inspect.get("Created")),
        started_at=_parse_time(state.get("StartedAt")),
        finished_at=_parse_time(state.get("FinishedAt")),
        pid=int(state.get("Pid") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
        host_ports=_host_ports(inspect),
        hosts_path=str(inspect.get("HostsPath") or ""),
    )


class DockerRuntime:
    """Blocking access to the local Docker Engine, for one node's containers.

    Thread-safe: the kubelet calls it from a pool of worker threads at once.
    """

    def __init__(self, *, base_url: str | None = None) -> None:
        try:
            if base_url is None:
                self._client = docker.from_env(max_pool_size=_POOL_SIZE, timeout=_API_TIMEOUT_S)
            else:
                self._client = docker.DockerClient(
                    base_url=base_url, max_pool_size=_POOL_SIZE, timeout=_API_TIMEOUT_S
                )
        except docker.errors.DockerException as exc:
            # The client asks the daemon for its API version on construction.
            raise RuntimeFailure(f"Docker is unreachable: {exc}") from exc
        self._api = self._client.api
        # Inspect results keyed by (id, state): a container's pid, ports and times only change
        # with its state, so a listing of 100 idle containers costs one API call, not 101.
        self._inspect_cache: dict[tuple[str, str], ObservedContainer] = {}
        self._lock = threading.Lock()
        self._present_images: set[str] = set()

    def close(self) -> None:
        self._client.close()

    def version(self) -> str:
        try:
            return str(self._api.version().get("Version", "unknown"))
        except (docker.errors.DockerException, OSError) as exc:
            raise RuntimeFailure(f"Docker is unreachable: {exc}") from exc

    def list_containers(self, node: NodeName) -> list[ObservedContainer]:
        """Every container this node's agent owns (label ``io.capstan.managed-by``), any state."""
        try:
            listed = self._api.containers(all=True, filters={"label": f"{LABEL_MANAGED_BY}={node}"})
        except (docker.errors.DockerException, OSError) as exc:
            # requests' connection errors are OSErrors: Docker is down or its socket is gone.
            raise RuntimeFailure(f"Docker is unreachable: {exc}") from exc
        found: list[ObservedContainer] = []
        keys: set[tuple[str, str]] = set()
        for item in listed:
            key = (str(item["Id"]), str(item.get("State", "")))
            keys.add(key)
            with self._lock:
                cached = self._inspect_cache.get(key)
            if cached is None:
                try:
                    cached = _observed(self._api.inspect_container(key[0]))
                except docker.errors.NotFound:
                    continue
                # A container seen mid-transition is not cached: its next state will differ.
                if cached.state == key[1]:
                    with self._lock:
                        self._inspect_cache[key] = cached
            found.append(cached)
        with self._lock:
            for stale in set(self._inspect_cache) - keys:
                del self._inspect_cache[stale]
        return found

    def image_present(self, image: str) -> bool:
        if image in self._present_images:
            return True
        try:
            self._api.inspect_image(image)  # type: ignore[no-untyped-call]
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:
            raise RuntimeFailure(str(exc.explanation or exc)) from exc
        with self._lock:
            self._present_images.add(image)
        return True

    def image_user(self, image: str) -> str:
        """The image's configured ``User`` (``""`` when it has none: the container runs as
        root); what the kubelet checks ``runAsNonRoot`` against."""
        try:
            inspect = self._api.inspect_image(image)  # type: ignore[no-untyped-call]
        except docker.errors.APIError as exc:
            raise RuntimeFailure(str(exc.explanation or exc)) from exc
        return str((inspect.get("Config") or {}).get("User") or "")

    def pull(self, image: str, *, auth: RegistryAuth | None = None) -> None:
        repository, tag = _split_image(image)
        auth_config = (
            None if auth is None else {"username": auth.username, "password": auth.password}
        )
        try:
            self._api.pull(repository, tag=tag, auth_config=auth_config)
        except docker.errors.APIError as exc:
            with self._lock:
                self._present_images.discard(image)
            raise ImageError("ErrImagePull", str(exc.explanation or exc)) from exc
        with self._lock:
            self._present_images.add(image)

    def create_and_start(self, config: ContainerConfig) -> ContainerID:
        port_bindings: dict[int | str, Any] = {}
        for port in config.ports:
            key = f"{port.container_port}/{port.protocol}"
            port_bindings[key] = (
                (port.host_ip,) if port.host_port is None else (port.host_ip, port.host_port)
            )
        host_config = self._api.create_host_config(
            port_bindings=port_bindings or None,
            binds=[_bind(m) for m in config.mounts] or None,
            network_mode=config.network_mode,
            mem_limit=config.mem_limit_bytes,
            nano_cpus=config.nano_cpus,
            pids_limit=config.pids_limit,
            init=config.init or None,
            security_opt=list(config.security_opt),
            privileged=False,
            extra_hosts=dict(config.extra_hosts) or None,
            pid_mode=config.pid_mode,
            ipc_mode=config.ipc_mode,
            dns=list(config.dns) or None,
            dns_search=list(config.dns_search) or None,
            dns_opt=list(config.dns_options) or None,
            read_only=config.read_only_rootfs or None,
            cap_add=list(config.cap_add) or None,
            cap_drop=list(config.cap_drop) or None,
            group_add=list(config.group_add) or None,
        )
        try:
            created = self._api.create_container(
                image=config.image,
                name=config.name,
                entrypoint=list(config.entrypoint) if config.entrypoint is not None else None,
                command=list(config.command) if config.command is not None else None,
                environment=[f"{k}={v}" for k, v in config.env],
                working_dir=config.working_dir,
                labels=dict(config.labels),
                ports=[(p.container_port, p.protocol) for p in config.ports] or None,
                hostname=config.hostname,
                user=config.user,
                host_config=host_config,
            )
        except docker.errors.APIError as exc:
            raise RuntimeFailure(str(exc.explanation or exc)) from exc
        container_id = ContainerID(str(created["Id"]))
        try:
            self._api.start(container_id)
        except docker.errors.APIError as exc:
            raise StartFailed(container_id, str(exc.explanation or exc)) from exc
        return container_id

    def pid(self, container_id: ContainerID) -> int:
        """The container's main process id on the host; 0 when it is not running."""
        try:
            inspect = self._api.inspect_container(container_id)
        except docker.errors.NotFound:
            return 0
        except (docker.errors.DockerException, OSError) as exc:
            raise RuntimeFailure(f"inspect {container_id[:12]}: {exc}") from exc
        return int((inspect.get("State") or {}).get("Pid") or 0)

    def stop(self, container_id: ContainerID, *, grace_seconds: int) -> None:
        """SIGTERM (the image's stop signal), wait ``grace_seconds``, then SIGKILL."""
        try:
            self._api.stop(container_id, timeout=grace_seconds)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            raise RuntimeFailure(str(exc.explanation or exc)) from exc

    def remove(self, container_id: ContainerID) -> None:
        try:
            self._api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            # 409: a removal is already in progress; the end state is what we asked for.
            if exc.status_code == 409:
                return
            raise RuntimeFailure(str(exc.explanation or exc)) from exc

    def remove_volumes(self, prefix: str) -> None:
        try:
            # Docker's name filter matches any part of the name; keep only the prefix's.
            listed = self._api.volumes(filters={"name": prefix}).get("Volumes") or []
            for volume in listed:
                name = str(volume["Name"])
                if not name.startswith(prefix):
                    continue
                try:
                    self._api.remove_volume(name)
                except docker.errors.NotFound:
                    continue
        except docker.errors.APIError as exc:
            # 409: a container still uses it; the pod's directory stays, and the next pass
            # tries again.
            raise RuntimeFailure(f"remove volumes {prefix}*: {exc.explanation or exc}") from exc

    def logs(self, container_id: ContainerID, *, tail: int | None, follow: bool) -> Stream:
        try:
            stream = self._api.logs(
                container_id,
                stream=True,
                follow=follow,
                tail="all" if tail is None else tail,
            )
        except docker.errors.APIError as exc:
            raise RuntimeFailure(str(exc.explanation or exc)) from exc
        return cast(Stream, stream)

    def exec(self, container_id: ContainerID, argv: list[str]) -> ExecResult:
        try:
            exec_id = self._api.exec_create(container_id, argv, stdout=True, stderr=True)["Id"]
            output = self._api.exec_start(exec_id)
            exit_code = self._api.exec_inspect(exec_id).get("ExitCode")
        except docker.errors.APIError as exc:
            raise RuntimeFailure(str(exc.explanation or exc)) from exc
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else ""
        return ExecResult(exit_code=int(exit_code if exit_code is not None else -1), output=text)

    def events(self, node: NodeName) -> Stream:
        """This node's container events: a wake-up signal, never a source of truth."""
        return cast(
            Stream,
            self._api.events(
                decode=True,
                filters={"type": "container", "label": f"{LABEL_MANAGED_BY}={node}"},
            ),
        )

    def ensure_pause_image(self, image: str, *, busybox: Path) -> None:
        """Build the sandbox image from the host's static busybox unless it exists.

        The sandbox only has to hold the pod's network namespace open: one static binary
        sleeping under Docker's init is enough, and needs no registry.
        """
        if self.image_present(image):
            return
        if not busybox.is_file():
            raise RuntimeFailure(
                f"sandbox image {image} is missing and {busybox} is not there to build it: "
                "install busybox-static or start the agent with --pause-image"
            )
        repository, tag = _split_image(image)
        self._api.import_image_from_data(
            _pause_rootfs(busybox),
            repository=repository,
            tag=tag,
            changes=['CMD ["/bin/busybox", "sleep", "2147483647"]'],
        )
        if not self.image_present(image):
            raise RuntimeFailure(f"docker import did not produce {image}")


def _bind(mount: Mount) -> str:
    """Docker's ``-v`` form: ``source:target:ro`` or ``:rw``, with ``,rslave``-style
    propagation when asked."""
    options = "ro" if mount.read_only else "rw"
    if mount.propagation is not None:
        options += f",{mount.propagation}"
    return f"{mount.source}:{mount.target}:{options}"


def _split_image(image: str) -> tuple[str, str]:
    if "@" in image:
        repository, _, digest = image.partition("@")
        return repository, digest
    repository, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return repository, tag


def _pause_rootfs(busybox: Path) -> bytes:
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "proc", "sys", "dev", "etc", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            info.mtime = int(now)
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
    return buffer.getvalue()
