"""Paged LISTs (``?limit=N`` and ``?continue=TOKEN``), as Kubernetes serves them.

Used by the REST handler when a LIST carries ``limit`` or ``continue`` (kubectl sends
``limit=500``; informers and the official clients page big lists). Every page of one list is
read from the store at the revision of its first page, so the pages together are one
consistent snapshot, as etcd gives Kubernetes; once that revision is compacted the token
has expired (410, list again). The token is opaque to clients: the revision and the last key
served, base64url-encoded JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from reconciler.api import kind_prefix
from reconciler.api.server._fieldselect import FieldSelector
from reconciler.api.server._raw import labels_of, with_revision
from reconciler.api.server._status import HttpError
from reconciler.store import Compacted, Revision, Store
from schemas import KubeObject, LabelSelector

__all__ = ["Page", "parse_limit", "read_page"]

_MAX_LIMIT = 10_000_000


@dataclass(frozen=True)
class Page:
    """One page: comma-joined item bytes, the snapshot revision, the token of the next page
    (None on the last) and how many matching items come after this page."""

    items: bytes
    revision: int
    next_token: str | None
    remaining: int


def parse_limit(value: str | None) -> int | None:
    if value is None or value in ("", "0"):
        return None  # Kubernetes: 0 or absent means no limit
    if not value.isdigit() or not value.isascii() or int(value) > _MAX_LIMIT:
        raise HttpError(400, f"limit={value!r}: must be a non-negative integer")
    return int(value)


def _encode(revision: int, key: str) -> str:
    raw = json.dumps({"v": 1, "rv": revision, "start": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode(token: str, prefix: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        revision, key = int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError) as exc:
        raise HttpError(400, "continue: not a token this server gave out") from exc
    if data.get("v") != 1 or revision <= 0 or not key.startswith(prefix):
        raise HttpError(400, "continue: the token belongs to another list")
    return revision, key


def read_page(
    store: Store,
    model: type[KubeObject],
    *,
    namespace: str | None,
    selector: LabelSelector | None,
    fields: FieldSelector | None,
    limit: int | None,
    token: str | None,
) -> Page:
    """The page after ``token`` (or the first), at most ``limit`` matching items."""
    prefix = kind_prefix(model, namespace)
    revision, after = _decode(token, prefix) if token else (None, "")
    try:
        result = store.range(
            prefix, prefix=True, at_revision=Revision(revision) if revision else None
        )
    except Compacted as exc:
        raise HttpError(
            410,
            "continue: the list this token belongs to is too old; list again without it",
            reason="Expired",
        ) from exc
    chosen: list[bytes] = []
    last_key = ""
    remaining = 0
    for kv in result.kvs:
        if kv.key <= after:
            continue
        if selector is not None and not selector.matches(labels_of(kv.value)):
            continue
        if fields is not None and not fields.matches_bytes(kv.value):
            continue
        if limit is not None and len(chosen) >= limit:
            remaining += 1
            continue
        chosen.append(with_revision(kv.value, kv.mod_revision))
        last_key = kv.key
    # A read at a past revision reports the store's current one (etcd's header): the page's
    # snapshot is the revision it was read at.
    snapshot = revision or int(result.revision)
    next_token = _encode(snapshot, last_key) if remaining else None
    return Page(
        items=b",".join(chosen), revision=snapshot, next_token=next_token, remaining=remaining
    )
