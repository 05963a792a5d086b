"""Reconnect delays for node connections: exponential backoff with full jitter.

Used by each ``NodeConnection`` between failed connection attempts. Pure: the random source
is passed in, so tests pin the sequence and a fleet of reconnecting nodes does not stampede a
restarted bastion in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """``delay(n) = uniform(floor, min(cap, base * factor**n))`` after n consecutive failures."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    floor: float = 0.05

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.base * self.factor ** min(attempt, 64))
        # Full jitter, but never zero: a zero delay turns a refusing host into a busy loop.
        return rng.uniform(min(self.floor, ceiling), ceiling)


class Backoff:
    """Counts consecutive failures of one connection; ``reset`` after a healthy session."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng
        self._attempt = 0

    @property
    def attempt(self) -> int:
        return self._attempt

    def next_delay(self) -> float:
        delay = self._policy.delay(self._attempt, self._rng)
        self._attempt += 1
        return delay

    def reset(self) -> None:
        self._attempt = 0
