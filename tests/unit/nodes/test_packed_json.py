"""The dispatcher's packed JSON gives back exactly what was packed, and is smaller."""

from __future__ import annotations

import json
import os

import pytest

from reconciler.nodes._packed import POD_JSON, REPORT_JSON, Packer
from schemas import Pod
from schemas.protocol import PodReport


def _pod_json(name: str, *, env: int = 1, note: str = "") -> bytes:
    pod = Pod.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": "shop",
                "uid": f"uid-{name}",
                "labels": {"app": "cart", "pod-template-hash": "7c9d"},
                "annotations": {"note": note} if note else {},
            },
            "spec": {
                "nodeName": "edge-3",
                "containers": [
                    {
                        "name": "cart",
                        "image": "ghcr.io/shop/cart:2.4.1",
                        "env": [{"name": f"K{i}", "value": f"v{i}"} for i in range(env)],
                        "ports": [{"containerPort": 9000}],
                    }
                ],
            },
        }
    )
    return pod.model_dump_json(by_alias=True, exclude_none=True).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{}",
        _pod_json("cart-1"),
        # Longer than the window (the dictionary and the text no longer fit at once).
        _pod_json("cart-2", env=600),
        # Not ASCII: pydantic writes UTF-8.
        _pod_json("cart-3", note="größe ≤ 2 — 🚀"),
        os.urandom(3000),
    ],
    ids=["empty", "empty-object", "pod", "large-pod", "utf-8", "random-bytes"],
)
def test_unpack_gives_back_the_very_bytes_packed(data: bytes) -> None:
    for packer in (POD_JSON, REPORT_JSON, Packer(b"")):
        packed = packer.pack(data)
        assert packer.unpack(packed) == data
        assert packer.unpack(packed) == data  # unpacking again: nothing is consumed


def test_a_typical_pod_is_kept_in_a_fraction_of_its_json() -> None:
    data = _pod_json("cart-4")
    assert len(POD_JSON.pack(data)) < len(data) / 2
    assert json.loads(POD_JSON.unpack(POD_JSON.pack(data))) == json.loads(data)


def test_a_report_round_trips_through_its_packed_json() -> None:
    report = PodReport.model_validate(
        {
            "namespace": "shop",
            "name": "cart-1",
            "uid": "uid-cart-1",
            "status": {
                "phase": "Running",
                "message": "back-off 5m0s — restarting",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            },
        }
    )
    packed = REPORT_JSON.pack(report.model_dump_json(by_alias=True, exclude_none=True).encode())
    assert PodReport.model_validate_json(REPORT_JSON.unpack(packed)) == report
