"""The store's data model: revisions, key-values, events, and txn builders.

Plain frozen values shared by both backends and by every caller of the store
(the API layer builds ``Compare``/``Op`` for optimistic concurrency and reads
``KeyValue.mod_revision`` as an object's ``resourceVersion``). The model is etcd
v3's: one global revision bumped once per write (a txn bumps it once and all
its events share it), and per key ``create_revision``, ``mod_revision``,
``version``; a deleted key reads as absent, and its DELETE event carries a
``KeyValue`` with only ``key`` and ``mod_revision`` set, as etcd's does.

Keys are ``str`` (stored as UTF-8, so their byte order is their code-point
order and prefix ranges agree between backends); values are ``bytes``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal, NewType

Revision = NewType("Revision", int)
LeaseID = NewType("LeaseID", int)

#: etcd's default `--max-request-bytes`; both backends refuse larger values up front.
MAX_VALUE_BYTES = 1536 * 1024
#: etcd's default `--max-txn-ops`; the embedded backend also packs op indexes into rowids.
MAX_TXN_OPS = 128


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: Revision
    mod_revision: Revision
    version: int
    lease: LeaseID | None = None


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None
    revision: Revision


@dataclass(frozen=True, slots=True)
class RangeResult:
    """Matching keys in key order, and the store revision the read saw (etcd's header)."""

    kvs: tuple[KeyValue, ...]
    revision: Revision
    count: int
    more: bool


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: Revision
    prev_kv: KeyValue | None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: Revision
    deleted: int
    prev_kvs: tuple[KeyValue, ...]


class CompareTarget(enum.Enum):
    VERSION = "VERSION"
    CREATE = "CREATE"
    MOD = "MOD"
    VALUE = "VALUE"


CompareOp = Literal["==", "!=", "<", ">"]


@dataclass(frozen=True, slots=True)
class Compare:
    """One txn guard. A missing key compares as version/revisions 0; a VALUE
    compare on a missing key is always false (etcd's rule: an absent value is
    not the empty value)."""

    key: str
    target: CompareTarget
    op: CompareOp
    operand: int | bytes

    @classmethod
    def version(cls, key: str, op: CompareOp, version: int) -> Compare:
        return cls(key, CompareTarget.VERSION, op, version)

    @classmethod
    def create_revision(cls, key: str, op: CompareOp, revision: int) -> Compare:
        return cls(key, CompareTarget.CREATE, op, revision)

    @classmethod
    def mod_revision(cls, key: str, op: CompareOp, revision: int) -> Compare:
        return cls(key, CompareTarget.MOD, op, revision)

    @classmethod
    def value(cls, key: str, op: CompareOp, value: bytes) -> Compare:
        return cls(key, CompareTarget.VALUE, op, value)

    def holds(self, kv: KeyValue | None) -> bool:
        """Evaluate against the key's current state (None: absent)."""
        if kv is None and self.target is CompareTarget.VALUE:
            return False
        actual: int | bytes
        if self.target is CompareTarget.VALUE:
            assert kv is not None
            actual = kv.value
        elif self.target is CompareTarget.VERSION:
            actual = kv.version if kv else 0
        elif self.target is CompareTarget.CREATE:
            actual = kv.create_revision if kv else 0
        else:
            actual = kv.mod_revision if kv else 0
        operand = self.operand
        if isinstance(actual, bytes) != isinstance(operand, bytes):
            raise TypeError(f"compare on {self.target.value} needs a matching operand type")
        if self.op == "==":
            return actual == operand
        if self.op == "!=":
            return actual != operand
        if self.op == "<":
            return actual < operand  # type: ignore[operator]
        return actual > operand  # type: ignore[operator]


class OpKind(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"
    RANGE = "RANGE"


@dataclass(frozen=True, slots=True)
class Op:
    """One txn operation; build with ``Op.put``, ``Op.delete`` or ``Op.range``."""

    kind: OpKind
    key: str
    value: bytes = b""
    lease: LeaseID | None = None
    prefix: bool = False
    limit: int | None = None

    @classmethod
    def put(cls, key: str, value: bytes, *, lease: LeaseID | None = None) -> Op:
        return cls(OpKind.PUT, key, value=value, lease=lease)

    @classmethod
    def delete(cls, key: str, *, prefix: bool = False) -> Op:
        return cls(OpKind.DELETE, key, prefix=prefix)

    @classmethod
    def range(cls, key: str, *, prefix: bool = False, limit: int | None = None) -> Op:
        return cls(OpKind.RANGE, key, prefix=prefix, limit=limit)


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Which branch ran, the revision after it, and one response per op of that branch."""

    succeeded: bool
    revision: Revision
    responses: tuple[RangeResult | PutResult | DeleteResult, ...]
