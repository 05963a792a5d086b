"""``GET /capstan/v1/plan?ref=REF`` for the API server: what syncing a ref would change here.

Wired by ``capstan up`` into ``reconciler.api.server.ServerHooks(plan=...)``. The base is the
commit live in this cluster (the sync state), the head is ``ref`` (default: the tracked
branch's head), and the observed side is this cluster read through the API — so the answer
is the plan a sync of ``ref`` would carry out now. Read-only: a fetch into the Git cache,
lists through the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from reconciler.api import Api
from reconciler.plan import from_reader, make_plan, render_json
from reconciler.source.git import GitSource
from reconciler.sync.records import read_sync_state

__all__ = ["plan_provider"]


def plan_provider(
    api: Api, source: GitSource, *, env: str | None = None, subdir: str | None = None
) -> Callable[[str | None], dict[str, Any]]:
    """A ``plan(ref | None) -> dict`` callable (the JSON of ``capstan plan -o json``)."""

    def provide(ref: str | None) -> dict[str, Any]:
        source.fetch()
        head = source.resolve(ref or f"refs/heads/{source.branch}")
        base = read_sync_state(api).live_commit or head.sha
        observed = from_reader(api, label="(live, through the API)")
        plan = make_plan(
            source.git_dir, base=base, head=head.sha, env=env, subdir=subdir, observed=observed
        )
        document: dict[str, Any] = json.loads(render_json(plan))
        return document

    return provide
