"""HeldBack: recovery instances not asked about again for a while (engine/polling.py)."""

from __future__ import annotations

from drs_poller.engine.polling import HeldBack


def test_a_key_is_held_for_the_span_and_let_go_at_its_end() -> None:
    held = HeldBack(300.0)
    held.hold("ri-a", 0.0)
    held.hold("ri-b", 100.0)
    held.expire(299.999)
    assert "ri-a" in held
    assert "ri-b" in held
    held.expire(300.0)
    assert "ri-a" not in held
    assert "ri-b" in held
    held.expire(400.0)
    assert len(held) == 0


def test_holding_a_key_again_counts_its_span_from_then() -> None:
    held = HeldBack(300.0)
    held.hold("ri-a", 0.0)
    held.hold("ri-b", 10.0)
    held.hold("ri-a", 20.0)
    held.expire(310.0)
    assert "ri-a" in held
    assert "ri-b" not in held
    held.expire(320.0)
    assert "ri-a" not in held


def test_expiring_stops_at_the_first_key_still_held() -> None:
    held = HeldBack(300.0)
    for second in range(1000):
        held.hold(f"ri-{second}", float(second))
    held.expire(800.0)
    assert len(held) == 499
    assert "ri-500" not in held
    assert "ri-501" in held


def test_a_key_held_out_of_order_is_never_let_go_before_its_span() -> None:
    # Two batches in flight: the later one's key is held first.
    held = HeldBack(300.0)
    held.hold("ri-later", 101.0)
    held.hold("ri-earlier", 100.0)
    held.expire(399.999)
    assert "ri-earlier" in held
    assert "ri-later" in held
    # Let go by the end of the later key's span at most.
    held.expire(401.0)
    assert len(held) == 0
