"""``capstan status`` shows the control plane: the replicas, who leads, since when, its term."""

from __future__ import annotations

import json
import threading

from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.store import open_store
from reconciler.store.election import ElectionSettings, LeaderElector

FAST = ElectionSettings(lease_duration_s=5, renew_deadline_s=4, retry_period_s=0.1)


def test_status_names_the_leader_its_term_and_every_replica(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    led = threading.Event()
    with open_store(url) as store:
        electors = [
            LeaderElector(
                store,
                identity=name,
                settings=FAST,
                listen="127.0.0.1:6443",
                on_started_leading=lambda _: led.set(),
                on_stopped_leading=lambda _: None,
            )
            for name in ("cp1", "cp2")
        ]
        for elector in electors:
            elector.start()
        try:
            assert led.is_set()
            term = electors[0].leadership.term
            as_json = CliRunner().invoke(cli, ["status", "--store", url, "-o", "json"])
            text = CliRunner().invoke(cli, ["status", "--store", url])
        finally:
            for elector in electors:
                elector.stop()
    assert as_json.exit_code == 0, as_json.output
    plane = json.loads(as_json.output)["controlPlane"]
    assert plane["leader"] == "cp1"
    assert plane["term"] == term
    assert plane["leaderSince"]
    assert [(r["identity"], r["leader"]) for r in plane["replicas"]] == [
        ("cp1", True),
        ("cp2", False),
    ]
    assert text.exit_code == 0, text.output
    assert f"Leader:   cp1 since {plane['leaderSince']}" in text.output
    assert f"term {term}" in text.output
    assert "Replicas: 2: cp1 (leader), cp2" in text.output
