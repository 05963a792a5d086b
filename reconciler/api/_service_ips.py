"""Service addresses are unique: a user-set ``spec.clusterIP`` may not take another Service's.

Called by :class:`reconciler.api.Api` when it creates a Service with a ``clusterIP``, or
updates one to a new ``clusterIP`` (from Git through the sync engine, or from an API user).
A Service holds an address by its own ``clusterIP``, or, without one, by the address the
agents' allocator (:mod:`schemas.service_addresses`) gives it: the address baked into its
clients' hosts files. Taking either would send another namespace's traffic to the taker.

WHY a read of every Service and not a claim key written in the same transaction: the
address a Service without ``clusterIP`` holds is not stored anywhere (every agent computes
it), so only the whole set can say who holds it. Two writers racing for one new address
can both pass; the allocator then still gives the address to one of them only.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.api._errors import Cause, Invalid
from schemas import Service
from schemas.service_addresses import allocate_virtual_addresses

__all__ = ["check_cluster_ip"]


def _holder(address: str, others: list[Service]) -> Service | None:
    for other in others:
        if other.spec.cluster_ip == address:
            return other
    by_key = {(s.namespace, s.name): s for s in others}
    allocated = allocate_virtual_addresses(
        by_key,
        pinned={key: s.spec.cluster_ip for key, s in by_key.items() if s.spec.cluster_ip},
    )
    for key, held in allocated.items():
        if held == address:
            return by_key[key]
    return None


def check_cluster_ip(service: Service, services: Iterable[Service]) -> None:
    """Raise :class:`Invalid` on ``spec.clusterIP`` if another of ``services`` holds the
    address ``service`` asks for. A Service without ``clusterIP``, or a headless one, asks
    for nothing."""
    address = service.spec.cluster_ip
    # "None" (headless) is no address: any number of Services may say it.
    if not address or address == "None":
        return
    others = [s for s in services if (s.namespace, s.name) != (service.namespace, service.name)]
    holder = _holder(address, others)
    if holder is None:
        return
    how = "its clusterIP" if holder.spec.cluster_ip == address else "the address allocated to it"
    raise Invalid(
        f"Service {service.name!r} is invalid",
        (
            Cause(
                "spec.clusterIP",
                f"{address}: provided IP is already allocated to Service "
                f"{holder.namespace}/{holder.name} ({how}); choose another "
                "address or leave clusterIP out to have one allocated",
            ),
        ),
    )
