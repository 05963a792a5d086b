"""A hostile commit through the real sync loop: refused with file, line and limit; nothing applied.

The commit's repository is one of tests/fixtures/hostile.py (an alias bomb, Jinja bombs) on
top of a good commit; the sync loop records the failure and the good commit stays live.
"""

from __future__ import annotations

from pathlib import Path

import git
import pytest
from gitops_testdata import NAMESPACE, commit_files, configmap, manual_loop

from reconciler.api import Api
from reconciler.sync import list_sync_records, read_sync_state
from schemas import ConfigMap
from tests.fixtures.hostile import HOSTILE_REPOSITORIES


@pytest.mark.parametrize(
    ("hostile", "expected"),
    [
        ("alias-bomb", "bomb.yaml:7:7: document expands to more than 1.5 MiB of text"),
        ("jinja-center", "bomb.yaml.j2:6: template over a rendering limit: center argument"),
        ("jinja-nested-range", "bomb.yaml.j2:6: template over a rendering limit: more than"),
    ],
)
def test_a_hostile_commit_is_refused_and_the_last_good_one_stays(
    hostile: str, expected: str, upstream: git.Repo, cache_dir: Path, api: Api, tmp_path: Path
) -> None:
    good = commit_files(upstream, {"ns.yaml": NAMESPACE, "a.yaml": configmap("a", "v1")})
    loop, watch = manual_loop(api, upstream, cache_dir)
    first = loop.step()
    assert first is not None
    assert first.succeeded

    built = tmp_path / "hostile"
    built.mkdir()
    HOSTILE_REPOSITORIES[hostile](built)
    files: dict[str, str | None] = {
        str(path.relative_to(built)): path.read_text() for path in built.rglob("*")
    }
    bad = commit_files(upstream, {**files, "a.yaml": configmap("a", "v2")}, message=hostile)
    watch.trigger()
    loop.step()

    record = list_sync_records(api)[0]
    assert record.commit == bad
    assert record.outcome == "Failed"
    assert any(error.startswith(expected) for error in record.errors), record.errors
    assert api.get(ConfigMap, "a", namespace="shop").data["key"] == "v1"
    assert read_sync_state(api).live_commit == good
