"""Helpers of the Git source and sync loop tests: real repositories made with gitpython."""

from __future__ import annotations

from pathlib import Path

import git

from reconciler.api import Api
from reconciler.source.git import GitSource
from reconciler.source.watch import BranchWatch
from reconciler.sync import SyncLoop, SyncOptions


def init_repo(path: Path, *, bare: bool = False) -> git.Repo:
    repo = git.Repo.init(path, bare=bare, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "Test Author")
        config.set_value("user", "email", "author@example.com")
        config.set_value("commit", "gpgsign", "false")
    return repo


def commit_files(repo: git.Repo, files: dict[str, str | None], *, message: str = "change") -> str:
    """Write (or, for None, delete) files in the work tree and commit them; the new sha."""
    root = Path(repo.working_tree_dir or "")
    for name, text in files.items():
        path = root / name
        if text is None:
            repo.index.remove([name], working_tree=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        repo.index.add([name])
    return repo.index.commit(message).hexsha


NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
"""


def configmap(name: str, value: str, *, namespace: str = "shop", extra: str = "") -> str:
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: {namespace}
{extra}data:
  key: "{value}"
"""


def manual_loop(api: Api, upstream: git.Repo, cache_dir: Path) -> tuple[SyncLoop, BranchWatch]:
    """A sync loop on ``upstream`` that moves only when a test calls ``step()`` (after
    ``trigger()``)."""
    source = GitSource(f"file://{upstream.working_tree_dir}", cache_dir=cache_dir)
    watch = BranchWatch(source, poll_interval_s=3600, watch_local=False)
    return SyncLoop(api, source, watch=watch, options=SyncOptions(resync_s=3600)), watch
