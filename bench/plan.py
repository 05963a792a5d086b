"""``capstan plan`` of a one-line change in a 1,000-app repository against a 100-node snapshot.

The repository: 10 namespaces and 1,000 apps, one file per app holding a Deployment (2
replicas, requests 100m CPU / 128 MiB), a Service, a ConfigMap, a Secret and a
ServiceAccount — 5,010 objects in plain YAML — committed, then a second commit changes one
line (one app's image). The snapshot: 100 nodes (16 CPU, 64 GiB, 110 pods) with the base's
2,000 pods bound across them and the 1,000 ReplicaSets, as ``capstan snapshot`` writes it.

Measured in a fresh process on the real path (``make_plan`` with the snapshot loaded from its
file, then the markdown rendered): seconds, and the process's peak RSS (interpreter and
imports included). The plan loads the head in full (it must validate all of it) and reuses
the head's parse for every file whose Git blob id is the same in the base, so the base
costs one file's parse (``loadStrategy: incremental``); the table also shows a full load of
both sides for comparison (the same plan with the incremental path disabled by a template
change would cost that).

Run from the repository root: ``.venv/bin/python bench/plan.py``. Last line: JSON
``{"plan_s": X, "peak_mb": Y}`` plus extra keys.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

APPS = 1_000
NAMESPACES = 10
NODES = 100
CHANGED_APP = 500


def _app(index: int, *, image: str) -> str:
    ns = f"team-{index % NAMESPACES}"
    name = f"app-{index:04d}"
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app: {name}}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      serviceAccountName: {name}
      containers:
        - name: main
          image: {image}
          command: ["httpd", "-f", "-p", "8080"]
          ports:
            - name: http
              containerPort: 8080
          env:
            - name: APP
              value: {name}
          resources:
            requests: {{cpu: 100m, memory: 128Mi}}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}
spec:
  selector: {{app: {name}}}
  ports:
    - port: 80
      targetPort: http
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}-config
  namespace: {ns}
data:
  mode: production
  replicas: "2"
---
apiVersion: v1
kind: Secret
metadata:
  name: {name}-secret
  namespace: {ns}
data:
  token: c2VjcmV0LXZhbHVl
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {name}
  namespace: {ns}
"""


def _git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@x",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)


def make_repository(repo: Path) -> None:
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    namespaces = "---\n".join(
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-{i}\n" for i in range(NAMESPACES)
    )
    (repo / "namespaces.yaml").write_text(namespaces)
    apps = repo / "apps"
    apps.mkdir()
    for i in range(APPS):
        (apps / f"app-{i:04d}.yaml").write_text(_app(i, image="registry.local/app:1.0"))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    changed = apps / f"app-{CHANGED_APP:04d}.yaml"
    changed.write_text(
        changed.read_text().replace("registry.local/app:1.0", "registry.local/app:1.1")
    )
    _git(repo, "commit", "-q", "-am", "one line: app-0500 to 1.1")


def make_snapshot(repo: Path, path: Path) -> int:
    """The base as a 100-node cluster runs it, saved as ``capstan snapshot`` would."""
    from reconciler.plan import from_base, load_sides
    from reconciler.snapshot import ClusterSnapshot
    from schemas import Node

    sides = load_sides(repo, base="HEAD~1", head="HEAD~1")
    objects = [o.obj for o in sides.base.objects]
    nodes = [
        Node.model_validate(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": f"node-{i:03d}", "labels": {"zone": f"z{i % 3}"}},
                "spec": {"address": f"10.0.{i // 250}.{i % 250 + 1}"},
                "status": {
                    "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                    "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
        for i in range(NODES)
    ]
    # Placed by the scheduler's dry run, as the cluster would have them.
    observed = from_base([*objects, *nodes], label="base")
    from datetime import UTC, datetime

    snapshot = ClusterSnapshot(
        taken_at=datetime.now(UTC),
        revision=None,
        nodes=tuple(nodes),
        pods=observed.pods,
        replicasets=observed.replicasets,
        objects=(),
    )
    snapshot.save(path)
    return len(observed.pods)


def child(repo: Path, snapshot: Path, *, incremental: bool) -> None:
    """One measured plan in this (fresh) process; prints JSON."""
    started = time.perf_counter()
    from reconciler.plan import from_snapshot, make_plan, render_markdown
    from reconciler.snapshot import ClusterSnapshot

    imported = time.perf_counter()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    observed = from_snapshot(ClusterSnapshot.load(snapshot), label=snapshot.name)
    t1 = time.perf_counter()
    plan = make_plan(repo, base="HEAD~1", head="HEAD", observed=observed, incremental=incremental)
    text = render_markdown(plan)
    t2 = time.perf_counter()
    print(
        json.dumps(
            {
                "import_s": imported - started,
                "snapshot_s": t1 - t0,
                "load_s": plan.timings["load_s"],
                "build_s": plan.timings["build_s"],
                "plan_s": t2 - t0,
                "cpu_s": time.process_time() - cpu0,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "strategy": plan.load_strategy,
                "exit": plan.exit_code,
                "changes": len(plan.changes),
                "unchanged": plan.unchanged,
                "starts": plan.pods_starting,
                "stops": plan.pods_stopping,
                "markdown_bytes": len(text),
            }
        )
    )


def _measure(repo: Path, snapshot: Path, *, incremental: bool) -> dict[str, object]:
    argv = [sys.executable, __file__, "--child", str(repo), str(snapshot)]
    if not incremental:
        argv.append("--full")
    out = subprocess.run(argv, check=True, capture_output=True, text=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("REPO", "SNAPSHOT"))
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), incremental=not args.full)
        return
    with tempfile.TemporaryDirectory(prefix="capstan-bench-plan-") as tmp:
        repo, snapshot = Path(tmp) / "repo", Path(tmp) / "snapshot.json"
        t0 = time.perf_counter()
        make_repository(repo)
        pods = make_snapshot(repo, snapshot)
        setup_s = time.perf_counter() - t0
        fast = _measure(repo, snapshot, incremental=True)
        full = _measure(repo, snapshot, incremental=False)
    print(
        f"setup: {APPS} apps ({APPS * 5 + NAMESPACES} objects), {NODES} nodes, {pods} pods "
        f"bound in the snapshot ({snapshot.name}); {setup_s:.1f} s"
    )
    print(
        f"plan: {fast['changes']} change(s), {fast['unchanged']} unchanged, "
        f"{fast['starts']} pod(s) start, {fast['stops']} stop, exit {fast['exit']}"
    )
    print()
    rows = [("incremental base (default)", fast), ("full load of both sides", full)]
    print(
        f"{'path':<28}{'snapshot s':>11}{'load s':>9}{'build s':>9}{'plan s':>9}"
        f"{'cpu s':>8}{'peak MB':>9}"
    )
    for name, r in rows:
        print(
            f"{name:<28}{r['snapshot_s']:>11.2f}{r['load_s']:>9.2f}{r['build_s']:>9.2f}"
            f"{r['plan_s']:>9.2f}{r['cpu_s']:>8.2f}{r['peak_mb']:>9.0f}"
        )
    print(f"(python imports before timing: {fast['import_s']:.2f} s; not counted)")
    print(
        json.dumps(
            {
                "plan_s": round(float(fast["plan_s"]), 3),  # type: ignore[arg-type]
                "peak_mb": round(float(fast["peak_mb"]), 1),  # type: ignore[arg-type]
                "plan_cpu_s": round(float(fast["cpu_s"]), 3),  # type: ignore[arg-type]
                "plan_full_load_s": round(float(full["plan_s"]), 3),  # type: ignore[arg-type]
                "load_strategy": fast["strategy"],
            }
        )
    )


if __name__ == "__main__":
    main()
