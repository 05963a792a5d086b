"""What the loader reads as Kubernetes' API server and kubectl read it: a mapping key written as
a number is text, ``metadata.selfLink`` is dropped, and so is ``metadata.namespace`` on a
cluster-scoped kind (``rest.BeforeCreate`` clears it). Each case is a file from
tests/corpus/documents, as its repository publishes it."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.source import load_repository
from schemas import KubeObject

DOCUMENTS = Path(__file__).resolve().parents[2] / "corpus" / "documents"


def _load(tmp_path: Path, name: str) -> dict[str, KubeObject]:
    shutil.copy(DOCUMENTS / name, tmp_path)
    return {item.obj.kind: item.obj for item in load_repository(tmp_path).objects}


def test_number_keys_are_text(tmp_path: Path):
    loaded = _load(tmp_path, "ingress-nginx-configmap-number-keys.yaml")
    data = loaded["ConfigMap"].to_dict()["data"]
    assert sorted(data) == ["404", "503"]
    assert "PAGE NOT FOUND" in data["404"]


def test_yes_and_true_keys_read_as_go_yaml_reads_them(tmp_path: Path):
    (tmp_path / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: flags}\n"
        "data:\n  true: 'a'\n  1.5: 'b'\n  plain: 'c'\n"
    )
    data = load_repository(tmp_path).objects[0].obj.to_dict()["data"]
    assert data == {"true": "a", "1.5": "b", "plain": "c"}


def test_self_link_from_an_export_is_dropped(tmp_path: Path):
    hpa = _load(tmp_path, "gke-samples-exported-hpa-selflink.yaml")["HorizontalPodAutoscaler"]
    assert "selfLink" not in hpa.to_dict()["metadata"]
    assert hpa.namespace == "default"


def test_a_namespace_on_a_cluster_scoped_kind_is_dropped(tmp_path: Path):
    binding = _load(tmp_path, "gke-samples-clusterrolebinding-with-namespace.yaml")
    cluster_binding = binding["ClusterRoleBinding"]
    assert "namespace" not in cluster_binding.to_dict()["metadata"]
    assert cluster_binding.key.namespace == ""
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
