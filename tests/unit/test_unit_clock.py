"""ManualClock: moves only when told, never backwards."""

from __future__ import annotations

import pytest

from drs_poller.clock import ManualClock, SystemClock


def test_manual_clock_starts_where_told():
    clock = ManualClock(start=1_700_000_000.0)
    assert clock.time() == 1_700_000_000.0
    assert clock.monotonic() == 1_000.0
    assert ManualClock().time() == 1_800_000_000.0


@pytest.mark.parametrize(
    ("steps", "wall", "mono"),
    [
        ([], 100.0, 1000.0),
        ([0.0], 100.0, 1000.0),
        ([1.5], 101.5, 1001.5),
        ([10, 20, 0.25], 130.25, 1030.25),
    ],
)
def test_advance_moves_both_clocks(steps, wall, mono):
    clock = ManualClock(start=100.0)
    for step in steps:
        clock.advance(step)
    assert clock.time() == wall
    assert clock.monotonic() == mono


@pytest.mark.parametrize("seconds", [-0.001, -1.0, -3600.0])
def test_advance_refuses_to_go_backwards(seconds):
    clock = ManualClock(start=100.0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(seconds)
    assert clock.time() == 100.0
    assert clock.monotonic() == 1000.0


@pytest.mark.parametrize("seconds", [30.0, -30.0])
def test_jump_wall_moves_only_wall_time(seconds):
    clock = ManualClock(start=100.0)
    clock.advance(5)
    clock.jump_wall(seconds)
    assert clock.time() == 105.0 + seconds
    assert clock.monotonic() == 1005.0
    clock.advance(1)
    assert clock.time() == 106.0 + seconds
    assert clock.monotonic() == 1006.0


def test_system_clock_monotonic_does_not_go_backwards():
    clock = SystemClock()
    first = clock.monotonic()
    assert clock.monotonic() >= first
    assert clock.time() > 1_600_000_000
