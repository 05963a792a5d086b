"""Benchmark: how an HA control plane rides out leader kills and a partitioned node.

Kills: the fault suite's rig and kill campaign (``tests.faults.scenario.kill_leaders``): a
3-member etcd cluster on 127.0.x.y, a real ``capstan-agent serve``, three supervised
``capstan up --store etcd://`` replicas with 3/2/0.5 s election settings, the web app at 3
replicas (maxSurge 1, maxUnavailable 0) and a canary that opts into auto-rollback. Then,
``--kills`` times: commit a new version (a rollout starts), wait a random 0.5-6 s,
``kill -9`` the leader and time until another replica's term begins; a third of the way in
a commit makes the canary crash and the next kills hit its auto-rollback. Meanwhile a
writer creates ConfigMaps through the followers' HTTP APIs and remembers every
acknowledged one, and a store watch follows the web pods at every revision.

Partition: a fresh rig with two nodes (``tests.faults.partition``), the second one's sshd in
a network namespace, ``--node-monitor-grace-period``/``--pod-eviction-timeout`` set by
``--grace``/``--eviction``. ``iptables -j DROP`` in that namespace cuts the node off; timed
until its pods leave the endpoints, until they run Ready on the other node (evicted and
replaced), and until, healed, its agent stopped the moved pods.

Reports a table per kill and one for the partition, then one JSON line: takeover p50/p99
(seconds from the kill to the new term), duplicate pods (live pods seen beyond replicas +
maxSurge during the kills, plus app containers left running beyond the replicas after the
partition healed), lost pods (available web pods seen below replicas - maxUnavailable),
lost acknowledged writes (acked ConfigMaps missing at the end), double-applied commits
(extra syncs that changed something for an already applied commit), double reverts (extra
auto-rollbacks or revert commits of the bad commit), missed rollbacks (1 when the bad commit
was not rolled back, or its claim still has steps pending) and ``evict_and_replace_s``
(seconds from the cut to the partitioned node's pods running Ready elsewhere).

Usage: ``.venv/bin/python bench/faults.py [--kills 20] [--grace 8] [--eviction 20]``. Needs
root (``ip netns``, iptables in the namespace), etcd, Docker and the busybox image
(``scripts/setup``); removes every process, container, namespace and directory it made.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
from pathlib import Path

import docker
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.api import ApiError
from reconciler.client import Client
from reconciler.sync.pins import read_claims
from schemas import ConfigMap
from schemas.meta import ObjectMeta
from tests.faults.harness import ControlPlane
from tests.faults.partition import REPLICAS as PARTITION_REPLICAS
from tests.faults.partition import PartitionRun, partition_rig, run_partition
from tests.faults.scenario import (
    KILL_FILES,
    MAX_SURGE,
    MAX_UNAVAILABLE,
    REPLICAS,
    double_applied,
    fault_rig,
    kill_leaders,
    reverts_of,
    rollbacks_of,
)
from tests.fixtures.local_agent import ensure_busybox


class AckedWriter:
    """Creates ConfigMaps ``ack-N`` through any live replica's HTTP API; keeps the acked."""

    def __init__(self, plane: ControlPlane) -> None:
        self._plane = plane
        self.acked: set[str] = set()
        self.attempts = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="acked-writer")
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stopped.wait(0.05):
            replicas = [r for r in self._plane.replicas if r.running()]
            if not replicas:
                continue
            config = random.choice(replicas).state_dir / "config"
            if not config.exists():
                continue
            name = f"ack-{n}"
            n += 1
            self.attempts += 1
            try:
                with Client.from_config(config) as client:
                    client.create(
                        ConfigMap(
                            metadata=ObjectMeta(name=name, namespace="default"), data={"n": name}
                        )
                    )
            except ApiError as exc:
                if exc.code == 409:  # an earlier attempt with this name landed
                    self.acked.add(name)
                continue
            except (httpx.HTTPError, OSError, ValueError):
                continue  # a killed replica or a config being rewritten: not acknowledged
            self.acked.add(name)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=60)


def _percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _partition(
    client: docker.DockerClient, *, grace_s: float, eviction_s: float
) -> tuple[PartitionRun, int]:
    """One partition on a fresh rig; returns the run and the app containers left running
    beyond the replicas once it healed."""
    with (
        tempfile.TemporaryDirectory(prefix="capstan-partition-") as tmp,
        partition_rig(client, Path(tmp), grace_s=grace_s, eviction_s=eviction_s) as prig,
    ):
        run = run_partition(prig, grace_s=grace_s, eviction_s=eviction_s)
        extra = max(0, prig.running_app_containers() - PARTITION_REPLICAS)
    return run, extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--grace", type=float, default=8.0, help="node monitor grace (s)")
    parser.add_argument("--eviction", type=float, default=20.0, help="pod eviction timeout (s)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    # The replicas record their contexts in a client config of the bench's own.
    client_config = tempfile.TemporaryDirectory(prefix="capstan-faults-client-")
    os.environ.setdefault("CAPSTAN_CONFIG", str(Path(client_config.name) / "config"))
    client = docker.from_env()
    ensure_busybox(client)
    with (
        tempfile.TemporaryDirectory(prefix="capstan-faults-") as tmp,
        fault_rig(client, Path(tmp), files=KILL_FILES) as rig,
    ):
        api = rig.plane.api
        writer = AckedWriter(rig.plane)
        try:
            kills = kill_leaders(
                rig,
                args.kills,
                rng,
                report=lambda i, killed, seconds: print(
                    f"kill {i + 1:>2}: {killed.identity:<14} takeover {seconds:6.2f} s",
                    file=sys.stderr,
                ),
            )
        finally:
            writer.stop()
        census = kills.census
        present = {c.name for c in api.list(ConfigMap, namespace="default").items}
        lost = len(writer.acked - present)
        doubles = sum(n - 1 for n in double_applied(api, first_commit=kills.first_commit).values())
        duplicates = max(0, census.max_live - (REPLICAS + MAX_SURGE))
        lost_pods = max(0, REPLICAS - MAX_UNAVAILABLE - (census.min_available or 0))
        rollbacks = rollbacks_of(api, kills.bad_commit)
        reverts = reverts_of(rig.repo, kills.bad_commit)
        claim = read_claims(api).get(kills.bad_commit)
        missed = int(rollbacks < 1 or claim is None or bool(claim.pending))
        acked = len(writer.acked)
    run, left_over = _partition(client, grace_s=args.grace, eviction_s=args.eviction)
    takeovers = [t for _, t in kills.takeovers]
    print(f"{'KILL':>4}  {'LEADER KILLED':<14}  {'TAKEOVER S':>10}")
    for n, (identity, takeover) in enumerate(kills.takeovers, start=1):
        print(f"{n:>4}  {identity:<14}  {takeover:>10.2f}")
    print(
        f"acknowledged writes {acked}, lost {lost}; web pods live at most {census.max_live} "
        f"(limit {REPLICAS + MAX_SURGE}), available at least {census.min_available} "
        f"(limit {REPLICAS - MAX_UNAVAILABLE}), container restarts {len(census.restarts)}; "
        f"double-applied commits {doubles}; auto-rollbacks of the bad commit {rollbacks}, "
        f"reverts {reverts} (each at most 1), steps pending "
        f"{list(claim.pending) if claim is not None else 'no claim'}"
    )
    evict_and_replace = run.replaced_at - run.cut_at
    routed = sum(1 for a in run.probe.since(run.switched_at) if a.pod in run.victims)
    refused = sum(1 for a in run.probe.answers if a.error == "refused")
    print()
    print(
        f"partition of a node with {len(run.victims)} of {PARTITION_REPLICAS} pods "
        f"(grace {args.grace:g} s, eviction {args.eviction:g} s)"
    )
    print(f"{'STEP':<52}  {'S AFTER CUT':>11}")
    for step, seconds in (
        ("node Unknown (API clock)", run.unknown_after_cut_s),
        ("its pods out of the Service's endpoints (seen)", run.out_at - run.cut_at),
        ("other node's proxy sending elsewhere (seen)", run.switched_at - run.cut_at),
        ("pods evicted, Ready on the other node (seen)", evict_and_replace),
        ("healed at; moved pods stopped, node Ready (seen)", run.healed_at - run.cut_at),
    ):
        print(f"{step:<52}  {seconds:>11.2f}")
    print(
        f"Unknown {run.unknown_after_renewal_s:.2f} s after the last lease renewal; first "
        f"eviction {run.evicted_after_unknown_s:.2f} s after Unknown; running elsewhere "
        f"{evict_and_replace - run.unknown_after_cut_s:.2f} s after Unknown; requests "
        f"{len(run.probe.answers)}, to evicted pods after the switch {routed}, refused "
        f"{refused}; app containers beyond the replicas after the heal {left_over}"
    )
    print(
        json.dumps(
            {
                "takeover_p50_s": round(statistics.median(takeovers), 2),
                "takeover_p99_s": round(_percentile(takeovers, 99), 2),
                "duplicate_pods": duplicates + left_over,
                "lost_pods": lost_pods,
                "lost_acked_writes": lost,
                "double_applied_commits": doubles,
                "double_reverts": max(0, reverts - 1) + max(0, rollbacks - 1),
                "missed_rollbacks": missed,
                "evict_and_replace_s": round(evict_and_replace, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
