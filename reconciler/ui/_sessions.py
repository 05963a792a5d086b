"""Browser sessions of the web UI: an opaque id in a cookie, the bearer token kept server-side.

``/ui/login`` checks the token with the API server's :class:`Authenticator` and opens a
session; every later request looks the session up and authenticates its token again (a
deleted service account loses its session at once). The cookie holds only a random id
(HttpOnly, Secure, SameSite=Strict), so the token never reaches a URL or script. Each session
also has a CSRF token that every form POST must echo.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["COOKIE", "Session", "Sessions"]

COOKIE = "capstan_session"
_MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class Session:
    """One logged-in browser: its id (the cookie), its bearer token and its CSRF token."""

    id: str
    token: str
    csrf: str
    expires_at: float

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


class Sessions:
    """In-memory sessions with a fixed lifetime. Thread-safe."""

    def __init__(
        self, *, ttl_s: float = 8 * 3600, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._monotonic = monotonic
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, token: str) -> Session:
        now = self._monotonic()
        session = Session(
            id=secrets.token_urlsafe(32),
            token=token,
            csrf=secrets.token_urlsafe(24),
            expires_at=now + self.ttl_s,
        )
        with self._lock:
            self._drop_expired(now)
            if len(self._sessions) >= _MAX_SESSIONS:
                # The oldest goes: a flood of logins cannot grow memory without bound.
                oldest = min(self._sessions.values(), key=lambda s: s.expires_at)
                del self._sessions[oldest.id]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if session.expires_at <= self._monotonic():
                del self._sessions[session_id]
                return None
            return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)

    def _drop_expired(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[key]
