"""GitSource against real repositories: fetch, force pushes, exports, reverts, credentials."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import git
import pytest
from gitops_testdata import commit_files, init_repo

from reconciler.source.credentials import GitCredentials, redact
from reconciler.source.git import GitSource, GitSourceError


def test_fetch_local_path_names_the_head_commit(upstream: git.Repo, cache_dir: Path) -> None:
    sha = commit_files(upstream, {"a.yaml": "x: 1\n"}, message="first line\n\nbody text")
    source = GitSource(upstream.working_tree_dir, cache_dir=cache_dir)
    head = source.fetch()
    assert head.sha == sha
    assert head.author == "Test Author <author@example.com>"
    assert head.message == "first line\n\nbody text"
    assert head.subject == "first line"
    assert head.time.tzinfo is not None
    assert source.local_path == Path(upstream.working_tree_dir).resolve()


def test_fetch_file_url_and_new_commits(upstream: git.Repo, cache_dir: Path) -> None:
    first = commit_files(upstream, {"a.yaml": "x: 1\n"})
    source = GitSource(f"file://{upstream.working_tree_dir}", cache_dir=cache_dir)
    assert source.fetch().sha == first
    second = commit_files(upstream, {"a.yaml": "x: 2\n"})
    assert source.head().sha == first  # head() is the cache: no fetch yet
    assert source.fetch().sha == second
    assert source.resolve("main~1").sha == first


def test_force_push_makes_the_new_head_the_truth(tmp_path: Path, cache_dir: Path) -> None:
    remote = init_repo(tmp_path / "remote.git", bare=True)
    work = init_repo(tmp_path / "work")
    work.create_remote("origin", str(tmp_path / "remote.git"))
    base = commit_files(work, {"a.yaml": "x: 1\n"})
    commit_files(work, {"a.yaml": "x: 2\n"}, message="to be rewritten")
    work.git.push("origin", "main")
    source = GitSource(f"file://{tmp_path / 'remote.git'}", cache_dir=cache_dir)
    old_head = source.fetch()
    work.git.reset("--hard", base)
    rewritten = commit_files(work, {"a.yaml": "x: 3\n"}, message="rewritten")
    work.git.push("--force", "origin", "main")
    head = source.fetch()
    assert head.sha == rewritten != old_head.sha
    with source.snapshot(head.sha) as tree:
        assert (tree / "a.yaml").read_text() == "x: 3\n"
    remote.close()
    work.close()


def test_snapshot_is_exactly_one_commit_read_only_and_removed(
    upstream: git.Repo, cache_dir: Path
) -> None:
    first = commit_files(upstream, {"a.yaml": "v: 1\n", "sub/b.yaml": "b: 1\n"})
    second = commit_files(upstream, {"a.yaml": "v: 2\n", "sub/b.yaml": None})
    Path(upstream.working_tree_dir, "a.yaml").write_text("uncommitted\n")
    source = GitSource(upstream.working_tree_dir, cache_dir=cache_dir)
    source.fetch()
    with source.snapshot(first) as old, source.snapshot(second) as new:
        assert old != new
        assert (old / "a.yaml").read_text() == "v: 1\n"
        assert (old / "sub/b.yaml").read_text() == "b: 1\n"
        assert (new / "a.yaml").read_text() == "v: 2\n"
        assert not (new / "sub").exists()
        assert not (new / ".git").exists()
        # Mode bits, not a write attempt: the suite may run as root, who ignores them.
        for path in (new, new / "a.yaml", old / "sub", old / "sub/b.yaml"):
            assert path.stat().st_mode & 0o222 == 0, path
    assert not old.exists()
    assert not new.exists()


def test_concurrent_snapshots_each_see_their_own_commit(
    upstream: git.Repo, cache_dir: Path
) -> None:
    shas = [commit_files(upstream, {"a.yaml": f"v: {i}\n"}) for i in range(4)]
    source = GitSource(upstream.working_tree_dir, cache_dir=cache_dir)
    source.fetch()
    seen: dict[str, str] = {}
    errors: list[BaseException] = []

    def read(sha: str) -> None:
        try:
            for _ in range(3):
                with source.snapshot(sha) as tree:
                    seen[sha] = (tree / "a.yaml").read_text()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(sha,)) for sha in shas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert seen == {sha: f"v: {i}\n" for i, sha in enumerate(shas)}


def test_unknown_ref_and_option_like_ref_are_errors(upstream: git.Repo, cache_dir: Path) -> None:
    commit_files(upstream, {"a.yaml": "x: 1\n"})
    source = GitSource(upstream.working_tree_dir, cache_dir=cache_dir)
    source.fetch()
    with pytest.raises(GitSourceError, match="unknown ref"):
        source.resolve("no-such-branch")
    with pytest.raises(GitSourceError, match="invalid ref"):
        source.resolve("--output=/tmp/x")
    with pytest.raises(GitSourceError, match="invalid branch"):
        GitSource(upstream.working_tree_dir, cache_dir=cache_dir, branch="bad..name")


def test_missing_branch_is_a_clear_error(upstream: git.Repo, cache_dir: Path) -> None:
    commit_files(upstream, {"a.yaml": "x: 1\n"})
    source = GitSource(upstream.working_tree_dir, cache_dir=cache_dir, branch="release")
    with pytest.raises(GitSourceError, match="release"):
        source.fetch()


def test_revert_undoes_commits_and_push_updates_a_bare_remote(
    tmp_path: Path, cache_dir: Path
) -> None:
    init_repo(tmp_path / "remote.git", bare=True).close()
    work = init_repo(tmp_path / "work")
    work.create_remote("origin", str(tmp_path / "remote.git"))
    commit_files(work, {"app.yaml": "image: v1\n", "other.yaml": "o: 1\n"})
    bad1 = commit_files(work, {"app.yaml": "image: v2\n"}, message="v2")
    bad2 = commit_files(work, {"app.yaml": "image: v3\n", "new.yaml": "n: 1\n"}, message="v3")
    work.git.push("origin", "main")
    source = GitSource(f"file://{tmp_path / 'remote.git'}", cache_dir=cache_dir)
    source.fetch()

    sha = source.revert([bad1, bad2], message="Revert v2, v3: rollout failed")
    head = source.head()
    assert head.sha == sha
    assert head.message == "Revert v2, v3: rollout failed"
    with source.snapshot(sha) as tree:
        assert (tree / "app.yaml").read_text() == "image: v1\n"
        assert not (tree / "new.yaml").exists()
        assert (tree / "other.yaml").read_text() == "o: 1\n"

    assert source.push() == sha
    remote = git.Repo(tmp_path / "remote.git")
    assert remote.heads.main.commit.hexsha == sha
    assert remote.heads.main.commit.parents[0].hexsha == bad2
    remote.close()
    work.close()


def test_push_is_refused_when_the_branch_moved(tmp_path: Path, cache_dir: Path) -> None:
    init_repo(tmp_path / "remote.git", bare=True).close()
    work = init_repo(tmp_path / "work")
    work.create_remote("origin", str(tmp_path / "remote.git"))
    bad = commit_files(work, {"app.yaml": "image: v1\n"})
    work.git.push("origin", "main")
    source = GitSource(str(tmp_path / "remote.git"), cache_dir=cache_dir)
    source.fetch()
    source.revert([bad], message="revert")
    someone = commit_files(work, {"x.yaml": "x: 1\n"})
    work.git.push("origin", "main")
    with pytest.raises(GitSourceError, match="push"):
        source.push()
    assert git.Repo(tmp_path / "remote.git").heads.main.commit.hexsha == someone
    work.close()


def test_revert_into_a_checked_out_local_repository(upstream: git.Repo, cache_dir: Path) -> None:
    commit_files(upstream, {"app.yaml": "image: v1\n"})
    bad = commit_files(upstream, {"app.yaml": "image: v2\n"})
    source = GitSource(upstream.working_tree_dir, cache_dir=cache_dir)
    source.fetch()
    sha = source.revert([bad], message="Revert v2")
    source.push()
    assert upstream.head.commit.hexsha == sha
    assert Path(upstream.working_tree_dir, "app.yaml").read_text() == "image: v1\n"
    assert not upstream.is_dirty()


def test_revert_conflict_leaves_the_branch_alone(upstream: git.Repo, cache_dir: Path) -> None:
    commit_files(upstream, {"app.yaml": "image: v1\n"})
    changed = commit_files(upstream, {"app.yaml": "image: v2\n"})
    commit_files(upstream, {"app.yaml": "image: v3\n"})
    source = GitSource(upstream.working_tree_dir, cache_dir=cache_dir)
    before = source.fetch()
    with pytest.raises(GitSourceError, match="cannot revert"):
        source.revert([changed], message="revert v2 only")
    assert source.head() == before


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_credentials_never_appear_in_errors_or_reprs(cache_dir: Path) -> None:
    token = "ghp_S3cretT0kenValue"
    url = f"https://deploy:{token}@127.0.0.1:{_closed_port()}/org/repo.git"
    source = GitSource(url, cache_dir=cache_dir)
    assert token not in source.url
    assert token not in repr(source)
    with pytest.raises(GitSourceError) as caught:
        source.fetch()
    message = str(caught.value)
    assert "127.0.0.1" in message
    assert token not in message
    assert token not in repr(GitCredentials(username="u", token=token))


def test_redact_hides_tokens_and_userinfo() -> None:
    text = "fatal: unable to access 'https://bob:hunter2@host/x.git/': token hunter2 refused"
    out = redact(text, ["hunter2"])
    assert "hunter2" not in out
    assert "bob" not in out
    assert "https://***@host/x.git/" in out


def test_credentials_from_env_and_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-file\n")
    creds = GitCredentials.from_env({"CAPSTAN_GIT_TOKEN_FILE": str(token_file)})
    assert creds is not None
    assert creds.token == "tok-from-file"
    assert GitCredentials.from_env({}) is None
    env = GitCredentials.from_file(token_file, username="ci").git_env(askpass=Path("/a"))
    assert env["GIT_ASKPASS"] == "/a"
    assert "tok-from-file" not in " ".join(k for k in env)  # only in a value, never a name
    ssh = GitCredentials(ssh_key_file=Path("/k/id"), known_hosts_file=Path("/k/kh"))
    assert "StrictHostKeyChecking=yes" in ssh.git_env(askpass=Path("/a"))["GIT_SSH_COMMAND"]
    assert os.environ.get("CAPSTAN_GIT_ASKPASS_PASSWORD") is None
