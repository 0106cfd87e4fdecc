"""ManualClock: moves only when told, never backwards."""

from __future__ import annotations

import asyncio

import pytest

from drs_poller.clock import ManualClock, SystemClock, ticks


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


async def _drive(clock: ManualClock, *, until: float, loops: int = 1) -> None:
    """Move the clock deadline by deadline up to ``until`` (monotonic)."""
    while True:
        await clock.until_parked(loops)
        deadline = clock.next_deadline()
        if deadline is None or deadline > until:
            clock.advance(until - clock.monotonic())
            return
        clock.advance(deadline - clock.monotonic())


async def test_ticks_stay_on_their_grid_and_skip_what_the_work_overran():
    clock = ManualClock(start=100.0)
    seen: list[float] = []

    async def loop() -> None:
        async for _ in ticks(clock, 10):
            seen.append(clock.monotonic() - 1000)
            if len(seen) == 2:
                clock.advance(25)  # this turn's work took 25 s: ticks 20 and 30 are skipped

    task = asyncio.create_task(loop())
    await _drive(clock, until=1060)
    await asyncio.sleep(0)
    task.cancel()
    assert seen == [0, 10, 40, 50, 60]


async def test_manual_sleep_ends_only_when_the_clock_passes_it():
    clock = ManualClock(start=100.0)
    sleeper = asyncio.create_task(clock.sleep(5))
    await clock.until_parked(1)
    assert clock.next_deadline() == 1005.0
    clock.advance(4.999)
    await asyncio.sleep(0)
    assert not sleeper.done()
    clock.advance(0.001)
    await sleeper
    assert clock.parked() == 0


@pytest.mark.parametrize(("set_event", "expected"), [(True, True), (False, False)])
async def test_manual_wait_returns_whether_the_event_came_first(set_event, expected):
    clock = ManualClock(start=100.0)
    event = asyncio.Event()
    waiter = asyncio.create_task(clock.wait(event, 30))
    await clock.until_parked(1)
    if set_event:
        event.set()
        assert clock.parked() == 0  # a wait whose event is set is no longer parked
    else:
        clock.advance(30)
    assert await waiter is expected
    assert clock.monotonic() == (1000.0 if set_event else 1030.0)


async def test_system_clock_sleeps_and_waits_in_real_time():
    clock = SystemClock()
    event = asyncio.Event()
    assert await clock.wait(event, 0.0) is False
    event.set()
    assert await clock.wait(event, 10.0) is True
    await clock.sleep(0)
