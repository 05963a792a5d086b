"""The etcd backend: the same ``Store`` on a real etcd v3 server, for more than one machine.

Opened by ``open_store("etcd://host:port[,host:port...]")``; several ``capstan up``
replicas share one etcd cluster, and ``reconciler.store.election`` picks the one that
runs the controllers (a leader key on an etcd lease; its writes fenced by the key's
create revision).

Why the JSON gateway and httpx rather than a client library: the ``etcd3`` PyPI
client is unmaintained and pins old protobuf/grpcio releases that conflict with
today's. etcd 3.4 (Debian's etcd-server; 3.4.23 here) serves its whole v3 API
as JSON at ``/v3/...`` (kv/range, kv/put, kv/deleterange, kv/txn,
kv/compaction, watch, lease/grant, lease/keepalive, lease/revoke), and httpx
is already a Capstan dependency, so the backend is a handful of plain requests
with no new dependency. Watches use a raw socket (see ``_etcd_watch``).

Values are checked against ``MAX_VALUE_BYTES`` here, before etcd sees them, so
both backends refuse the same values with the same error (etcd's own limit
counts the whole request and answers with a vaguer message); run etcd with
``--max-request-bytes`` above 1.5 MiB (2 MiB) so a maximal value fits.
Plain HTTP only: TLS and etcd auth are not wired in yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.store._base import Store, Watch
from reconciler.store._errors import LeaseNotFound
from reconciler.store._etcd_http import (
    EtcdGateway,
    b64,
    header_revision,
    kv_from_json,
)
from reconciler.store._etcd_watch import EtcdWatch
from reconciler.store._requests import check_key, check_txn, check_value, key_range
from reconciler.store._types import (
    Compare,
    CompareTarget,
    DeleteResult,
    LeaseID,
    Op,
    OpKind,
    PutResult,
    RangeResult,
    Revision,
    TxnResult,
)

_COMPARE_RESULT = {"==": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}
_COMPARE_FIELD = {
    CompareTarget.VERSION: "version",
    CompareTarget.CREATE: "create_revision",
    CompareTarget.MOD: "mod_revision",
    CompareTarget.VALUE: "value",
}


def _range_body(key: str, *, prefix: bool) -> dict[str, Any]:
    lo, hi = key_range(key, prefix=prefix)
    # etcd spells "no upper bound" as range_end "\0", and "from the first key" as key "\0"
    # (it refuses an empty key).
    return {"key": b64(lo or b"\x00"), "range_end": b64(hi if hi is not None else b"\x00")}


def _range_result(reply: dict[str, Any], revision: Revision | None = None) -> RangeResult:
    kvs = tuple(kv_from_json(kv) for kv in reply.get("kvs", ()))
    return RangeResult(
        kvs=kvs,
        revision=revision if revision is not None else header_revision(reply),
        count=int(reply.get("count", len(kvs))),
        more=bool(reply.get("more", False)),
    )


def _delete_result(reply: dict[str, Any], revision: Revision) -> DeleteResult:
    return DeleteResult(
        revision=revision,
        deleted=int(reply.get("deleted", 0)),
        prev_kvs=tuple(kv_from_json(kv) for kv in reply.get("prev_kvs", ())),
    )


def _compare_json(compare: Compare) -> dict[str, Any]:
    field = _COMPARE_FIELD[compare.target]
    operand = compare.operand
    value = b64(operand) if isinstance(operand, bytes) else str(operand)
    return {
        "key": b64(compare.key.encode("utf-8")),
        "target": compare.target.value,
        "result": _COMPARE_RESULT[compare.op],
        field: value,
    }


def _op_json(op: Op) -> dict[str, Any]:
    if op.kind is OpKind.PUT:
        put: dict[str, Any] = {
            "key": b64(op.key.encode("utf-8")),
            "value": b64(op.value),
            "prev_kv": True,
        }
        if op.lease is not None:
            put["lease"] = str(op.lease)
        return {"request_put": put}
    body = _range_body(op.key, prefix=op.prefix)
    if op.kind is OpKind.DELETE:
        return {"request_delete_range": {**body, "prev_kv": True}}
    if op.limit:
        body["limit"] = str(op.limit)
    return {"request_range": body}


class EtcdStore(Store):
    def __init__(self, endpoints: list[str]) -> None:
        self._gateway = EtcdGateway(endpoints)
        self._watches: set[EtcdWatch] = set()

    def range(
        self,
        key: str,
        *,
        prefix: bool = False,
        at_revision: Revision | None = None,
        limit: int | None = None,
    ) -> RangeResult:
        body = _range_body(key, prefix=prefix)
        if at_revision is not None:
            body["revision"] = str(at_revision)
        if limit:
            body["limit"] = str(limit)
        return _range_result(self._gateway.call("kv/range", body, idempotent=True))

    def revision(self) -> Revision:
        reply = self._gateway.call(
            "kv/range", {"key": b64(b"\x00"), "count_only": True}, idempotent=True
        )
        return header_revision(reply)

    def put(self, key: str, value: bytes, *, lease: LeaseID | None = None) -> PutResult:
        check_value(value)
        check_key(key)
        body: dict[str, Any] = {
            "key": b64(key.encode("utf-8")),
            "value": b64(value),
            "prev_kv": True,
        }
        if lease is not None:
            body["lease"] = str(lease)
        reply = self._gateway.call("kv/put", body, idempotent=False)
        prev = reply.get("prev_kv")
        return PutResult(
            revision=header_revision(reply), prev_kv=kv_from_json(prev) if prev else None
        )

    def delete(self, key: str, *, prefix: bool = False) -> DeleteResult:
        body = {**_range_body(key, prefix=prefix), "prev_kv": True}
        reply = self._gateway.call("kv/deleterange", body, idempotent=False)
        return _delete_result(reply, header_revision(reply))

    def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        check_txn(success, failure)
        body = {
            "compare": [_compare_json(c) for c in compares],
            "success": [_op_json(op) for op in success],
            "failure": [_op_json(op) for op in failure],
        }
        reply = self._gateway.call("kv/txn", body, idempotent=False)
        revision = header_revision(reply)
        succeeded = bool(reply.get("succeeded", False))
        ops = success if succeeded else failure
        responses: list[RangeResult | PutResult | DeleteResult] = []
        for op, response in zip(ops, reply.get("responses", ()), strict=True):
            if op.kind is OpKind.PUT:
                prev = response.get("response_put", {}).get("prev_kv")
                responses.append(PutResult(revision, kv_from_json(prev) if prev else None))
            elif op.kind is OpKind.DELETE:
                deleted = response.get("response_delete_range", {})
                responses.append(_delete_result(deleted, revision))
            else:
                responses.append(_range_result(response.get("response_range", {}), revision))
        return TxnResult(succeeded=succeeded, revision=revision, responses=tuple(responses))

    def watch(
        self,
        key: str,
        *,
        prefix: bool = False,
        from_revision: Revision | None = None,
    ) -> Watch:
        after = self.revision() if from_revision is None else from_revision
        lo, hi = key_range(key, prefix=prefix)
        watch = EtcdWatch(
            endpoints=self._gateway.ordered_endpoints,
            key=lo or b"\x00",
            range_end=hi,
            after=after,
            on_close=self._watches.discard,
        )
        self._watches.add(watch)
        return watch

    def compact(self, revision: Revision) -> None:
        # physical=true: return only once the history is really gone, so a read
        # right after sees Compacted, as with the embedded backend.
        self._gateway.call(
            "kv/compaction", {"revision": str(revision), "physical": True}, idempotent=False
        )

    def grant(self, ttl: int) -> LeaseID:
        if ttl < 1:
            raise ValueError("lease TTL must be at least 1 second")
        reply = self._gateway.call("lease/grant", {"TTL": str(ttl)}, idempotent=False)
        return LeaseID(int(reply["ID"]))

    def keepalive(self, lease: LeaseID) -> int:
        reply = self._gateway.call("lease/keepalive", {"ID": str(lease)}, idempotent=True)
        ttl = int(reply.get("result", {}).get("TTL", 0))
        if ttl <= 0:
            raise LeaseNotFound(f"lease {lease:x} not found (revoked or expired)")
        return ttl

    def revoke(self, lease: LeaseID) -> None:
        self._gateway.call("lease/revoke", {"ID": str(lease)}, idempotent=False)

    def close(self) -> None:
        for watch in list(self._watches):
            watch.close()
        self._watches.clear()
        self._gateway.close()
