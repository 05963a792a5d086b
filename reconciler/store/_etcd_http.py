"""Unary calls to etcd's JSON gateway, with endpoint failover and error mapping.

Used by ``_etcd.EtcdStore``. etcd 3.4 (Debian's etcd-server) serves its gRPC API
as JSON at ``/v3/...``: int64 fields travel as strings, keys and values as
base64, and zero-valued fields are omitted (a missing ``version`` is 0, a missing
event ``type`` is PUT).

Failover: endpoints are tried in order starting from the last one that
answered. A request that never reached a server (connect error) moves to the
next endpoint whatever it was; one that may have reached it (a read error
after sending) is retried elsewhere only if it is a read — repeating a put
could apply it twice, so the caller gets ``Unavailable`` instead.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import httpx

from reconciler.store._errors import (
    Compacted,
    DuplicateKey,
    FutureRevision,
    LeaseNotFound,
    StorageFull,
    StoreError,
    Unavailable,
    ValueTooLarge,
)
from reconciler.store._types import KeyValue, LeaseID, Revision

_TIMEOUT = httpx.Timeout(10.0, connect=2.0)
# Keep a connection per concurrent caller: with httpx's default of 20 idle
# connections, 64 writer threads spent their time opening and closing sockets.
_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=256)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def kv_from_json(obj: dict[str, Any]) -> KeyValue:
    lease = int(obj.get("lease", 0))
    return KeyValue(
        key=unb64(obj.get("key")).decode("utf-8"),
        value=unb64(obj.get("value")),
        create_revision=Revision(int(obj.get("create_revision", 0))),
        mod_revision=Revision(int(obj.get("mod_revision", 0))),
        version=int(obj.get("version", 0)),
        lease=LeaseID(lease) if lease else None,
    )


def header_revision(reply: dict[str, Any]) -> Revision:
    return Revision(int(reply.get("header", {}).get("revision", 0)))


def endpoint_url(endpoint: str) -> str:
    return endpoint if "://" in endpoint else f"http://{endpoint}"


class EtcdGateway:
    """A small JSON-over-HTTP client for one etcd cluster (several endpoints)."""

    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = [endpoint_url(e).rstrip("/") for e in endpoints]
        self._preferred = 0
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=_TIMEOUT, limits=_LIMITS)

    @property
    def ordered_endpoints(self) -> list[str]:
        start = self._preferred
        return self.endpoints[start:] + self.endpoints[:start]

    def call(self, path: str, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        errors: list[str] = []
        for index, endpoint in enumerate(self.ordered_endpoints):
            try:
                response = self._client.post(f"{endpoint}/v3/{path}", json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                errors.append(f"{endpoint}: {exc}")
                continue
            except httpx.TransportError as exc:
                if not idempotent:
                    raise Unavailable(
                        f"etcd {endpoint} failed mid-request ({exc}); the write may or may not"
                        " have been applied"
                    ) from exc
                errors.append(f"{endpoint}: {exc}")
                continue
            try:
                reply: dict[str, Any] = response.json()
            except ValueError as exc:
                raise StoreError(
                    f"etcd {endpoint} answered HTTP {response.status_code} with no JSON:"
                    f" {response.text[:200]!r} (is this an etcd v3 client URL?)"
                ) from exc
            if response.status_code == 503 or reply.get("code") == 14:
                errors.append(f"{endpoint}: {reply.get('message', response.status_code)}")
                continue
            with self._lock:
                self._preferred = (self._preferred + index) % len(self.endpoints)
            if "error" in reply or response.status_code >= 400:
                raise _error(reply, body)
            return reply
        raise Unavailable("no etcd endpoint answered: " + "; ".join(errors))

    def close(self) -> None:
        self._client.close()


def _error(reply: dict[str, Any], body: dict[str, Any]) -> StoreError:
    message = str(reply.get("message") or reply.get("error") or reply)
    if "compacted" in message:
        return Compacted(requested=int(body.get("revision", 0)), compact_revision=None)
    if "future revision" in message:
        return FutureRevision(message)
    if "lease not found" in message:
        return LeaseNotFound(message)
    if "duplicate key" in message:
        return DuplicateKey(message)
    if "too large" in message:
        return ValueTooLarge(message)
    if "database space exceeded" in message:
        return StorageFull(
            f"etcd: {message} (the NOSPACE alarm: compact and defragment etcd, or raise "
            "--quota-backend-bytes, then disarm the alarm)"
        )
    return StoreError(f"etcd: {message}")
