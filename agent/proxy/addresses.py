"""Stable virtual addresses for Services: the allocator in :mod:`schemas.service_addresses`,
shared with the API server (which must know which Service holds an address)."""

from schemas.service_addresses import (
    DEFAULT_VIRTUAL_RANGE,
    allocate_virtual_addresses,
    hashed_address,
)

__all__ = ["DEFAULT_VIRTUAL_RANGE", "allocate_virtual_addresses", "hashed_address"]
