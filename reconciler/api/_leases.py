"""Node heartbeats: one lease object per node (Kubernetes' ``kube-node-lease`` Leases).

Behind ``Api.renew_node_lease`` / ``get_node_lease`` / ``list_node_leases``. A plain object at
``/registry/leases/capstan-node-lease/<node>`` holding ``renew_time``, not a store TTL: the node
controller judges staleness against its own clock, so a test's ManualClock decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from reconciler.api._codec import REGISTRY
from reconciler.api._errors import store_errors
from reconciler.api._records import NodeLease
from reconciler.api.clock import Clock, now_utc
from reconciler.store import MAX_TXN_OPS, Op, Store

__all__ = ["NodeLeases"]

_NODE_LEASES = f"{REGISTRY}leases/capstan-node-lease/"


class NodeLeases:
    def __init__(self, store: Store, *, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def renew(self, node_name: str, *, now: float | None = None, duration_s: int = 40) -> NodeLease:
        """Record a node heartbeat at ``now`` (epoch seconds; default the API clock). One
        unconditional write: only the node itself renews its lease."""
        renewed = self._lease(node_name, now, duration_s)
        with store_errors():
            put = self._store.put(_NODE_LEASES + node_name, _encoded(renewed))
        return renewed.model_copy(update={"resource_version": str(put.revision)})

    def renew_many(self, renewals: Mapping[str, float], *, duration_s: int = 40) -> None:
        """Record many nodes' heartbeats, each at its time (epoch seconds), in one store
        transaction per ``MAX_TXN_OPS`` nodes: a fleet's renewals cost one commit and wake
        each store watch once, not once per node."""
        puts = [
            Op.put(_NODE_LEASES + name, _encoded(self._lease(name, at, duration_s)))
            for name, at in sorted(renewals.items())
        ]
        with store_errors():
            for first in range(0, len(puts), MAX_TXN_OPS):
                self._store.txn([], puts[first : first + MAX_TXN_OPS])

    def _lease(self, node_name: str, now: float | None, duration_s: int) -> NodeLease:
        return NodeLease(
            node_name=node_name,
            renew_time=(
                datetime.fromtimestamp(now, tz=UTC) if now is not None else now_utc(self._clock)
            ),
            lease_duration_seconds=duration_s,
        )

    def get(self, node_name: str) -> NodeLease | None:
        with store_errors():
            kv = self._store.get(_NODE_LEASES + node_name)
        if kv is None:
            return None
        return NodeLease.model_validate_json(kv.value).model_copy(
            update={"resource_version": str(kv.mod_revision)}
        )

    def list(self) -> list[NodeLease]:
        with store_errors():
            result = self._store.range(_NODE_LEASES, prefix=True)
        return [
            NodeLease.model_validate_json(kv.value).model_copy(
                update={"resource_version": str(kv.mod_revision)}
            )
            for kv in result.kvs
        ]

    def delete(self, node_name: str) -> bool:
        with store_errors():
            return self._store.delete(_NODE_LEASES + node_name).deleted > 0


def _encoded(lease: NodeLease) -> bytes:
    return lease.model_dump_json(by_alias=True, exclude_none=True).encode()
