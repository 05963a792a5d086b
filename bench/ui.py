"""Web UI benchmark: server time of each page with 1,000 pods, against the real server path.

Run from the repository root: ``.venv/bin/python bench/ui.py [--pods N] [--rounds R]``.
Starts the API server the way ``capstan up --listen`` does (``serve()``: TLS, the admin token,
an embedded SQLite store in a temp dir, uvicorn on a loopback port), creates the nodes,
Deployments and pods through the HTTP API with the admin token, logs in at ``/ui/login``,
then loads each page R times and reads the server's own ``Server-Timing`` (the page's time
in the server, network excluded) and the client's wall time.

Prints a table and as its last line one JSON object:
{"pods": N, "overview_p95_ms": X, ..., "max_p95_ms": Y}. Never fails on timing.
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

# Run as `python bench/ui.py` from the repository root: the project's packages come from there.
_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

NAMESPACE = "default"
NODES = 10
APPS = 20
_TIMING = re.compile(r"page;dur=([0-9.]+)")


def _node(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"node-{i:02d}"},
        "spec": {"address": f"10.0.0.{i + 1}"},
    }


def _deployment(i: int, replicas: int) -> dict[str, Any]:
    labels = {"app": f"app-{i:02d}"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"app-{i:02d}", "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "capstan.local/busybox:1"}]},
            },
        },
    }


def _pod(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"pod-{i:04d}",
            "namespace": NAMESPACE,
            "labels": {"app": f"app-{i % APPS:02d}"},
        },
        "spec": {
            "nodeName": f"node-{i % NODES:02d}",
            "containers": [
                {
                    "name": "app",
                    "image": "capstan.local/busybox:1",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
        },
    }


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    from reconciler.api import Api
    from reconciler.api.server import ServeOptions, ServerHooks, serve
    from reconciler.store import open_store
    from reconciler.ui import web_ui

    state = Path(tempfile.mkdtemp(prefix="capstan-bench-ui-"))
    store = open_store(f"sqlite:///{state / 'state.db'}")
    api = Api(store)
    options = ServeOptions(state_dir=state, host="127.0.0.1", port=0, freeze_gc=True)
    server = serve(api, store, options=options, hooks=ServerHooks(ui=web_ui()))
    try:
        assert server.state.tls is not None
        verify = ssl.create_default_context(cafile=str(server.state.tls.ca_cert))
        token = server.state.admin_token
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, verify=verify, headers=headers, timeout=60) as http:
            for i in range(NODES):
                http.post("/api/v1/nodes", json=_node(i)).raise_for_status()
            for i in range(APPS):
                http.post(
                    f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
                    json=_deployment(i, args.pods // APPS),
                ).raise_for_status()

            def create(i: int) -> None:
                http.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=_pod(i)).raise_for_status()

            started = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(create, range(args.pods)))
            print(
                f"created {args.pods} pods through the API in {time.perf_counter() - started:.1f}s",
                file=sys.stderr,
            )

        pages = {
            "overview": "/ui/",
            "nodes": "/ui/nodes",
            "history": "/ui/history",
            "app": f"/ui/apps/{NAMESPACE}/app-00",
            "plan": "/ui/plan",
        }
        results: dict[str, dict[str, float]] = {}
        with httpx.Client(base_url=server.url, verify=verify, timeout=60) as browser:
            login = browser.post("/ui/login", data={"token": token})
            if login.status_code != 303:
                raise SystemExit(f"login failed: {login.status_code} {login.text[:200]}")
            for name, path in pages.items():
                server_ms: list[float] = []
                wall_ms: list[float] = []
                for round_ in range(args.rounds + 2):
                    started = time.perf_counter()
                    response = browser.get(path)
                    wall = (time.perf_counter() - started) * 1000
                    response.raise_for_status()
                    match = _TIMING.search(response.headers.get("server-timing", ""))
                    if match is None:
                        raise SystemExit(f"{path} answered without Server-Timing")
                    if round_ >= 2:  # the first two warm the caches
                        server_ms.append(float(match.group(1)))
                        wall_ms.append(wall)
                results[name] = {
                    "p50": _percentile(server_ms, 0.5),
                    "p95": _percentile(server_ms, 0.95),
                    "max": max(server_ms),
                    "wall_p95": _percentile(wall_ms, 0.95),
                    "kb": len(response.content) / 1024,
                }
    finally:
        server.stop()
        store.close()

    print(
        f"web UI with {args.pods} pods, {NODES} nodes, {APPS} Deployments "
        f"({args.rounds} loads per page; server time from Server-Timing)"
    )
    print(f"{'page':<10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'wall p95':>9} {'KiB':>7}")
    for name, row in results.items():
        print(
            f"{name:<10} {row['p50']:>8.1f} {row['p95']:>8.1f} {row['max']:>8.1f} "
            f"{row['wall_p95']:>9.1f} {row['kb']:>7.1f}"
        )
    summary: dict[str, float] = {"pods": args.pods}
    summary.update({f"{name}_p95_ms": round(row["p95"], 1) for name, row in results.items()})
    summary["max_p95_ms"] = round(max(row["p95"] for row in results.values()), 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
