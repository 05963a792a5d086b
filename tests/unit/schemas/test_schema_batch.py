"""batch/v1 Job and CronJob: what validates, what is refused and where the error points, and
the five-field cron schedules the CronJob controller fires on; and the kinds beside them that
are refused (ReplicationController) or stored with a warning (HPA, PDB, NetworkPolicy)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from reconciler.source import ManifestErrors, load_repository
from schemas import parse_object
from schemas.batch import CronJob, Job
from schemas.cron import CronError, parse_cron

JOB = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  backoffLimit: 2
  ttlSecondsAfterFinished: 600
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: app:1
          command: ["./migrate"]
"""

CRONJOB = """\
apiVersion: batch/v1
kind: CronJob
metadata:
  name: backup
spec:
  schedule: "30 2 * * *"
  timeZone: Europe/Berlin
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
            - name: backup
              image: app:1
"""


def errors(doc: dict) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as caught:
        parse_object(doc)
    return [(e["loc"], e["msg"]) for e in caught.value.errors()]


def manifest(text: str) -> dict:
    loaded: dict = yaml.safe_load(text)
    return loaded


def test_job_and_cronjob_load_from_a_repository(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB)
    (tmp_path / "cron.yaml").write_text(CRONJOB)
    loaded = {item.obj.kind: item.obj for item in load_repository(tmp_path).objects}
    job = loaded["Job"]
    assert isinstance(job, Job)
    assert (job.spec.backoff_limit, job.spec.ttl_seconds_after_finished) == (2, 600)
    assert job.spec.wanted_completions == 1
    cron = loaded["CronJob"]
    assert isinstance(cron, CronJob)
    assert cron.spec.concurrency_policy == "Forbid"
    assert cron.spec.successful_jobs_history_limit == 3


def test_bad_schedule_is_reported_at_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "cron.yaml").write_text(CRONJOB.replace('"30 2 * * *"', '"61 2 * * *"'))
    with pytest.raises(ManifestErrors) as caught:
        load_repository(tmp_path)
    (error,) = caught.value.errors
    assert (error.file, error.line, error.field_path) == ("cron.yaml", 6, "spec.schedule")
    assert "minute: 61 is outside 0-59" in str(error)


def test_job_must_not_restart_always() -> None:
    doc = manifest(JOB.replace("restartPolicy: Never", "restartPolicy: Always"))
    ((loc, message),) = errors(doc)
    assert loc == ("spec", "template", "spec", "restartPolicy")
    assert "Never or OnFailure" in message


def test_job_without_restart_policy_is_refused_as_kubernetes_does() -> None:
    doc = manifest(JOB.replace("      restartPolicy: Never\n", ""))
    assert errors(doc)[0][0] == ("spec", "template", "spec", "restartPolicy")


@pytest.mark.parametrize(
    ("field", "value"),
    [("backoffLimitPerIndex", 1), ("podFailurePolicy", {"rules": []})],
)
def test_job_fields_capstan_cannot_honour_are_refused(field: str, value: object) -> None:
    doc = manifest(JOB)
    doc["spec"][field] = value
    ((loc, message),) = errors(doc)
    assert loc == ("spec", field)
    assert "not supported by Capstan" in message


def test_indexed_job_needs_completions_as_kubernetes_requires() -> None:
    doc = manifest(JOB)
    doc["spec"].pop("completions", None)
    doc["spec"]["completionMode"] = "Indexed"
    assert errors(doc) == [(("spec", "completions"), "is required when completionMode is Indexed")]
    doc["spec"]["completions"] = 4
    assert parse_object(doc).spec.completion_mode == "Indexed"  # type: ignore[attr-defined]


def test_cronjob_time_zone_must_exist() -> None:
    doc = manifest(CRONJOB.replace("Europe/Berlin", "Mars/Olympus"))
    assert errors(doc) == [(("spec", "timeZone"), "unknown time zone 'Mars/Olympus'")]


def test_cronjob_refuses_tz_inside_the_schedule() -> None:
    doc = manifest(CRONJOB.replace('"30 2 * * *"', '"CRON_TZ=UTC 30 2 * * *"'))
    ((loc, message),) = errors(doc)
    assert loc == ("spec", "schedule")
    assert "spec.timeZone" in message


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("* * * *", "has 4 fields; expected 5"),
        ("*/0 * * * *", "minute: step '0' must be a positive number"),
        ("* 24 * * *", "hour: 24 is outside 0-23"),
        ("* * 0 * *", "day of month: 0 is outside 1-31"),
        ("* * * foo *", "month: 'foo' is not a number or a name"),
        ("* * * * 5-1", "day of week: range '5-1' runs backwards"),
        ("@every", "unknown macro '@every'"),
    ],
)
def test_cron_errors_name_the_part(expression: str, problem: str) -> None:
    with pytest.raises(CronError, match=problem.replace("*", r"\*")):
        parse_cron(expression)


def fires(expression: str, after: datetime, until: datetime) -> list[str]:
    return [t.isoformat() for t in parse_cron(expression).fire_times(after, until)]


def test_cron_steps_ranges_names_and_macros() -> None:
    monday = datetime(2027, 1, 4, 8, 50, tzinfo=UTC)
    assert fires("*/15 9-10 * * mon-fri", monday, monday.replace(hour=11)) == [
        f"2027-01-04T{h:02}:{m:02}:00+00:00" for h in (9, 10) for m in (0, 15, 30, 45)
    ]
    assert parse_cron("@daily") == parse_cron("0 0 * * *")
    assert parse_cron("0 0 * * 7") == parse_cron("0 0 * * SUN")
    # Saturday 2027-01-09 → the next weekday-only run is Monday 2027-01-11.
    saturday = datetime(2027, 1, 9, 12, tzinfo=UTC)
    assert parse_cron("0 6 * * 1-5").next_fire(saturday) == datetime(2027, 1, 11, 6, tzinfo=UTC)


def test_cron_day_fields_are_ored_when_both_are_restricted() -> None:
    # The 13th, or any Friday: January 2027 has Fridays on 1, 8, 15, 22, 29.
    start = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    days = [t[8:10] for t in fires("0 0 13 * fri", start, datetime(2027, 1, 31, tzinfo=UTC))]
    assert days == ["01", "08", "13", "15", "22", "29"]


def test_cron_follows_the_wall_clock_of_its_zone_across_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    after = datetime(2026, 3, 28, 0, 0, tzinfo=berlin)
    until = datetime(2026, 3, 31, 0, 0, tzinfo=berlin)
    # 02:30 does not exist on 2026-03-29 (clocks jump from 02:00 to 03:00): no run that day.
    assert fires("30 2 * * *", after, until) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_last_fire_counts_the_missed_runs() -> None:
    start = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    latest, count = parse_cron("*/10 * * * *").last_fire(start, start.replace(hour=9, minute=5))
    assert latest == start.replace(hour=9, minute=0)
    assert count == 6


def test_replication_controller_is_refused_naming_its_replacement(tmp_path: Path) -> None:
    (tmp_path / "rc.yaml").write_text(
        "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: old\n"
        "spec:\n  replicas: 1\n  selector:\n    app: old\n"
    )
    with pytest.raises(ManifestErrors) as caught:
        load_repository(tmp_path)
    (error,) = caught.value.errors
    assert (error.file, error.line, error.field_path) == ("rc.yaml", 2, "kind")
    assert "apps/v1 Deployment (or ReplicaSet)" in str(error)


NOT_ACTED_ON = """\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 10
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
spec:
  podSelector: {}
  policyTypes: [Ingress]
"""


def test_hpa_and_network_policy_validate_with_a_warning_saying_what_capstan_does(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from reconciler.cli import cli

    (tmp_path / "policies.yaml").write_text(NOT_ACTED_ON)
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    # The PodDisruptionBudget is honoured (by evictions and `capstan node drain`): no warning.
    assert "PodDisruptionBudget" in result.stdout
    assert "PodDisruptionBudget" not in result.stderr
    warnings = sorted(result.stderr.splitlines(), key=lambda w: int(w.split(":")[1]))
    assert warnings == [
        f"{tmp_path}/policies.yaml:1: warning: HorizontalPodAutoscaler 'web': stored, not acted "
        "on: Capstan does not autoscale; the target keeps the replicas written in its own "
        "manifest",
        f"{tmp_path}/policies.yaml:18: warning: NetworkPolicy 'deny-all': stored, not "
        "enforced: every pod can reach every other pod and Service; no traffic is filtered",
    ]


def test_a_disruption_budget_with_both_bounds_is_refused_at_its_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from reconciler.cli import cli

    (tmp_path / "pdb.yaml").write_text(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\nspec:\n"
        "  minAvailable: 1\n  maxUnavailable: 50%\n  selector: {matchLabels: {app: web}}\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "pdb.yaml:6:" in result.output
    assert "spec.maxUnavailable: minAvailable and maxUnavailable cannot both" in result.output
