"""The API layer's errors: one base with a Kubernetes-style ``reason`` and an HTTP-ish ``code``.

Raised by :class:`reconciler.api.Api` to every caller (controllers, scheduler, sync, CLI), and
by the HTTP client (:mod:`reconciler.client`) from a response's ``Status``; the HTTP server
(:mod:`reconciler.api.server`) maps ``code`` to the response status and ``reason`` to a
``Status`` body, as the Kubernetes API server does. Store errors never leak past the API:
they become :class:`Expired` (410), :class:`TooLarge` (413) or :class:`Unavailable` (503).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from reconciler.store import Compacted, StoreError, ValueTooLarge

__all__ = [
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "Cause",
    "Conflict",
    "Expired",
    "Forbidden",
    "Invalid",
    "NotFound",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "store_errors",
]


@dataclass(frozen=True, slots=True)
class Cause:
    """One validation problem: a Kubernetes field path (``spec.containers[0].image``) and why."""

    field: str
    message: str
    #: Kubernetes' ``CauseType`` when it is not a validation word (``FieldManagerConflict``).
    reason: str | None = None


class ApiError(Exception):
    """Base of every API error. ``reason`` is the Kubernetes ``Status.reason`` word."""

    reason: str = "InternalError"
    code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ApiError):
    reason = "NotFound"
    code = 404


class AlreadyExists(ApiError):
    reason = "AlreadyExists"
    code = 409


class Conflict(ApiError):
    """The object changed since the caller read it (stale ``resourceVersion``): re-read, retry."""

    reason = "Conflict"
    code = 409


class Forbidden(ApiError):
    """Refused by policy: creating in a terminating namespace, deleting ``default``, a pod
    spec its namespace's Pod Security level forbids (``causes`` name those fields)."""

    reason = "Forbidden"
    code = 403

    def __init__(self, message: str, causes: tuple[Cause, ...] = ()) -> None:
        super().__init__(message)
        self.causes = causes


class Expired(ApiError):
    """The watch's start revision was compacted away (HTTP 410 Gone): relist, then watch."""

    reason = "Expired"
    code = 410


class TooLarge(ApiError):
    reason = "RequestEntityTooLarge"
    code = 413


class DisruptionBudgetExceeded(ApiError):
    """An eviction refused because a PodDisruptionBudget would be broken: try again later (HTTP
    429, as Kubernetes answers it)."""

    reason = "TooManyRequests"
    code = 429


class Unavailable(ApiError):
    reason = "ServiceUnavailable"
    code = 503


class Invalid(ApiError):
    """The object failed validation; ``causes`` name every offending field."""

    reason = "Invalid"
    code = 422

    def __init__(self, message: str, causes: tuple[Cause, ...]) -> None:
        detail = "; ".join(f"{c.field}: {c.message}" if c.field else c.message for c in causes)
        super().__init__(f"{message}: {detail}" if detail else message)
        self.causes = causes


class Unauthorized(ApiError):
    """No valid credentials (HTTP 401): raised by the HTTP client."""

    reason = "Unauthorized"
    code = 401


class BadRequest(ApiError):
    """The server could not read the request (HTTP 400): raised by the HTTP client."""

    reason = "BadRequest"
    code = 400


class TooManyRequests(ApiError):
    """The server is overloaded (HTTP 429); ``retry_after`` seconds is its suggestion."""

    reason = "TooManyRequests"
    code = 429

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Store failures as API errors: no caller above the API sees a store exception."""
    try:
        yield
    except Compacted as exc:
        raise Expired(str(exc)) from exc
    except ValueTooLarge as exc:
        raise TooLarge(str(exc)) from exc
    except StoreError as exc:
        raise Unavailable(f"store: {exc}") from exc
