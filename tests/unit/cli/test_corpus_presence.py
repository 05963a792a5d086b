"""A missing shared corpus skips its tests on a workstation and fails them under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures import corpus


def test_absent_corpus_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(corpus, "SHARED_CORPUS", tmp_path / "nowhere")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        corpus.require_shared_corpus()
    assert [p.id for p in corpus.corpus_folder_params()] == ["corpus-absent"]


def test_absent_corpus_skips_without_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(corpus, "SHARED_CORPUS", tmp_path / "nowhere")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="absent"):
        corpus.require_shared_corpus()


def test_present_corpus_gives_one_case_per_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("b-app", "a-app"):
        (tmp_path / name).mkdir()
    (tmp_path / "README.md").write_text("not a folder")
    monkeypatch.setattr(corpus, "SHARED_CORPUS", tmp_path)
    monkeypatch.setenv("CI", "true")
    assert corpus.require_shared_corpus() == tmp_path
    assert [p.id for p in corpus.corpus_folder_params()] == ["a-app", "b-app"]
