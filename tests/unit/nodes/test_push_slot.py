"""The latest-wins push slot: generations, supersession, acks, stale resends."""

from __future__ import annotations

import pytest

from reconciler.nodes import SyncRejected
from reconciler.nodes._slot import PushSlot, relay


def _slot(first: int = 100) -> PushSlot[str, str]:
    return PushSlot(first_generation=first)


def test_offer_assigns_rising_generations_and_take_sends_only_the_newest():
    slot = _slot()
    g1, f1 = slot.offer("a")
    g2, f2 = slot.offer("b")
    assert (g1, g2) == (101, 102)
    out = slot.take()
    assert out is not None
    assert (out.generation, out.desired) == (102, "b")
    assert slot.take() is None  # nothing newer: a stalled node accumulates no queue

    slot.ack(102, "ack-102")
    # The superseded push resolves with the ack of the set that replaced it.
    assert f1.result(0) == "ack-102"
    assert f2.result(0) == "ack-102"


def test_unchanged_set_is_not_resent_and_its_future_is_already_done():
    slot = _slot()
    slot.offer("a")
    out = slot.take()
    assert out is not None
    slot.ack(out.generation, "ok")
    generation, future = slot.offer("a")
    assert generation == out.generation
    assert future.result(0) == "ok"
    assert slot.take() is None


def test_new_session_resends_the_newest_set_with_a_higher_generation():
    slot = _slot()
    slot.offer("a")
    first = slot.take()
    assert first is not None
    slot.new_session()
    again = slot.take()
    assert again is not None
    assert again.desired == "a"
    assert again.generation > first.generation


def test_nothing_to_send_before_first_push_even_after_reconnect():
    slot = _slot()
    slot.new_session()
    assert slot.take() is None


def test_ignored_sync_waits_for_the_agent_generation_then_jumps_above_it():
    slot = _slot(first=0)
    _, future = slot.offer("a")
    sent = slot.take()
    assert sent is not None
    assert sent.generation == 1
    slot.ignored(1)  # the agent applied a higher generation from an earlier reconciler
    assert slot.take() is None
    slot.observe(5000)
    resend = slot.take()
    assert resend is not None
    assert resend.generation == 5001
    assert resend.desired == "a"
    slot.ack(5001, "ok")
    assert future.result(0) == "ok"


def test_reject_fails_waiters_up_to_that_generation_only():
    slot = _slot()
    g1, f1 = slot.offer("bad")
    slot.take()
    g2, f2 = slot.offer("good")
    slot.reject(g1, "invalid: pods.0")
    with pytest.raises(SyncRejected, match="invalid"):
        f1.result(0)
    assert not f2.done()
    slot.take()
    slot.ack(g2, "ok")
    assert f2.result(0) == "ok"


def test_cancelled_future_does_not_break_ack():
    slot = _slot()
    _, future = slot.offer("a")
    future.cancel()
    out = slot.take()
    assert out is not None
    slot.ack(out.generation, "ok")
    assert future.cancelled()


def test_cancel_all_on_close():
    slot = _slot()
    _, future = slot.offer("a")
    slot.cancel_all()
    assert future.cancelled()


def test_relay_hands_a_replaced_connections_waiters_the_new_ack():
    old = _slot()
    _, waiting = old.offer("a")
    new = _slot(first=500)
    assert old.desired is not None
    _, future = new.offer(old.desired)
    relay(future, old.drain_waiters())
    out = new.take()
    assert out is not None
    new.ack(out.generation, "ack-new")
    assert waiting.result(0) == "ack-new"


def test_a_status_seen_before_sending_renumbers_a_stale_generation():
    slot = _slot(first=0)
    slot.offer("a")
    slot.observe(9000)  # the agent's first status arrives before our first sync goes out
    out = slot.take()
    assert out is not None
    assert out.generation == 9001


def test_ignored_after_a_known_agent_generation_resends_at_once():
    slot = _slot(first=0)
    slot.offer("a")
    first = slot.take()
    assert first is not None
    slot.observe(50)  # a status raced ahead of the ack
    slot.ignored(first.generation)
    again = slot.take()
    assert again is not None
    assert again.generation > 50
