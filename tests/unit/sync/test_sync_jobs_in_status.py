"""A commit's Jobs in ``capstan status``: synced from Git (so managed), shown with health and
completions as the Job controller reports them; Jobs a CronJob makes are not the commit's."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sync_testdata import RepoWriter

from reconciler.api import Api
from reconciler.cli import cli
from reconciler.sync import sync_commit
from schemas.batch import Job, JobStatus
from schemas.meta import Condition, ObjectMeta

JOB = """\
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: default}
spec:
  completions: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: capstan.local/busybox:1}]
"""


def test_a_commits_jobs_show_in_status(api: Api, repos: RepoWriter, tmp_path: Path) -> None:
    repo, commit = repos.load({"job.yaml": JOB})
    assert sync_commit(api, repo, commit=commit).succeeded
    job = api.get(Job, "migrate", namespace="default")
    api.update_status(job.model_copy(update={"status": JobStatus(active=1, succeeded=1)}))
    # A CronJob's run: not from Git, not the commit's.
    api.create(
        job.model_copy(update={"metadata": ObjectMeta(name="backup-29000000", namespace="default")})
    )
    store = f"sqlite:///{tmp_path / 'state.db'}"
    text = CliRunner().invoke(cli, ["status", "--store", store])
    assert text.exit_code == 0, text.output
    row = next(line for line in text.output.splitlines() if line.startswith("default/migrate"))
    assert row.split()[1:3] == ["Progressing", "1/2"]
    assert "backup-29000000" not in text.output

    done = api.get(Job, "migrate", namespace="default")
    complete = Condition(type="Complete", status="True")
    api.update_status(
        done.model_copy(update={"status": JobStatus(succeeded=2, conditions=[complete])})
    )
    doc = json.loads(CliRunner().invoke(cli, ["status", "--store", store, "-o", "json"]).output)
    [shown] = doc["jobs"]
    assert (shown["name"], shown["health"], shown["succeeded"], shown["completions"]) == (
        "migrate",
        "Healthy",
        2,
        2,
    )
