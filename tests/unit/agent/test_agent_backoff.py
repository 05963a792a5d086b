from __future__ import annotations

import pytest

from agent.kubelet.backoff import CrashLoopBackoff


def test_doubling_capped():
    policy = CrashLoopBackoff()
    assert [policy.delay(s) for s in range(0, 8)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert policy.delay(10_000) == 300


def test_first_crash_restarts_at_once_then_doubles():
    policy = CrashLoopBackoff()
    assert [policy.restart_delay(s) for s in range(1, 6)] == [0, 10, 20, 40, 80]


def test_reset_after_long_run():
    policy = CrashLoopBackoff(initial_s=1, max_s=8, reset_after_s=60)
    assert policy.next_step(4, ran_for_s=59.9) == 5
    assert policy.next_step(4, ran_for_s=60) == 1


def test_rejects_nonsense():
    with pytest.raises(ValueError):
        CrashLoopBackoff(initial_s=10, max_s=5)
