"""Pod volumes on the node's disk, under the agent's state directory.

Called by the executor before a pod's containers start: ``emptyDir`` becomes a directory all
containers of the pod mount read-write; ``configMap``/``secret`` volumes become files written
from the objects sent with the desired set (secret files 0400, never logged), mounted
read-only; a ``projected`` volume writes its configMap, secret and downwardAPI sources into one
directory (a serviceAccountToken source writes nothing: Capstan issues no projected tokens).
Writes are idempotent: unchanged files are not rewritten.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

from agent.kubelet.podspec import ConfigIndex, DesiredPod, pod_dir, volume_dir
from agent.runtime.facts import PodUID
from agent.state import atomic_write
from schemas.pod import KeyToPath, ProjectedVolumeSource

_CONFIG_MODE = 0o444
_SECRET_MODE = 0o400


def _write_files(
    root: Path,
    values: dict[str, bytes],
    items: list[KeyToPath],
    *,
    default_mode: int,
) -> None:
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # noqa: S103 - containers running as any user read these files
    if items:
        selected = {i.path: (values[i.key], i.mode) for i in items if i.key in values}
    else:
        selected = {key: (value, None) for key, value in values.items()}
    wanted: set[Path] = set()
    for relative, (data, mode) in selected.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        wanted.add(target)
        file_mode = mode if mode is not None else default_mode
        try:
            unchanged = target.read_bytes() == data and (target.stat().st_mode & 0o777) == file_mode
        except FileNotFoundError:
            unchanged = False
        if not unchanged:
            atomic_write(target, data, mode=file_mode)
    for existing in root.rglob("*"):
        if existing.is_file() and existing not in wanted:
            existing.unlink()


def _selected(values: dict[str, bytes], items: list[KeyToPath]) -> dict[str, bytes]:
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
    d: DesiredPod, source: ProjectedVolumeSource, configs: ConfigIndex
) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for projection in source.sources:
        if projection.config_map is not None:
            config_map = configs.config_maps.get((d.namespace, projection.config_map.name))
            values = {k: v.encode() for k, v in config_map.data.items()} if config_map else {}
            files.update(_selected(values, projection.config_map.items))
        elif projection.secret is not None:
            secret = configs.secrets.get((d.namespace, projection.secret.name))
            files.update(_selected(secret.decoded() if secret else {}, projection.secret.items))
        elif projection.downward_api is not None:
            for item in projection.downward_api.items:
                files[item.path] = _pod_field(d, item.field_ref.field_path)
    return files


def materialize(d: DesiredPod, *, state_dir: Path, configs: ConfigIndex) -> None:
    """Create or refresh every volume of the pod on disk (blocking)."""
    for volume in d.pod.spec.volumes:
        path = volume_dir(state_dir, d.uid, volume.name)
        if volume.empty_dir is not None:
            path.mkdir(parents=True, exist_ok=True)
            # Like Kubernetes: world-writable so a container running as any user can use it.
            os.chmod(path, 0o777)  # noqa: S103 - as Kubernetes' emptyDir
        elif volume.config_map is not None:
            source = volume.config_map
            config_map = configs.config_maps.get((d.namespace, source.name))
            values: dict[str, bytes] = {}
            if config_map is not None:
                values = {k: v.encode() for k, v in config_map.data.items()}
                values.update({k: base64.b64decode(v) for k, v in config_map.binary_data.items()})
            _write_files(
                path, values, source.items, default_mode=source.default_mode or _CONFIG_MODE
            )
        elif volume.projected is not None:
            _write_files(
                path,
                _projected_files(d, volume.projected, configs),
                [],
                default_mode=volume.projected.default_mode or _CONFIG_MODE,
            )
        elif volume.secret is not None:
            secret_source = volume.secret
            secret = configs.secrets.get((d.namespace, secret_source.secret_name))
            _write_files(
                path,
                secret.decoded() if secret is not None else {},
                secret_source.items,
                default_mode=secret_source.default_mode or _SECRET_MODE,
            )


def remove_pod_dir(state_dir: Path, uid: PodUID) -> None:
    shutil.rmtree(pod_dir(state_dir, uid), ignore_errors=True)


def existing_pod_dirs(state_dir: Path) -> list[str]:
    root = state_dir / "pods"
    if not root.is_dir():
        return []
    return [entry.name for entry in root.iterdir() if entry.is_dir()]
