"""What both backends share about requests: key encoding, prefix ranges, size checks."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.store._errors import StoreError, ValueTooLarge
from reconciler.store._types import MAX_TXN_OPS, MAX_VALUE_BYTES, Op, OpKind


def encode_key(key: str) -> bytes:
    return key.encode("utf-8")


def check_value(value: bytes) -> None:
    if len(value) > MAX_VALUE_BYTES:
        raise ValueTooLarge(f"value of {len(value)} bytes exceeds the {MAX_VALUE_BYTES}-byte limit")


def check_key(key: str) -> None:
    """etcd refuses an empty key for a single-key operation; so do we, in both backends."""
    if not key:
        raise StoreError("empty key (only a prefix range may be empty: the whole keyspace)")


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (etcd's
    ``clientv3.GetPrefixRangeEnd``); None when no such key exists (all 0xff, or empty)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return None


def key_range(key: str, *, prefix: bool) -> tuple[bytes, bytes | None]:
    """[start, end) for a key or a prefix; ``end`` None means unbounded above.

    A single key is [key, key + b"\\0"), which is how etcd spells "just this key".
    """
    start = encode_key(key)
    if prefix:
        return start, prefix_end(start)
    check_key(key)
    return start, start + b"\x00"


def check_txn(*branches: Sequence[Op]) -> None:
    """etcd's request limits, checked before anything is sent or written."""
    for ops in branches:
        if len(ops) > MAX_TXN_OPS:
            raise StoreError(f"a txn branch has {len(ops)} ops, more than {MAX_TXN_OPS}")
        for op in ops:
            if op.kind is OpKind.PUT:
                check_value(op.value)
                check_key(op.key)
