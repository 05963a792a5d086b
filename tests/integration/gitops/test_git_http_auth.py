"""Fetching over HTTP with a token: the credential reaches git through askpass, never a URL.

The server is git's own ``git http-backend`` (CGI) behind a small basic-auth front, on
127.0.0.1: the same protocol as GitHub or GitLab over https.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import git
import pytest
from gitops_testdata import commit_files, init_repo

from reconciler.source.credentials import GitCredentials
from reconciler.source.git import GitSource, GitSourceError
from tests.fixtures.git_http import GitHttpServer

TOKEN = "glpat-Very5ecretT0ken"


@pytest.fixture
def http_repo(tmp_path: Path) -> Iterator[tuple[str, str, list[str]]]:
    work = init_repo(tmp_path / "work")
    sha = commit_files(work, {"a.yaml": "x: 1\n"})
    git.Repo.clone_from(work.working_tree_dir, tmp_path / "srv" / "repo.git", bare=True).close()
    try:
        with GitHttpServer(tmp_path / "srv", auth=("deploy", TOKEN)) as server:
            yield server.url("repo.git"), sha, server.seen_urls
    finally:
        work.close()


def test_token_authenticates_through_askpass(
    http_repo: tuple[str, str, list[str]], cache_dir: Path
) -> None:
    url, sha, seen = http_repo
    source = GitSource(
        url, cache_dir=cache_dir, credentials=GitCredentials(username="deploy", token=TOKEN)
    )
    assert source.fetch().sha == sha
    assert seen  # the server was really asked
    assert all(TOKEN not in path for path in seen)
    # The cache's config holds neither the URL's secret nor a stored credential.
    config = (source.git_dir / "config").read_text()
    assert TOKEN not in config
    assert not any(
        TOKEN in p.read_text(errors="ignore")
        for p in cache_dir.rglob("*")
        if p.is_file() and p.stat().st_size < 10**6
    )


def test_token_in_the_url_is_moved_out_of_it(
    http_repo: tuple[str, str, list[str]], cache_dir: Path
) -> None:
    url, sha, _seen = http_repo
    with_token = url.replace("http://", f"http://deploy:{TOKEN}@")
    source = GitSource(with_token, cache_dir=cache_dir)
    assert TOKEN not in source.url
    assert source.fetch().sha == sha


def test_wrong_token_fails_without_showing_it(
    http_repo: tuple[str, str, list[str]], cache_dir: Path
) -> None:
    url, _sha, _seen = http_repo
    wrong = "wrong-" + TOKEN
    source = GitSource(
        url, cache_dir=cache_dir, credentials=GitCredentials(username="deploy", token=wrong)
    )
    with pytest.raises(GitSourceError) as caught:
        source.fetch()
    assert wrong not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
