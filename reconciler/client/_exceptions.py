"""The client's errors: a bad config file, and an error response as the API's own error.

``error_from_status`` turns a Kubernetes ``Status`` body into the same
:class:`reconciler.api.ApiError` subclass the in-process API raises, so callers handle one set
of errors whether they talk to the API in process or over HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.api import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Cause,
    Conflict,
    Expired,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)

__all__ = ["ConfigError", "error_from_status"]


class ConfigError(ValueError):
    """The client config file is missing, unreadable or incomplete."""


_BY_REASON: Mapping[str, type[ApiError]] = {
    "NotFound": NotFound,
    "AlreadyExists": AlreadyExists,
    "Conflict": Conflict,
    "Forbidden": Forbidden,
    "Expired": Expired,
    "Gone": Expired,
    "RequestEntityTooLarge": TooLarge,
    "ServiceUnavailable": Unavailable,
    "Unauthorized": Unauthorized,
    "BadRequest": BadRequest,
}
_BY_CODE: Mapping[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Expired,
    413: TooLarge,
    503: Unavailable,
}


def error_from_status(code: int, body: Any, *, retry_after: str | None = None) -> ApiError:
    """The :class:`ApiError` a ``Status`` body (or any error response) stands for."""
    status = body if isinstance(body, dict) else {}
    message = str(status.get("message") or f"HTTP {code}")
    reason = str(status.get("reason") or "")
    if code == 422 or reason == "Invalid":
        details = status.get("details") if isinstance(status.get("details"), dict) else {}
        raw_causes = details.get("causes") if isinstance(details, dict) else None
        causes = tuple(
            Cause(str(c.get("field", "")), str(c.get("message", "")))
            for c in (raw_causes or [])
            if isinstance(c, dict)
        )
        error: ApiError = Invalid(message, causes)
        error.message = message
        return error
    if code == 429:
        try:
            seconds = float(retry_after) if retry_after else 1.0
        except ValueError:
            seconds = 1.0
        return TooManyRequests(message, retry_after=seconds)
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    generic = ApiError(message)
    generic.code = code
    generic.reason = reason or "InternalError"
    return generic
