"""``capstan plan`` for the workload kinds beside Deployments, through the CLI on a real Git
repository: StatefulSet ordinals and claims, DaemonSet pods per node, a Job's pods, a
CronJob's next run, and a StatefulSet deletion keeping its claims."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import git
from click.testing import CliRunner

from reconciler.cli import cli

NODES = """\
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {disk: ssd}}
spec:
  address: 10.0.0.1
  capacity: {cpu: "4", memory: 8Gi}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
spec:
  address: 10.0.0.2
  capacity: {cpu: "4", memory: 8Gi}
"""

WORKLOADS = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: capstan.local/busybox:1}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cache, namespace: default}
spec:
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache}}
    spec:
      nodeSelector: {disk: ssd}
      containers: [{name: c, image: capstan.local/busybox:1}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: default}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: capstan.local/busybox:1}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup, namespace: default}
spec:
  schedule: "30 2 * * *"
  timeZone: Europe/Paris
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: b, image: capstan.local/busybox:1}]
"""


def commit(repo: git.Repo, root: Path, files: dict[str, str | None]) -> None:
    for name, text in files.items():
        if text is None:
            (root / name).unlink()
            repo.index.remove([name])
        else:
            (root / name).write_text(textwrap.dedent(text))
            repo.index.add([name])
    repo.index.commit("change")


def plan(root: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["plan", str(root), "--git-only", *extra])
    return result.exit_code, result.stdout


def test_plan_shows_ordinals_claims_daemons_jobs_and_cron(tmp_path: Path) -> None:
    repo = git.Repo.init(tmp_path)
    with repo.config_writer() as config:
        config.set_value("user", "name", "T")
        config.set_value("user", "email", "t@example.com")
    commit(repo, tmp_path, {"nodes.yaml": NODES})
    commit(repo, tmp_path, {"workloads.yaml": WORKLOADS})
    code, out = plan(tmp_path, "-o", "json")
    assert code == 2, out
    views = {w["name"]: w for w in json.loads(out)["workloads"]}
    db = views["db"]
    assert db["action"] == "create"
    assert db["start"] == ["default/db-0", "default/db-1", "default/db-2"]
    assert any("created in order" in line for line in db["lines"])
    assert any("data-db-0, data-db-1, data-db-2" in line for line in db["lines"])
    assert views["cache"]["start"] == ["default/cache@n1"]  # only the ssd node
    assert views["migrate"]["start"] == ["default/migrate-run1", "default/migrate-run2"]
    assert "to 3 completion(s)" in views["migrate"]["lines"][0]
    assert "in Europe/Paris: next Job at" in views["backup"]["lines"][0]
    nodes = {n["node"]: n for n in json.loads(out)["nodes"]}
    assert "default/cache (daemon)" in nodes["n1"]["start"]
    placed = [p for n in nodes.values() for p in n["start"]]
    assert {"default/db-0", "default/db-1", "default/db-2"} <= set(placed)
    assert {"default/migrate-run1", "default/migrate-run2"} <= set(placed)

    code, text = plan(tmp_path)
    assert "Workloads (StatefulSets, DaemonSets, Jobs, CronJobs):" in text
    assert "create StatefulSet default/db:" in text
    code, markdown = plan(tmp_path, "-o", "markdown")
    assert "#### Workloads" in markdown
    assert "create DaemonSet default/cache" in markdown

    # Deleting the StatefulSet: the plan says its claims stay (whenDeleted: Retain).
    commit(repo, tmp_path, {"workloads.yaml": WORKLOADS.split("---\n", 1)[1]})
    code, text = plan(tmp_path)
    assert code == 2, text
    assert "delete StatefulSet default/db:" in text
    assert "its claims are kept (persistentVolumeClaimRetentionPolicy.whenDeleted: Retain)" in text
