"""What the kubelet remembers of each container's latest attempt, so that one removed from
under it (``docker rm -f``) still counts as a restart.

Docker keeps the restart bookkeeping on the containers themselves (the attempt label); a
container removed by someone else takes its attempt number and exit with it. The sync loop
feeds every observation of the node's containers to a :class:`RestartLedger`, which keeps,
per pod container, the latest attempt seen and — when that attempt vanished while no worker
of the pod was acting — marks it removed. The planner then starts the next attempt (the
restart count goes up, the container name's suffix too) and the status reports the removed
attempt as the last state (reason ``ContainerStatusUnknown``, exit code 137 if it was
running, as Kubernetes' kubelet does for a container it can no longer find).

A container Docker is removing (state ``removing``) is already gone for the kubelet:
:func:`present` leaves it out of each listing before the ledger, the planner and the status
see it. ``docker rm -f`` kills the container first and wakes the kubelet with its ``die``
event while the removal is still under way; read as an exit, the removal would be restarted
as a crash, and once the container vanished the restarted attempt would have no last state.

The ledger is persisted in the agent's state directory (``restarts.json``, written
atomically only when it changes), so a removal while the agent is down still counts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Final

from agent.runtime.facts import ObservedContainer, PodUID
from agent.state import atomic_write

__all__ = ["RESTARTS_FILE", "ContainerKey", "RestartLedger", "SeenAttempt", "present"]

_log = logging.getLogger(__name__)

RESTARTS_FILE: Final = "restarts.json"

ContainerKey = tuple[PodUID, str]
"""(pod uid, container name)."""


def present(listed: Iterable[ObservedContainer]) -> list[ObservedContainer]:
    """The containers of a listing that are not being removed: what the kubelet acts on."""
    return [c for c in listed if c.state != "removing"]


@dataclass(frozen=True)
class SeenAttempt:
    """The last the kubelet saw of one attempt of a container."""

    attempt: int
    container_id: str
    running: bool
    exit_code: int | None = None
    reason: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    removed: bool = False
    """It vanished from under the agent (no worker of the pod was acting)."""

    @classmethod
    def of(cls, c: ObservedContainer) -> SeenAttempt:
        code = c.exit_code
        reason = (
            ""
            if c.running
            else ("OOMKilled" if c.oom_killed else "Completed" if code == 0 else "Error")
        )
        return cls(
            attempt=c.attempt,
            container_id=c.id,
            running=c.running,
            exit_code=code,
            reason=reason,
            started_at=c.started_at,
            finished_at=c.finished_at,
        )


@dataclass(frozen=True)
class _Entry:
    latest: SeenAttempt
    removed: SeenAttempt | None = None  # the latest, or the one just before it


class RestartLedger:
    """Per pod container: its latest attempt, and the attempt removed from under the agent."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._entries: dict[ContainerKey, _Entry] = {}
        self.dirty = False
        self._load()

    def observe(
        self,
        observed: Iterable[ObservedContainer],
        *,
        desired: set[PodUID],
        settled: set[PodUID],
    ) -> None:
        """Take one listing of the node's containers. A vanished latest attempt is judged
        removed only for ``settled`` pods: no worker of theirs acted since the listing began
        (the kubelet's own stops and removals are not removals from under it)."""
        newest: dict[ContainerKey, ObservedContainer] = {}
        for c in observed:
            if c.is_sandbox:
                continue
            key = (c.pod_uid, c.container)
            if key not in newest or c.attempt > newest[key].attempt:
                newest[key] = c
        entries: dict[ContainerKey, _Entry] = {}
        for key in set(self._entries) | set(newest):
            before, top = self._entries.get(key), newest.get(key)
            if key[0] not in desired and top is None:
                continue  # the pod is gone: forget it
            entries[key] = _next(before, top, settled=key[0] in settled)
        if entries != self._entries:
            self._entries = entries
            self.dirty = True

    def removed_latest(self) -> dict[ContainerKey, SeenAttempt]:
        """Containers whose latest attempt was removed from under the agent and not yet
        replaced: the planner starts the next attempt."""
        return {key: e.latest for key, e in self._entries.items() if e.latest.removed}

    def removed(self) -> dict[ContainerKey, SeenAttempt]:
        """The removed attempt of each container that has one (the latest, or the one the
        latest replaced): the status reports it as the last state."""
        return {key: e.removed for key, e in self._entries.items() if e.removed is not None}

    def save(self) -> None:
        """Write the ledger if it changed since the last save."""
        if not self.dirty:
            return
        doc = {
            "v": 1,
            "containers": [
                {
                    "pod": uid,
                    "container": name,
                    "latest": asdict(e.latest),
                    "removed": asdict(e.removed) if e.removed else None,
                }
                for (uid, name), e in sorted(self._entries.items())
            ],
        }
        atomic_write(self._path, json.dumps(doc, sort_keys=True).encode())
        self.dirty = False

    def _load(self) -> None:
        try:
            doc = json.loads(self._path.read_bytes())
            self._entries = {
                (PodUID(item["pod"]), str(item["container"])): _Entry(
                    latest=SeenAttempt(**item["latest"]),
                    removed=SeenAttempt(**item["removed"]) if item["removed"] else None,
                )
                for item in doc["containers"]
            }
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Only restart counts are lost: the containers themselves still carry theirs.
            _log.warning("ignoring unreadable %s: %s", self._path, exc)
            self._entries = {}


def _next(before: _Entry | None, top: ObservedContainer | None, *, settled: bool) -> _Entry:
    if top is not None and (before is None or top.attempt > before.latest.attempt):
        # A newer attempt: keep a removal only if it was this attempt's predecessor.
        kept = (
            before.removed
            if before is not None
            and before.removed is not None
            and before.removed.attempt == top.attempt - 1
            else None
        )
        return _Entry(latest=SeenAttempt.of(top), removed=kept)
    assert before is not None
    if top is not None and top.attempt == before.latest.attempt:
        return replace(before, latest=SeenAttempt.of(top))
    # The latest attempt is gone (nothing, or only older attempts, are left).
    if not settled or before.latest.removed:
        return before
    gone = replace(before.latest, removed=True)
    return _Entry(latest=gone, removed=gone)
