"""Kubernetes ``Status`` bodies: every error the HTTP server returns, and how ApiErrors map.

Used by every handler of the HTTP server; the client (``reconciler.client``) reads the same
body back into the same :class:`reconciler.api.ApiError` subclasses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.api import ApiError, Cause, Forbidden, Invalid

__all__ = ["REASONS", "HttpError", "from_api_error", "status_body", "status_bytes"]

#: The Status.reason Kubernetes uses for each code we return.
REASONS: Mapping[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


@dataclass(frozen=True)
class _Details:
    name: str | None = None
    kind: str | None = None
    causes: tuple[Cause, ...] = ()


class HttpError(Exception):
    """An error response: the code, the Status reason and message, and optional details.
    ``headers`` go out with it (``Retry-After`` on 429, ``WWW-Authenticate`` on 401)."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        name: str | None = None,
        kind: str | None = None,
        causes: Sequence[Cause] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "InternalError")
        self.details = _Details(name=name, kind=kind, causes=tuple(causes))
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return status_body(
            self.code,
            self.message,
            reason=self.reason,
            name=self.details.name,
            kind=self.details.kind,
            causes=self.details.causes,
        )


def _cause_reason(cause: Cause) -> str:
    # Kubernetes' CauseType words; pydantic says "Field required" for a missing field.
    if cause.reason is not None:
        return cause.reason
    if cause.message.lower().startswith("field required"):
        return "FieldValueRequired"
    if "extra inputs are not permitted" in cause.message.lower():
        return "FieldValueNotSupported"
    return "FieldValueInvalid"


def status_body(
    code: int,
    message: str,
    *,
    reason: str | None = None,
    name: str | None = None,
    kind: str | None = None,
    causes: Sequence[Cause] = (),
) -> dict[str, Any]:
    """A ``v1 Status`` with ``status: Failure`` (or ``Success`` for a 2xx code)."""
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if kind:
        details["kind"] = kind
    if causes:
        details["causes"] = [
            {"field": c.field, "reason": _cause_reason(c), "message": c.message} for c in causes
        ]
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "InternalError"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def status_bytes(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def from_api_error(exc: ApiError, *, name: str | None, kind: str | None) -> HttpError:
    """The HTTP error of an :class:`ApiError` (its ``code``; its reason, which already
    distinguishes ``AlreadyExists`` from ``Conflict`` as Kubernetes does)."""
    causes = exc.causes if isinstance(exc, Invalid | Forbidden) else ()
    return HttpError(exc.code, exc.message, reason=exc.reason, name=name, kind=kind, causes=causes)
