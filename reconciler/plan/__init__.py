"""``capstan plan``: what merging a change would do, before it is merged.

Offers ``make_plan(repo, *, base, head, env, subdir, observed) -> Plan`` (load both sides,
diff, predict rollouts, place pods with the scheduler's dry run) and the renderers
``render_text``, ``render_markdown``, ``render_json``. The pieces, in data-flow order:
``sides`` (load the base and the head), ``cluster`` (the observed cluster: live, a snapshot, or
the base commit), ``workload`` (rollouts, pods starting and stopping), ``capacity`` (the
scheduler's verdict), ``build`` (the ``Plan``), ``model`` (the data), ``render`` (the output).
Nothing here writes to the cluster or the repository.
"""

from __future__ import annotations

import time
from pathlib import Path

from reconciler.plan._git import GitReadError, RepoReader
from reconciler.plan.build import build_plan
from reconciler.plan.cluster import ObservedCluster, from_base, from_reader, from_snapshot
from reconciler.plan.model import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_NO_CHANGES,
    Capacity,
    NodeChanges,
    ObjectDiff,
    Plan,
    Rollout,
    RolloutStep,
    Unfit,
)
from reconciler.plan.render import render_json, render_markdown, render_text
from reconciler.plan.sides import Side, Sides, load_sides

__all__ = [
    "EXIT_CHANGES",
    "EXIT_ERROR",
    "EXIT_NO_CHANGES",
    "Capacity",
    "GitReadError",
    "NodeChanges",
    "ObjectDiff",
    "ObservedCluster",
    "Plan",
    "RepoReader",
    "Rollout",
    "RolloutStep",
    "Side",
    "Sides",
    "Unfit",
    "build_plan",
    "from_base",
    "from_reader",
    "from_snapshot",
    "load_sides",
    "make_plan",
    "render_json",
    "render_markdown",
    "render_text",
]


def make_plan(
    repo: Path,
    *,
    base: str,
    head: str | None,
    env: str | None = None,
    subdir: str | None = None,
    observed: ObservedCluster | None = None,
    git_dir: Path | None = None,
    incremental: bool = True,
    no_cluster: str | None = None,
) -> Plan:
    """The plan of going from ``base`` (a ref) to ``head`` (a ref, or None: the working tree),
    against ``observed`` (None: the base commit's own Node manifests and workloads; then
    ``no_cluster`` says why)."""
    started = time.perf_counter()
    sides = load_sides(
        repo, base=base, head=head, env=env, subdir=subdir, git_dir=git_dir, incremental=incremental
    )
    loaded = time.perf_counter()
    plan = build_plan(sides, observed, no_cluster=no_cluster)
    plan.timings.update({"load_s": loaded - started, "total_s": time.perf_counter() - started})
    return plan
