"""The two sides ``capstan plan`` compares: a base commit and a head (commit or working tree).

First step of a plan: each side rendered and validated by the same loader the sync loop runs
(``reconciler.source.load_repository``), so a head that would not sync shows its errors here,
file:line. Loading is the slow part (~2,000 objects/s), and a pull request usually changes a
few files of a large repository, so the base is not loaded again when that is not needed:
both trees are listed with their Git blob ids, and when every changed file is a plain
manifest (no template, values file or ``.capstanignore`` involved), the base's objects are the
head's objects from the unchanged files plus a parse of the base's version of the changed
files only. Anything else falls back to loading the base in full.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import pydantic

from reconciler.plan._git import Commit, RepoReader, TreeEntry, worktree_listing
from reconciler.source import (
    DEFAULT_NAMESPACE,
    LoadedObject,
    ManifestError,
    ManifestErrors,
    load_repository,
)
from reconciler.source.yamlpos import load_documents
from schemas import KubeObject, UnsupportedKindError, model_for, parse_object

__all__ = ["Side", "Sides", "load_sides"]

Strategy = Literal["incremental", "full"]
_MANIFEST_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Side:
    """One side: what it is, its objects (apply order) or its errors."""

    label: str
    commit: str | None
    objects: tuple[LoadedObject, ...]
    errors: tuple[ManifestError, ...] = ()
    author: str = ""
    subject: str = ""

    @property
    def valid(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class Sides:
    base: Side
    head: Side
    strategy: Strategy
    changed_files: tuple[str, ...]


def load_sides(
    repo: Path,
    *,
    base: str,
    head: str | None,
    env: str | None = None,
    subdir: str | None = None,
    git_dir: Path | None = None,
    incremental: bool = True,
) -> Sides:
    """Load ``base`` (a ref) and ``head`` (a ref, or None for the working tree at ``repo``).
    Reads the repository (its objects from ``git_dir`` when given); writes only private
    temporary directories. ``incremental=False`` always loads the base in full."""
    reader = RepoReader(repo, git_dir=git_dir)
    base_commit = reader.resolve(base)
    base_tree = reader.tree(base_commit.sha, prefix=reader.prefix)
    with tempfile.TemporaryDirectory(prefix="capstan-plan-") as tmp:
        work = Path(tmp)
        head_commit: Commit | None = None
        if head is None:
            head_tree = worktree_listing(repo)
            head_dir = Path(repo)
            head_label = "working tree"
        else:
            head_commit = reader.resolve(head)
            head_tree = reader.tree(head_commit.sha, prefix=reader.prefix)
            head_dir = reader.export(head_tree, work / "head")
            head_label = f"{head} ({head_commit.sha[:12]})"
        head_side = _load_side(
            head_dir, label=head_label, commit=head_commit, env=env, subdir=subdir
        )
        changed = _changed(base_tree, head_tree)
        base_label = f"{base} ({base_commit.sha[:12]})"
        strategy: Strategy = "full"
        base_side: Side | None = None
        if (
            incremental
            and head_side.valid
            and _incremental_ok(changed, base_tree, head_tree, subdir=subdir)
        ):
            base_side = _incremental_base(
                reader,
                head_side,
                changed,
                base_tree,
                work=work / "base-changed",
                label=base_label,
                commit=base_commit,
            )
            if base_side is not None:
                strategy = "incremental"
        if base_side is None:
            base_dir = reader.export(base_tree, work / "base")
            base_side = _load_side(
                base_dir, label=base_label, commit=base_commit, env=env, subdir=subdir
            )
    return Sides(
        base=base_side, head=head_side, strategy=strategy, changed_files=tuple(sorted(changed))
    )


def _load_side(
    root: Path, *, label: str, commit: Commit | None, env: str | None, subdir: str | None
) -> Side:
    sha = commit.sha if commit else None
    author = commit.author if commit else ""
    subject = commit.subject if commit else ""
    try:
        loaded = load_repository(root, env=env, subdir=subdir)
    except ManifestErrors as exc:
        return Side(label, sha, (), tuple(exc.errors), author, subject)
    return Side(label, sha, tuple(loaded.objects), (), author, subject)


def _changed(base: Mapping[str, TreeEntry], head: Mapping[str, TreeEntry]) -> set[str]:
    paths = set(base) | set(head)
    return {
        p
        for p in paths
        if p not in base
        or p not in head
        or (base[p].blob, base[p].mode) != (head[p].blob, head[p].mode)
    }


def _incremental_ok(
    changed: set[str],
    base: Mapping[str, TreeEntry],
    head: Mapping[str, TreeEntry],
    *,
    subdir: str | None,
) -> bool:
    """True when the base's objects from unchanged files are certainly the head's."""
    if ".capstanignore" in base or ".capstanignore" in head:
        return False  # its patterns decide what is a manifest: let the loader apply them
    templated = any(p.endswith(".j2") for p in (*base, *head))
    for path in changed:
        parts = PurePosixPath(path).parts
        if any(part.startswith(".") for part in parts):
            continue  # hidden: never read by the loader (.github/, .gitignore)
        if path.endswith(".j2") or path == "values.yaml" or parts[0] == "environments":
            return False
        if any(part.startswith("_") for part in parts):
            return False  # template partials
        entry = head.get(path) or base.get(path)
        if entry is not None and entry.symlink:
            return False
        if path.endswith(_MANIFEST_SUFFIXES):
            continue
        if templated:
            return False  # a template may include any file (a page, a script)
    # With a subdir, which files count is the loader's business: load the base in full.
    return subdir is None


def _incremental_base(
    reader: RepoReader,
    head: Side,
    changed: set[str],
    base_tree: Mapping[str, TreeEntry],
    *,
    work: Path,
    label: str,
    commit: Commit,
) -> Side | None:
    """The base from the head's unchanged objects plus the base's changed manifests; None
    when a changed base file does not parse cleanly (the full load then reports it)."""
    kept = [o for o in head.objects if o.source.file not in changed]
    wanted = {
        p: base_tree[p]
        for p in changed
        if p in base_tree
        and p.endswith(_MANIFEST_SUFFIXES)
        and not any(part.startswith(".") for part in PurePosixPath(p).parts)
    }
    reader.export(wanted, work)
    parsed: list[LoadedObject] = []
    for path in sorted(wanted):
        text = (work / path).read_text(encoding="utf-8")
        documents, problems = load_documents(text, file=path)
        if problems:
            return None
        for document in documents:
            obj = _parse(document.data)
            if obj is None:
                return None
            parsed.append(LoadedObject(obj=obj, source=document.location()))
    objects = tuple(sorted([*kept, *parsed], key=_order))
    keys = [o.obj.key for o in objects]
    if len(set(keys)) != len(keys):
        return None
    return Side(label, commit.sha, objects, (), commit.author, commit.subject)


def _parse(data: object) -> KubeObject | None:
    if not isinstance(data, dict):
        return None
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    try:
        model = model_for(api_version, kind)
    except UnsupportedKindError:
        return None
    if model.NAMESPACED:
        meta = data.get("metadata")
        if isinstance(meta, dict) and meta.get("namespace") in (None, ""):
            data = {**data, "metadata": {**meta, "namespace": DEFAULT_NAMESPACE}}
    try:
        return parse_object(data)
    except pydantic.ValidationError:
        return None


_KIND_ORDER = (
    "Namespace",
    "Node",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "Service",
    "Deployment",
    "ReplicaSet",
    "Pod",
)


def _order(item: LoadedObject) -> tuple[int, str, str, str]:
    kind = item.obj.kind
    rank = _KIND_ORDER.index(kind) if kind in _KIND_ORDER else len(_KIND_ORDER)
    return (rank, kind, item.obj.namespace, item.obj.name)
