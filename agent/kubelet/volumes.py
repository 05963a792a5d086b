"""Pod volumes on the node's disk, under the agent's state directory.

Called by the executor before a pod's containers start: ``emptyDir`` becomes a directory all
containers of the pod mount read-write; ``configMap``/``secret`` volumes become files written
from the objects sent with the desired set (secret files 0400, never logged), mounted
read-only; a ``projected`` volume writes its configMap, secret and downwardAPI sources into one
directory (a serviceAccountToken source writes nothing: Capstan issues no projected tokens).
With a pod ``fsGroup`` every volume is group-owned by it (emptyDir setgid, files
group-readable), as Kubernetes does. Writes are idempotent: unchanged files are not rewritten.
A ``hostPath`` volume is the node's own path, left where it is: :func:`prepare_host_paths`
checks it (or creates it) as its ``type`` says, right before a container start, as the
kubelet's hostPath plugin does when it sets the volume up.
:func:`sub_path_sources` resolves a container's ``subPath`` mounts right before its start.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from agent.kubelet.podspec import ConfigError, ConfigIndex, DesiredPod, pod_dir, volume_dir
from agent.runtime.facts import PodUID
from agent.state import atomic_write
from schemas.pod import Container, HostPathVolumeSource, KeyToPath, ProjectedVolumeSource

_CONFIG_MODE = 0o444
_SECRET_MODE = 0o400


def _write_files(
    root: Path,
    values: Mapping[str, bytes],
    items: list[KeyToPath],
    *,
    default_mode: int,
    fs_group: int | None,
) -> None:
    top = os.fspath(root)
    try:
        top_mode = os.stat(top).st_mode
    except FileNotFoundError:
        os.makedirs(top, exist_ok=True)
        top_mode = os.stat(top).st_mode
    if stat.S_IMODE(top_mode) != 0o755:
        os.chmod(top, 0o755)  # noqa: S103 - containers running as any user read these files
    if items:
        selected = {i.path: (values[i.key], i.mode) for i in items if i.key in values}
    else:
        selected = {key: (value, None) for key, value in values.items()}
    wanted: set[str] = set()
    for relative, (data, mode) in selected.items():
        target = os.path.join(top, relative)
        if "/" in relative:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        wanted.add(target)
        file_mode = mode if mode is not None else default_mode
        if fs_group is not None:
            # Kubernetes' volume ownership: the fsGroup may read what the owner may read.
            file_mode |= (file_mode & 0o400) >> 3
        if not _holds(target, data, file_mode, fs_group):
            # Not fsynced: a volume is rewritten from the persisted desired set wherever it
            # differs, and a ConfigMap change rewrites it in every pod of the node at once.
            atomic_write(Path(target), data, mode=file_mode, durable=False)
            if fs_group is not None:
                os.chown(target, -1, fs_group)
    for directory, _dirs, names in os.walk(top):
        for name in names:
            existing = os.path.join(directory, name)
            if existing not in wanted and os.path.isfile(existing):
                os.unlink(existing)


def _holds(target: str, data: bytes, mode: int, fs_group: int | None) -> bool:
    """Whether the file at ``target`` already has ``data``, ``mode`` and group."""
    try:
        found = os.stat(target)
    except FileNotFoundError:
        return False
    if (
        found.st_size != len(data)
        or stat.S_IMODE(found.st_mode) != mode
        or (fs_group is not None and found.st_gid != fs_group)
    ):
        return False
    # os calls, not open(): a buffered file costs an fstat, an ioctl and two lseeks more.
    fd = os.open(target, os.O_RDONLY)
    try:
        return os.read(fd, len(data) + 1) == data
    finally:
        os.close(fd)


def _selected(values: Mapping[str, bytes], items: list[KeyToPath]) -> Mapping[str, bytes]:
    if not items:
        return values
    return {i.path: values[i.key] for i in items if i.key in values}


def _pod_field(d: DesiredPod, path: str) -> bytes:
    meta = d.pod.metadata
    if path in ("metadata.labels", "metadata.annotations"):
        pairs = meta.labels if path == "metadata.labels" else meta.annotations
        return "".join(f'{key}="{value}"\n' for key, value in sorted(pairs.items())).encode()
    fields = {"metadata.name": d.name, "metadata.namespace": d.namespace, "metadata.uid": d.uid}
    return fields.get(path, "").encode()


def _projected_files(
    d: DesiredPod, source: ProjectedVolumeSource, contents: VolumeContents
) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for projection in source.sources:
        if projection.config_map is not None:
            values = contents.config_map(d.namespace, projection.config_map.name) or {}
            files.update(_selected(values, projection.config_map.items))
        elif projection.secret is not None:
            values = contents.secret(d.namespace, projection.secret.name) or {}
            files.update(_selected(values, projection.secret.items))
        elif projection.downward_api is not None:
            for item in projection.downward_api.items:
                files[item.path] = _pod_field(d, item.field_ref.field_path)
    return files


class VolumeContents:
    """The files a ConfigMap or Secret gives a volume, computed once per object.

    One is kept for a desired set's :class:`ConfigIndex`: a ConfigMap every pod of the node
    mounts is decoded once for all of them, not once per pod."""

    def __init__(self, configs: ConfigIndex) -> None:
        self.configs = configs
        self._config_maps: dict[tuple[str, str], Mapping[str, bytes]] = {}
        self._secrets: dict[tuple[str, str], Mapping[str, bytes]] = {}

    def config_map(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        key = (namespace, name)
        if key not in self._config_maps:
            config_map = self.configs.config_maps.get(key)
            if config_map is None:
                return None
            values = {k: v.encode() for k, v in config_map.data.items()}
            values.update({k: base64.b64decode(v) for k, v in config_map.binary_data.items()})
            self._config_maps[key] = values
        return self._config_maps[key]

    def secret(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        key = (namespace, name)
        if key not in self._secrets:
            secret = self.configs.secrets.get(key)
            if secret is None:
                return None
            self._secrets[key] = secret.decoded()
        return self._secrets[key]


def materialize(
    d: DesiredPod,
    *,
    state_dir: Path,
    configs: ConfigIndex,
    contents: VolumeContents | None = None,
) -> None:
    """Create or refresh every volume of the pod on disk (blocking).

    ``contents``: the files of ``configs``' objects, when the caller materializes many pods
    under the same ``configs``."""
    if contents is None or contents.configs is not configs:
        contents = VolumeContents(configs)
    context = d.pod.spec.security_context
    fs_group = context.fs_group if context is not None else None
    for volume in d.pod.spec.volumes:
        path = volume_dir(state_dir, d.uid, volume.name)
        if volume.ephemeral is not None:
            # Docker keeps the data (a named volume); the pod's directory marks the pod as
            # this node's until the volume is removed with it.
            pod_dir(state_dir, d.uid).mkdir(parents=True, exist_ok=True)
        elif volume.empty_dir is not None:
            path.mkdir(parents=True, exist_ok=True)
            # Like Kubernetes: world-writable so a container running as any user can use it;
            # with an fsGroup, owned by that group and setgid so new files inherit it.
            if fs_group is not None:
                os.chown(path, -1, fs_group)
                os.chmod(path, 0o2777)  # noqa: S103 - as Kubernetes' emptyDir
            else:
                os.chmod(path, 0o777)  # noqa: S103 - as Kubernetes' emptyDir
        elif volume.config_map is not None:
            source = volume.config_map
            _write_files(
                path,
                contents.config_map(d.namespace, source.name) or {},
                source.items,
                default_mode=source.default_mode or _CONFIG_MODE,
                fs_group=fs_group,
            )
        elif volume.projected is not None:
            _write_files(
                path,
                _projected_files(d, volume.projected, contents),
                [],
                default_mode=volume.projected.default_mode or _CONFIG_MODE,
                fs_group=fs_group,
            )
        elif volume.secret is not None:
            secret_source = volume.secret
            _write_files(
                path,
                contents.secret(d.namespace, secret_source.secret_name) or {},
                secret_source.items,
                default_mode=secret_source.default_mode or _SECRET_MODE,
                fs_group=fs_group,
            )


#: What a ``hostPath`` type requires at the path: (stat test, what the kubelet says it is not).
_HOST_PATH_KINDS: Final[dict[str, tuple[Callable[[int], bool], str]]] = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "DirectoryOrCreate": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "FileOrCreate": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket file"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def prepare_host_paths(d: DesiredPod) -> None:
    """Check every ``hostPath`` volume of the pod against its ``type``, creating what the
    ``...OrCreate`` types create (a directory 0755, or an empty file 0644 whose parent must
    exist), as the kubelet does; raises :class:`ConfigError` in the kubelet's words."""
    for volume in d.pod.spec.volumes:
        if volume.host_path is not None:
            try:
                _prepare_host_path(volume.host_path)
            except (_HostPathError, OSError) as exc:
                raise ConfigError(
                    f'MountVolume.SetUp failed for volume "{volume.name}" : {exc}'
                ) from exc


class _HostPathError(Exception):
    """A hostPath volume's ``type`` check failed (the message is the kubelet's)."""


def _prepare_host_path(source: HostPathVolumeSource) -> None:
    kind = source.type or ""
    if kind not in _HOST_PATH_KINDS:
        return  # "": no checks, as in Kubernetes (Docker creates a missing directory)
    path = Path(source.path)
    if not os.path.lexists(path):
        if kind == "DirectoryOrCreate":
            path.mkdir(mode=0o755, parents=True, exist_ok=True)
        elif kind == "FileOrCreate":
            # Not the parent: Kubernetes' FileOrCreate creates the file only.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    test, what = _HOST_PATH_KINDS[kind]
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = 0
    if not test(mode):
        raise _HostPathError(f"hostPath type check failed: {path} is not {what}")


def sub_path_sources(d: DesiredPod, container: Container, *, state_dir: Path) -> dict[int, Path]:
    """The checked host source of each ``subPath`` mount of ``container``, by mount index.

    Symlinks are resolved first (a container can plant one in an emptyDir for a later
    subPath mount to follow: Kubernetes CVE-2017-1002101, CVE-2021-25741), the result must
    lie inside the volume's own directory, and it is that resolved path Docker binds, so a
    link planted in place of the subPath afterwards is not followed. A missing subPath of an
    emptyDir is created, as the kubelet does. Raises :class:`ConfigError` otherwise.
    """
    volumes = {v.name: v for v in d.pod.spec.volumes}
    sources: dict[int, Path] = {}
    for index, mount in enumerate(container.volume_mounts):
        if not mount.sub_path:
            continue
        failed = (
            f'failed to prepare subPath for volumeMount "{mount.name}" of container '
            f'"{container.name}"'
        )
        volume = volumes[mount.name]
        if volume.host_path is not None:
            root = Path(volume.host_path.path).resolve()
        else:
            root = volume_dir(state_dir, d.uid, mount.name).resolve()
        source = (root / mount.sub_path).resolve()
        if not source.is_relative_to(root):
            raise ConfigError(f"{failed}: {mount.sub_path!r} resolves outside the volume")
        if not source.exists():
            if volume.empty_dir is None and volume.host_path is None:
                raise ConfigError(f"{failed}: {mount.sub_path!r} does not exist in the volume")
            source.mkdir(mode=0o777, parents=True, exist_ok=True)
            if source.resolve() != source:
                raise ConfigError(f"{failed}: {mount.sub_path!r} changed while it was created")
        sources[index] = source
    return sources


def remove_pod_dir(state_dir: Path, uid: PodUID) -> None:
    shutil.rmtree(pod_dir(state_dir, uid), ignore_errors=True)


def existing_pod_dirs(state_dir: Path) -> list[str]:
    """The names under ``pods/`` that are directories (a directory entry's type, no stat
    each: the kubelet lists them on every pass)."""
    try:
        with os.scandir(state_dir / "pods") as entries:
            return [entry.name for entry in entries if entry.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
