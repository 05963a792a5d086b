"""Wire JSON the node dispatcher keeps per pod, packed: deflate with a preset dictionary.

Used by the dispatcher's per-pod holders: ``desired.PodWireCache`` keeps each pod's wire
JSON packed with :data:`POD_JSON` (unpacked by ``_wire.encode_sync`` when a sync is sent), and
``reports.HeldReports`` each pod's last report packed with :data:`REPORT_JSON` (unpacked only
when a node comes back from Unknown).

WHY a preset dictionary: one pod's JSON is under a kilobyte, too little for deflate to find
much to repeat within it; most of it (the field names, ``"status":"True"``, the usual
values) is what every pod's JSON says, so a typical pod's JSON given as the dictionary lets
each one be kept as what sets it apart. :meth:`Packer.unpack` gives back the very bytes
:meth:`Packer.pack` was given, whatever they are: the dictionary changes the size only.
"""

from __future__ import annotations

import zlib

from schemas import Pod
from schemas.protocol import PodReport

__all__ = ["POD_JSON", "REPORT_JSON", "Packer"]

#: Raw deflate (no header, no checksum: the bytes never leave the process) with a 4 KiB
#: window, which holds the dictionary and a typical pod's JSON; a smaller state than
#: zlib's default makes a ``compressobj`` cheap to create, one per text.
_WINDOW_BITS = -12
_MEM_LEVEL = 2
#: Fastest level: texts are packed once per resourceVersion or report.
_LEVEL = 1


class Packer:
    """Packs and unpacks bytes with one preset dictionary. Stateless, so thread-safe."""

    def __init__(self, dictionary: bytes) -> None:
        self._dictionary = dictionary

    def pack(self, data: bytes) -> bytes:
        packer = zlib.compressobj(
            _LEVEL, zlib.DEFLATED, _WINDOW_BITS, _MEM_LEVEL, zdict=self._dictionary
        )
        return packer.compress(data) + packer.flush()

    def unpack(self, packed: bytes) -> bytes:
        unpacker = zlib.decompressobj(_WINDOW_BITS, zdict=self._dictionary)
        return unpacker.decompress(packed) + unpacker.flush()


def _wire_json(model: Pod | PodReport) -> bytes:
    return model.model_dump_json(by_alias=True, exclude_none=True).encode()


_TIME = "2026-01-01T00:00:00.000000Z"

#: A pod of a Deployment as the dispatcher sends it: the dictionary of :data:`POD_JSON`.
_TYPICAL_POD = Pod.model_validate(
    {
        "metadata": {
            "name": "web-5d8f7c9b4-x2x7q",
            "namespace": "default",
            "labels": {"app": "web", "pod-template-hash": "5d8f7c9b4"},
            "uid": "00000000-0000-0000-0000-000000000000",
            "generation": 1,
            "creationTimestamp": _TIME,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-5d8f7c9b4",
                    "uid": "00000000-0000-0000-0000-000000000000",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "registry.local/app:1",
                    "command": ["sleep", "3600"],
                    "args": ["--port", "8080"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": "VERSION", "value": "v1"}],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "64Mi"},
                        "limits": {"cpu": "500m", "memory": "128Mi"},
                    },
                    "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": True}],
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": 8080},
                        "periodSeconds": 10,
                    },
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "volumes": [{"name": "config", "configMap": {"name": "config"}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "nodeName": "node-1",
            "hostNetwork": False,
        },
    }
)

#: A running pod's report as an agent sends it: the dictionary of :data:`REPORT_JSON`.
_TYPICAL_REPORT = PodReport.model_validate(
    {
        "namespace": "default",
        "name": "web-5d8f7c9b4-x2x7q",
        "uid": "00000000-0000-0000-0000-000000000000",
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": kind, "status": "True", "lastTransitionTime": _TIME}
                for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": _TIME,
            "containerStatuses": [
                {
                    "name": "main",
                    "state": {"running": {"startedAt": _TIME}},
                    "lastState": {},
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "image": "registry.local/app:1",
                    "imageID": "",
                    "containerID": "docker://" + "0" * 64,
                }
            ],
            "hostPorts": [
                {
                    "containerName": "main",
                    "containerPort": 8080,
                    "protocol": "TCP",
                    "hostIP": "127.0.0.1",
                    "hostPort": 32768,
                }
            ],
        },
    }
)

#: Pods' wire JSON (``PodWireCache``).
POD_JSON = Packer(_wire_json(_TYPICAL_POD))
#: Agents' pod reports (``HeldReports``).
REPORT_JSON = Packer(_wire_json(_TYPICAL_REPORT))
