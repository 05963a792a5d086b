"""Crash-loop back-off: how long the kubelet waits before starting a failed container again.

Pure arithmetic used by the planner. The back-off *step* (crashes in a row) is stored on each
container as a label, so the schedule survives an agent restart. As in Kubernetes' kubelet, the
first crash is restarted at once and only a crash after a restart backs off: 0 s, then 10 s,
20 s, 40 s, ... capped at 300 s, back to the first step once a container has run for 10 minutes
(all configurable). So CrashLoopBackOff is only ever reported with at least one restart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CrashLoopBackoff:
    """The crash-loop schedule (the node links' reconnect backoff is another thing:
    ``reconciler.nodes.backoff.BackoffPolicy``)."""

    initial_s: float = 10.0
    max_s: float = 300.0
    reset_after_s: float = 600.0

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < self.initial_s or self.reset_after_s < 0:
            raise ValueError(
                f"back-off needs 0 <= initial ({self.initial_s}) <= max ({self.max_s}) "
                f"and reset_after >= 0 ({self.reset_after_s})"
            )

    def delay(self, step: int) -> float:
        """Seconds to wait before the attempt after ``step`` failures in a row (step >= 1)."""
        if step <= 0:
            return 0.0
        # Bound the exponent: 2**60 seconds is already far past any cap.
        return float(min(self.initial_s * 2.0 ** min(step - 1, 60), self.max_s))

    def restart_delay(self, step: int) -> float:
        """Seconds before restarting a container after ``step`` crashes in a row: none after
        the first, then ``delay(step - 1)``."""
        return self.delay(step - 1)

    def next_step(self, previous_step: int, *, ran_for_s: float) -> int:
        """The step after a failure of a container started at ``previous_step``.

        A container that ran long enough earns a fresh start: its failure counts as the first.
        """
        if ran_for_s >= self.reset_after_s:
            return 1
        return previous_step + 1
