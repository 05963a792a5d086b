"""Read-only access to the commits ``capstan plan`` compares: resolve refs, list trees, export.

``capstan plan`` runs in CI on a checkout where the base is a remote-tracking ref
(``origin/main``), which ``GitSource.fetch`` (heads and tags only) does not bring into its
cache; so plan reads the user's repository directly, with plumbing commands that write
nothing into it: ``rev-parse``, ``ls-tree``, and ``cat-file --batch`` to write one commit's
files into a private temporary directory. No index, no hooks, no filters, no checkout.
The tree listing carries each file's blob id, which is how plan knows which files changed
between the two sides without reading them.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["GitReadError", "RepoReader", "TreeEntry", "worktree_listing"]

_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
    "GIT_OPTIONAL_LOCKS": "0",
}
_SYMLINK = "120000"


class GitReadError(Exception):
    """A ref does not resolve, or the directory is not a Git repository."""


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One file of a commit (or of a working tree): mode, blob id, path."""

    mode: str
    blob: str
    path: str

    @property
    def symlink(self) -> bool:
        return self.mode == _SYMLINK


@dataclass(frozen=True, slots=True)
class Commit:
    sha: str
    author: str
    subject: str


class RepoReader:
    """Plumbing reads of the repository at ``root`` (a working tree or a bare repository)."""

    def __init__(self, root: Path, *, git_dir: Path | None = None) -> None:
        self.root = Path(root)
        self._git_dir = git_dir
        top = self._git("rev-parse", "--show-toplevel", check=False)
        if not top and not self._git("rev-parse", "--git-dir", check=False):
            raise GitReadError(f"{self.root} is not in a Git repository")
        self.toplevel = Path(top).resolve() if top else self.root.resolve()

    def _argv(self, *args: str) -> list[str]:
        # Objects may come from another repository holding the same history (the bare
        # cache where `capstan rollback` made its commit before pushing it).
        layout = args[:2] in (("rev-parse", "--show-toplevel"), ("rev-parse", "--git-dir"))
        if self._git_dir is not None and not layout:
            return ["git", "--git-dir", str(self._git_dir), *args]
        return ["git", "-C", str(self.root), *args]

    @property
    def prefix(self) -> str:
        """Where ``root`` sits inside the repository ('' at the top)."""
        rel = self.root.resolve().relative_to(self.toplevel).as_posix()
        return "" if rel == "." else rel

    def _git(self, *args: str, check: bool = True, stdin: bytes | None = None) -> str:
        env = {**os.environ, **_ENV}
        proc = subprocess.run(
            self._argv(*args),
            input=stdin,
            capture_output=True,
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            if not check:
                return ""
            detail = proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
            raise GitReadError(f"git {args[0]} failed in {self.root}: {detail}")
        return proc.stdout.decode(errors="replace").strip()

    def resolve(self, ref: str) -> Commit:
        """``ref`` (branch, remote-tracking ref, tag, sha, ``HEAD~2``) as a commit."""
        if not ref or ref.startswith("-"):
            raise GitReadError(f"invalid ref {ref!r}")
        sha = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if not sha:
            raise GitReadError(f"unknown ref {ref!r} in {self.root}")
        out = self._git("log", "-1", "--format=%an <%ae>%x00%s", sha)
        author, _, subject = out.partition("\x00")
        return Commit(sha=sha, author=author, subject=subject)

    def tree(self, sha: str, *, prefix: str = "") -> dict[str, TreeEntry]:
        """Every file of commit ``sha`` under ``prefix`` (a directory relative to the repository
        root, '' for all), by path relative to that directory."""
        out = subprocess.run(
            self._argv("ls-tree", "-r", "-z", "--full-tree", sha),
            capture_output=True,
            env={**os.environ, **_ENV},
            check=False,
        )
        if out.returncode != 0:
            raise GitReadError(f"cannot list {sha}: {out.stderr.decode(errors='replace')}")
        entries: dict[str, TreeEntry] = {}
        for record in out.stdout.split(b"\0"):
            if not record:
                continue
            meta, _, raw_path = record.partition(b"\t")
            mode, kind, blob = meta.decode().split(" ")
            if kind != "blob":
                continue  # submodules: not part of any manifest
            path = raw_path.decode("utf-8", errors="surrogateescape")
            if prefix:
                if not path.startswith(prefix + "/"):
                    continue
                path = path[len(prefix) + 1 :]
            entries[path] = TreeEntry(mode, blob, path)
        return entries

    def export(self, entries: Mapping[str, TreeEntry], dest: Path) -> Path:
        """Write ``entries`` (from ``tree``) under ``dest``; returns ``dest``. Reads blobs in one
        ``cat-file --batch`` call. Paths that would leave ``dest`` are refused."""
        dest.mkdir(parents=True, exist_ok=True)
        ordered = list(entries.values())
        request = b"".join(f"{entry.blob}\n".encode() for entry in ordered)
        proc = subprocess.run(
            self._argv("cat-file", "--batch"),
            input=request,
            capture_output=True,
            env={**os.environ, **_ENV},
            check=False,
        )
        if proc.returncode != 0:
            raise GitReadError(f"cannot read blobs: {proc.stderr.decode(errors='replace')}")
        for entry, content in zip(ordered, _batch_contents(proc.stdout), strict=True):
            target = _inside(dest, entry.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            if entry.symlink:
                # The loader itself refuses links that leave the repository.
                target.symlink_to(content.decode("utf-8", errors="surrogateescape"))
            else:
                target.write_bytes(content)
        return dest


def _batch_contents(stream: bytes) -> Iterator[bytes]:
    pos = 0
    while pos < len(stream):
        end = stream.index(b"\n", pos)
        header = stream[pos:end].split(b" ")
        if len(header) < 3 or header[1] == b"missing":
            raise GitReadError(f"blob {header[0].decode()} is missing")
        size = int(header[2])
        start = end + 1
        yield stream[start : start + size]
        pos = start + size + 1  # the content is followed by a newline


def _inside(dest: Path, path: str) -> Path:
    parts = PurePosixPath(path).parts
    if not parts or any(part in ("..", "") for part in parts) or PurePosixPath(path).is_absolute():
        raise GitReadError(f"refusing path {path!r} from the repository")
    return dest.joinpath(*parts)


def worktree_listing(root: Path) -> dict[str, TreeEntry]:
    """The working tree's files with Git blob ids computed here (as ``git hash-object``
    would), skipping hidden entries as the loader does: ``.git``, ``.venv``, ``.github``."""
    entries: dict[str, TreeEntry] = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") and name != ".capstanignore":
                continue
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                data = os.readlink(full).encode("utf-8", errors="surrogateescape")
                mode = _SYMLINK
            else:
                try:
                    data = full.read_bytes()
                except OSError:
                    continue
                mode = "100644"
            digest = hashlib.sha1(  # noqa: S324 - Git's object id, not a security hash
                b"blob %d\0" % len(data) + data
            ).hexdigest()
            entries[rel] = TreeEntry(mode, digest, rel)
    return entries
