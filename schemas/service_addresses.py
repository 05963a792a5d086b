"""Stable virtual addresses for Services, in a loopback range.

One allocator for both sides of the wire: the agent's proxy calls it for every sync
(:meth:`agent.proxy.model.ServiceRuleSet.from_protocol`) to give each Service its address,
and the API server calls it to know which Service holds an address before it lets a
user-set ``clusterIP`` take one (:mod:`reconciler.api`). A Service's
in-cluster names (``NAME``, ``NAME.NAMESPACE``) resolve, through the containers' hosts file,
to its virtual address; the in-pod forwarder listens there inside each pod's network namespace
(on a reserved port the pod's nft table redirects the Service port to, see
:mod:`agent.proxy._podnat`) and, in kernel mode, the node's own rules DNAT it for processes on
the host.

WARNING: the address is baked into a container's hosts file and environment when the
container is created, so it must not move while the Service exists. It is derived from
namespace/name alone (SHA-256 into the range), the same on every node with no coordination;
only a hash collision needs a probe, and the colliding Services are probed in sorted order
so every node resolves it identically. With 2^20 addresses a collision among a few thousand
Services is rare (birthday bound ~0.4% at 100 Services, well under 1 in a million per pair).
A ``clusterIP`` the control plane set inside the range wins over the hash, so the hash never
hands out an address a ``clusterIP`` holds; the API server refuses a ``clusterIP`` that
another Service holds (by its own ``clusterIP`` or by this allocator), so a ``clusterIP``
never takes an address from a Service that has it.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["DEFAULT_VIRTUAL_RANGE", "allocate_virtual_addresses", "hashed_address"]

DEFAULT_VIRTUAL_RANGE: Final = "127.192.0.0/12"
"""Loopback addresses for Services; nodes in tests use 127.0.0.x, far from here."""


@functools.lru_cache(maxsize=8)
def _network(virtual_range: str) -> ipaddress.IPv4Network:
    # Cached: every sync a node takes allocates its Services' addresses in the same range.
    net = ipaddress.IPv4Network(virtual_range)
    if not net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
        # Outside loopback the address would be routed off the node (or, inside a pod,
        # towards the Docker bridge), which this design must never do.
        raise ValueError(f"virtual range {virtual_range} is not inside 127.0.0.0/8")
    if net.num_addresses < 256:
        raise ValueError(f"virtual range {virtual_range} is too small (need at least a /24)")
    return net


def hashed_address(namespace: str, name: str, *, virtual_range: str, attempt: int = 0) -> str:
    """The ``attempt``-th candidate address of a Service; first and last of the range skipped."""
    net = _network(virtual_range)
    digest = hashlib.sha256(f"{namespace}/{name}#{attempt}".encode()).digest()
    offset = 1 + int.from_bytes(digest[:8], "big") % (net.num_addresses - 2)
    return str(net.network_address + offset)


def allocate_virtual_addresses(
    services: Iterable[tuple[str, str]],
    *,
    pinned: Mapping[tuple[str, str], str] | None = None,
    virtual_range: str = DEFAULT_VIRTUAL_RANGE,
) -> dict[tuple[str, str], str]:
    """A distinct address per (namespace, name), stable across calls and nodes."""
    net = _network(virtual_range)
    wanted = sorted(set(services))
    taken: dict[str, tuple[str, str]] = {}
    result: dict[tuple[str, str], str] = {}
    # Pinned addresses first: the control plane chose them and may have told clients.
    for key in wanted:
        address = (pinned or {}).get(key)
        if address is None:
            continue
        try:
            inside = ipaddress.IPv4Address(address) in net
        except ValueError:
            inside = False
        if inside and address not in taken:
            taken[address] = key
            result[key] = address
    for key in wanted:
        if key in result:
            continue
        attempt = 0
        candidate = hashed_address(*key, virtual_range=virtual_range)
        while candidate in taken:
            attempt += 1
            candidate = hashed_address(*key, virtual_range=virtual_range, attempt=attempt)
        taken[candidate] = key
        result[key] = candidate
    return result
