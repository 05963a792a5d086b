"""Git as the source: fetch the tracked branch into a cache, name commits, export one commit's tree.

The first step of the data flow (``git commit -> source: fetch -> render -> load``). The sync
loop asks ``GitSource.fetch()`` for the branch head whenever the watcher (``watch.py``) says
to look, then reads that commit through ``snapshot(sha)``: a private, read-only export of
exactly that tree, so the loader never sees a working tree someone is editing, and two
syncs never share a half-written checkout. ``capstan plan`` resolves refs with ``resolve``;
``capstan rollback`` uses ``revert`` and ``push``.

The cache is a bare repository per URL, fetched with forced refspecs: after a force push or
a history rewrite the fetched head is simply the new truth.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
import threading
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NewType
from urllib.parse import unquote, urlsplit

import git

from reconciler.source.credentials import (
    GitCredentials,
    redact,
    split_url_credentials,
    write_askpass,
)

__all__ = ["CommitInfo", "CommitSha", "GitSource", "GitSourceError"]

CommitSha = NewType("CommitSha", str)

# Config the user's ~/.gitconfig cannot override for the commands that write files from a
# commit: filters (smudge), hooks and fsmonitor could otherwise run programs while we export.
_ISOLATED_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
_BASE_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
_FETCH_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
_LOG_FORMAT = "%H%x00%an%x00%ae%x00%cI%x00%B"
_CAPSTAN_IDENTITY = {
    "GIT_AUTHOR_NAME": "Capstan",
    "GIT_AUTHOR_EMAIL": "capstan@localhost",
    "GIT_COMMITTER_NAME": "Capstan",
    "GIT_COMMITTER_EMAIL": "capstan@localhost",
}


class GitSourceError(Exception):
    """A git operation failed. The message never contains a credential."""


@dataclass(frozen=True)
class CommitInfo:
    """What a sync record says about a commit."""

    sha: CommitSha
    author: str
    message: str
    time: datetime

    @property
    def short(self) -> str:
        return self.sha[:12]

    @property
    def subject(self) -> str:
        return self.message.splitlines()[0] if self.message else ""


class GitSource:
    """A repository (local path, ``file://``, ``ssh://``, ``https://``) and the branch tracked.

    ``cache_dir`` holds the bare cache (one per URL) and the exports of commits. Credentials
    come from ``credentials``, else from a URL's userinfo (which is then removed from the
    URL), else from ``CAPSTAN_GIT_*`` environment variables. Thread-safe; a file lock also
    keeps two processes sharing a cache from fetching at once.
    """

    def __init__(
        self,
        url_or_path: str | Path,
        *,
        branch: str = "main",
        cache_dir: Path,
        credentials: GitCredentials | None = None,
    ) -> None:
        url, from_url = split_url_credentials(str(url_or_path))
        self._credentials = credentials or from_url or GitCredentials.from_env()
        self._local_path = _local_path(url)
        self.url = str(self._local_path) if self._local_path is not None else url
        self.branch = branch
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self._git_dir = self.cache_dir / f"{digest}.git"
        self._exports = self.cache_dir / "exports"
        self._exports.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._askpass = write_askpass(self.cache_dir)
        self._cmd = git.Git(str(self.cache_dir))
        self._open_cache()
        if (
            branch.startswith("-")
            or self._git("check-ref-format", f"refs/heads/{branch}", check=False) is None
        ):
            raise GitSourceError(f"invalid branch name {branch!r}")

    def __repr__(self) -> str:
        return f"GitSource({self.url!r}, branch={self.branch!r})"

    @property
    def local_path(self) -> Path | None:
        """The repository's directory when it is on this machine (watchable), else None."""
        return self._local_path

    @property
    def git_dir(self) -> Path:
        """The bare cache repository."""
        return self._git_dir

    # -- reading ---------------------------------------------------------------------------

    def fetch(self) -> CommitInfo:
        """Bring the cache up to date (all branches and tags, forced) and return the head."""
        with self._exclusive():
            self._git(
                "fetch",
                "--prune",
                "--force",
                "--no-write-fetch-head",
                "--quiet",
                "--",
                self.url,
                *_FETCH_REFSPECS,
            )
        return self.head()

    def head(self) -> CommitInfo:
        """The tracked branch's head as last fetched."""
        return self.resolve(f"refs/heads/{self.branch}")

    def resolve(self, ref: str) -> CommitInfo:
        """A branch, tag, sha or rev expression (``main~2``) as a commit in the cache."""
        if not ref or ref.startswith("-"):
            raise GitSourceError(f"invalid ref {ref!r}")
        try:
            out = self._git(
                "log",
                "-1",
                "--no-walk",
                f"--format={_LOG_FORMAT}",
                f"{ref}^{{commit}}",
                "--",
                env=_ISOLATED_ENV,
            )
        except GitSourceError as exc:
            raise GitSourceError(f"unknown ref {ref!r} in {self._display_url()}") from exc
        return _parse_log(out)

    def log_since(self, since: str, *, grep: str | None = None) -> list[CommitInfo]:
        """The commits on the tracked branch (as last fetched) that ``since`` is not part of,
        newest first; with ``grep``, only those whose message contains it (a fixed string).
        The auto-rollback looks here for its own revert before making one."""
        if not since or since.startswith("-"):
            raise GitSourceError(f"invalid ref {since!r}")
        out = self._git(
            "log",
            f"--format={_LOG_FORMAT}%x1e",
            *(("--fixed-strings", f"--grep={grep}") if grep else ()),
            f"{since}..refs/heads/{self.branch}",
            "--",
            env=_ISOLATED_ENV,
        )
        return [_parse_log(entry) for entry in out.split("\x1e") if entry.strip()]

    def checkout(self, sha: str, dest: Path) -> Path:
        """Write the tree of commit ``sha`` into ``dest`` (new or empty). Nothing of the user's
        configuration runs: no hooks, no filters."""
        commit = self.resolve(sha)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        if any(dest.iterdir()):
            raise GitSourceError(f"checkout destination {dest} is not empty")
        with tempfile.TemporaryDirectory(prefix="capstan-index-", dir=self._exports) as tmp:
            env = {**_ISOLATED_ENV, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self._git("--work-tree", str(dest), "read-tree", commit.sha, env=env)
            self._git("--work-tree", str(dest), "checkout-index", "--all", "--force", env=env)
        return dest

    @contextlib.contextmanager
    def snapshot(self, sha: str) -> Iterator[Path]:
        """A read-only export of one commit's tree, removed on exit. Each call gets its own
        directory: concurrent readers never see each other's (or a half-written) tree."""
        holder = Path(tempfile.mkdtemp(prefix="capstan-commit-", dir=self._exports))
        try:
            tree = self.checkout(sha, holder / "tree")
            _set_read_only(tree)
            yield tree
        finally:
            _set_writable(holder)
            shutil.rmtree(holder, ignore_errors=True)

    # -- writing (capstan rollback) --------------------------------------------------------

    def revert(self, shas: Sequence[str], *, message: str, author: str | None = None) -> CommitSha:
        """Make one commit on the tracked branch (in the cache) undoing ``shas``; ``push()``
        delivers it. Newest changes are undone first, as ``git revert A..B`` does. Raises
        GitSourceError on a conflict, leaving the branch as it was."""
        if not shas:
            raise GitSourceError("nothing to revert")
        with self._exclusive():
            head = self.head()
            commits = [self.resolve(sha) for sha in shas]
            order = self._newest_first([c.sha for c in commits], head=head.sha)
            env = dict(_CAPSTAN_IDENTITY)
            if author:
                name, _, email = author.partition("<")
                env["GIT_AUTHOR_NAME"] = name.strip() or "Capstan"
                env["GIT_AUTHOR_EMAIL"] = email.rstrip(">").strip() or "capstan@localhost"
            holder = Path(tempfile.mkdtemp(prefix="capstan-revert-", dir=self._exports))
            work = holder / "work"
            self._git("worktree", "add", "--detach", "--quiet", str(work), head.sha)
            try:
                wt_env = {**_ISOLATED_ENV, **env}
                try:
                    self._run_in(work, "revert", "--no-commit", "--no-edit", *order, env=wt_env)
                except GitSourceError as exc:
                    raise GitSourceError(f"cannot revert {', '.join(order)}: {exc}") from exc
                self._run_in(
                    work,
                    "commit",
                    "--allow-empty",
                    "--no-verify",
                    "--quiet",
                    "-m",
                    message,
                    env=wt_env,
                )
                new_sha = self._run_in(work, "rev-parse", "HEAD")
            finally:
                self._git("worktree", "remove", "--force", str(work), check=False)
                shutil.rmtree(holder, ignore_errors=True)
                self._git("worktree", "prune", check=False)
            # Guarded by the old value: a fetch that moved the branch meanwhile wins.
            self._git(
                "update-ref", "-m", "capstan revert", f"refs/heads/{self.branch}", new_sha, head.sha
            )
        return CommitSha(new_sha)

    def push(self) -> CommitSha:
        """Send the tracked branch to the repository (fast-forward only: a branch that moved
        meanwhile is refused, never overwritten). A local repository with the branch checked
        out is fast-forwarded in place, as ``git pull --ff-only`` would."""
        with self._exclusive():
            sha = self.head().sha
            target = self._local_path
            if target is not None and self._checked_out_branch(target) == self.branch:
                self._run_in(
                    target,
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    str(self._git_dir),
                    f"refs/heads/{self.branch}",
                )
                self._run_in(target, "merge", "--ff-only", "--quiet", sha)
            else:
                self._git(
                    "push",
                    "--quiet",
                    "--",
                    self.url,
                    f"refs/heads/{self.branch}:refs/heads/{self.branch}",
                )
        return sha

    # -- internals -------------------------------------------------------------------------

    def _open_cache(self) -> None:
        with self._exclusive():
            if not (self._git_dir / "HEAD").exists():
                # Initialised aside and renamed: a crash never leaves a half-made cache.
                holder = Path(tempfile.mkdtemp(prefix="init-", dir=self.cache_dir))
                tmp = holder / "repo.git"
                git.Repo.init(tmp, bare=True).close()
                tmp.rename(self._git_dir)
                shutil.rmtree(holder, ignore_errors=True)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._lock, open(self.cache_dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _newest_first(self, shas: list[CommitSha], *, head: CommitSha) -> list[str]:
        # Undo the newest change first so each revert applies to the tree it changed.
        # Topological, not by date: commits made within one second tie on date.
        wanted = set(shas)
        history = self._git("rev-list", "--topo-order", head).split()
        order = [sha for sha in history if sha in wanted]
        missing = wanted.difference(order)
        if missing:
            raise GitSourceError(f"not on branch {self.branch}: {', '.join(sorted(missing))}")
        return order

    def _display_url(self) -> str:
        return redact(self.url, self._secrets())

    def _secrets(self) -> tuple[str, ...]:
        return self._credentials.secrets() if self._credentials else ()

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(_BASE_ENV)
        if self._credentials is not None:
            env.update(self._credentials.git_env(askpass=self._askpass))
        if extra:
            env.update(extra)
        return env

    def _checked_out_branch(self, path: Path) -> str | None:
        if self._run_in(path, "rev-parse", "--is-bare-repository", check=False) != "false":
            return None
        return self._run_in(path, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)

    @typing.overload
    def _git(
        self, *args: str, env: dict[str, str] | None = ..., check: typing.Literal[True] = ...
    ) -> str: ...
    @typing.overload
    def _git(self, *args: str, env: dict[str, str] | None = ..., check: bool) -> str | None: ...

    def _git(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str | None:
        return self._execute(["git", "--git-dir", str(self._git_dir), *args], env=env, check=check)

    @typing.overload
    def _run_in(
        self,
        repo: Path,
        *args: str,
        env: dict[str, str] | None = ...,
        check: typing.Literal[True] = ...,
    ) -> str: ...
    @typing.overload
    def _run_in(
        self, repo: Path, *args: str, env: dict[str, str] | None = ..., check: bool
    ) -> str | None: ...

    def _run_in(
        self, repo: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> str | None:
        return self._execute(["git", "-C", str(repo), *args], env=env, check=check)

    def _execute(self, argv: list[str], *, env: dict[str, str] | None, check: bool) -> str | None:
        """Run git; its stdout (stripped), or None when it failed and ``check`` is False."""
        try:
            out = self._cmd.execute(argv, env=self._env(env), stdout_as_string=True)
        except git.GitCommandError as exc:
            if not check:
                return None
            stderr = str(exc.stderr or "").strip().removeprefix("stderr:").strip(" '\n")
            detail = stderr or f"exit status {exc.status}"
            raise GitSourceError(
                redact(f"git {_subcommand(argv)} failed for {self.url}: {detail}", self._secrets())
            ) from None
        return str(out).strip()


def _local_path(url: str) -> Path | None:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return Path(unquote(parts.path)).resolve()
    if parts.scheme or ":" in url.split("/", 1)[0]:
        return None  # a URL, or scp-like "host:path" (ssh)
    return Path(url).expanduser().resolve()


def _subcommand(argv: list[str]) -> str:
    takes_value = {"-C", "--git-dir", "--work-tree", "-c"}
    skip = False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg in takes_value:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return ""


def _parse_log(out: str) -> CommitInfo:
    sha, author, email, when, message = out.split("\x00", 4)
    return CommitInfo(
        sha=CommitSha(sha.strip()),
        author=f"{author} <{email}>",
        message=message.strip(),
        time=datetime.fromisoformat(when),
    )


def _set_read_only(root: Path) -> None:
    no_write = ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    # Bottom-up: a directory loses its write bit only after its contents were changed.
    for dirpath, _dirs, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & no_write)
        Path(dirpath).chmod(Path(dirpath).stat().st_mode & no_write)


def _set_writable(root: Path) -> None:
    if root.exists():
        # Top-down: each directory is made writable before its children are listed.
        for dirpath, _dirs, _files in os.walk(root):
            Path(dirpath).chmod(stat.S_IRWXU)
