"""The snapshot file: round trip, no Secret value ever written, clear errors on bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.snapshot import SECRET_KEYS_ANNOTATION, ClusterSnapshot, SnapshotError
from schemas import Node, parse_object


def test_round_trip_keeps_nodes_and_drops_secret_values(tmp_path: Path) -> None:
    node = Node.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1"},
            "spec": {"address": "127.0.0.1"},
        }
    )
    secret = parse_object(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": "default"},
            "data": {"password": "aHVudGVyMg=="},
            "stringData": {"user": "admin-user"},
        }
    )
    snap = ClusterSnapshot(
        taken_at=datetime(2026, 1, 1, tzinfo=UTC),
        revision=7,
        nodes=(node,),
        pods=(),
        replicasets=(),
        objects=(secret,),
    )
    path = tmp_path / "snap.json"
    snap.save(path)
    text = path.read_text()
    assert "aHVudGVyMg==" not in text
    assert "admin-user" not in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    loaded = ClusterSnapshot.load(path)
    assert loaded.nodes == (node,)
    assert loaded.revision == 7
    [kept] = loaded.objects
    assert kept.metadata.annotations[SECRET_KEYS_ANNOTATION] == "password,user"
    assert kept.to_dict().get("data") is None


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps([1, 2]),
        json.dumps({"apiVersion": "capstan.io/v1", "kind": "Something"}),
        json.dumps(
            {
                "apiVersion": "capstan.io/v1",
                "kind": "ClusterSnapshot",
                "takenAt": "2026-01-01T00:00:00+00:00",
                "nodes": [{"kind": "Node"}],
            }
        ),
    ],
)
def test_bad_files_are_refused_with_a_snapshot_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SnapshotError):
        ClusterSnapshot.load(path)
