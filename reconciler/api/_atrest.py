"""Secret objects encrypted at rest: a store wrapper that seals every value under
``/registry/secrets/`` with the local data keys (``schemas.datakeys``), as Kubernetes'
``EncryptionConfiguration`` does for ``resources: [secrets]``.

Wrapped once where the store is opened (``capstan up``, ``capstan get`` on a state dir), so
the API, its HTTP server and its watch cache all read plaintext objects while SQLite and etcd
only ever hold ciphertext. The store key is the authenticated data: a sealed value copied to
another key does not open. Compares on values are not supported for sealed keys (nothing
compares Secret values; a nonce makes equal plaintexts differ anyway).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from reconciler.api._codec import REGISTRY, plural
from reconciler.store import (
    Compare,
    DeleteResult,
    Event,
    KeyValue,
    LeaseID,
    Op,
    OpKind,
    PutResult,
    RangeResult,
    Revision,
    Store,
    StoreWrapper,
    TxnResult,
    Watch,
)
from schemas.datakeys import DataKeyError, DataKeys

__all__ = [
    "DATA_KEYS_FILE",
    "SECRETS_PREFIX",
    "DataKeysMismatch",
    "check_data_keys",
    "seal_secrets",
]

#: The control plane's data key file in its state directory (mode 0600).
DATA_KEYS_FILE = "data-keys"
SECRETS_PREFIX = f"{REGISTRY}{plural('Secret')}/"


def seal_secrets(store: Store, keys: DataKeys) -> Store:
    """``store`` with Secret values sealed on write and opened on read."""
    return _SealingStore(store, keys)


class DataKeysMismatch(Exception):
    """The local data keys cannot open the Secrets already in the store."""


def check_data_keys(sealed: Store, *, keys_file: str) -> None:
    """Raise :class:`DataKeysMismatch` when the keys ``sealed`` was wrapped with cannot open a
    Secret already in the store: the state directory of a new replica on a shared etcd got
    a key of its own instead of a copy of the others' (checked at start-up, before the API
    server's cache would fail on the first Secret)."""
    try:
        sealed.range(SECRETS_PREFIX, prefix=True, limit=1)
    except DataKeyError:
        raise DataKeysMismatch(
            f"the data keys in {keys_file} cannot open the Secrets in this store: another "
            "control-plane replica sealed them with its own keys. Copy its data-keys file "
            f"(mode 0600) to {keys_file} and start again (docs/ha.md)"
        ) from None


class _SealingStore(StoreWrapper):
    def __init__(self, inner: Store, keys: DataKeys) -> None:
        super().__init__(inner)
        self._keys = keys

    # -- transforms ------------------------------------------------------------------------

    def _seal(self, key: str, value: bytes) -> bytes:
        if not key.startswith(SECRETS_PREFIX):
            return value
        return self._keys.seal(value, context=key.encode())

    def _kv(self, kv: KeyValue) -> KeyValue:
        if not kv.key.startswith(SECRETS_PREFIX):
            return kv
        return dataclasses.replace(kv, value=self._keys.open(kv.value, context=kv.key.encode()))

    def _maybe(self, kv: KeyValue | None) -> KeyValue | None:
        return None if kv is None else self._kv(kv)

    def _range(self, result: RangeResult) -> RangeResult:
        return dataclasses.replace(result, kvs=tuple(self._kv(kv) for kv in result.kvs))

    def _event(self, event: Event) -> Event:
        return dataclasses.replace(event, kv=self._kv(event.kv), prev_kv=self._maybe(event.prev_kv))

    def _op(self, op: Op) -> Op:
        if op.kind is OpKind.PUT:
            return dataclasses.replace(op, value=self._seal(op.key, op.value))
        return op

    # -- Store -----------------------------------------------------------------------------

    def range(
        self,
        key: str,
        *,
        prefix: bool = False,
        limit: int | None = None,
        at_revision: Revision | None = None,
    ) -> RangeResult:
        return self._range(
            self._inner.range(key, prefix=prefix, limit=limit, at_revision=at_revision)
        )

    def get(self, key: str, *, at_revision: Revision | None = None) -> KeyValue | None:
        return self._maybe(self._inner.get(key, at_revision=at_revision))

    def put(self, key: str, value: bytes, *, lease: LeaseID | None = None) -> PutResult:
        result = self._inner.put(key, self._seal(key, value), lease=lease)
        return dataclasses.replace(result, prev_kv=self._maybe(result.prev_kv))

    def delete(self, key: str, *, prefix: bool = False) -> DeleteResult:
        result = self._inner.delete(key, prefix=prefix)
        return dataclasses.replace(result, prev_kvs=tuple(self._kv(kv) for kv in result.prev_kvs))

    def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        result = self._inner.txn(
            compares, [self._op(op) for op in success], [self._op(op) for op in failure]
        )
        responses = tuple(
            self._range(r)
            if isinstance(r, RangeResult)
            else dataclasses.replace(r, prev_kv=self._maybe(r.prev_kv))
            if isinstance(r, PutResult)
            else dataclasses.replace(r, prev_kvs=tuple(self._kv(kv) for kv in r.prev_kvs))
            for r in result.responses
        )
        return dataclasses.replace(result, responses=responses)

    def watch(
        self,
        key: str,
        *,
        prefix: bool = False,
        from_revision: Revision | None = None,
    ) -> Watch:
        return _SealingWatch(
            self._inner.watch(key, prefix=prefix, from_revision=from_revision), self
        )


class _SealingWatch(Watch):
    def __init__(self, inner: Watch, store: _SealingStore) -> None:
        super().__init__()
        self._inner = inner
        self._store = store

    def poll(self, timeout: float | None) -> list[Event]:
        return [self._store._event(event) for event in self._inner.poll(timeout)]

    def close(self) -> None:
        self._inner.close()

    @property
    def closed(self) -> bool:
        return self._inner.closed
