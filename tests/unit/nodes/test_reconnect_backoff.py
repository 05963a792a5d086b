"""Reconnect backoff: exponential growth, a cap, jitter that is never zero."""

from __future__ import annotations

import random

from reconciler.nodes import Backoff, BackoffPolicy


def test_delays_grow_exponentially_within_jitter_and_stop_at_the_cap():
    policy = BackoffPolicy(base=0.5, factor=2.0, cap=8.0, floor=0.05)
    backoff = Backoff(policy, random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    ceilings = [min(8.0, 0.5 * 2**n) for n in range(10)]
    assert all(0.05 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[5:]) > 2.0  # the ceiling did grow
    assert backoff.attempt == 10


def test_jitter_spreads_a_fleet_that_failed_together():
    policy = BackoffPolicy()
    firsts = {round(Backoff(policy, random.Random(seed)).next_delay(), 6) for seed in range(20)}
    assert len(firsts) == 20


def test_same_seed_same_sequence_and_reset_starts_over():
    policy = BackoffPolicy()
    a = Backoff(policy, random.Random(3))
    b = Backoff(policy, random.Random(3))
    assert [a.next_delay() for _ in range(5)] == [b.next_delay() for _ in range(5)]
    a.reset()
    assert a.attempt == 0
    assert a.next_delay() <= policy.base


def test_huge_attempt_counts_do_not_overflow():
    assert BackoffPolicy(cap=30.0).delay(10_000, random.Random(1)) <= 30.0
