"""One clock, injected: wall time for what is written, monotonic time for scheduling,
and the clock's own ``sleep``/``wait``, so the daemon's loops wait on the clock they read.

Every component that needs the time takes a :class:`Clock`. Production code uses
:class:`SystemClock`; tests and the local stack use :class:`ManualClock`, on which the
real loops (:func:`ticks`, the dispatcher's wait) run on virtual time: a sleep ends when
the test moves the clock past it, never on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@lru_cache(maxsize=256)
def epoch(seconds: float) -> Decimal:
    """Epoch seconds as stored (type N): millisecond precision, exact in DynamoDB.

    The same ``seconds`` gives the same (immutable) ``Decimal``: one poll writes its time
    on every server of the item, and 10,000 items are held in memory."""
    return Decimal(f"{seconds:.3f}")


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock epoch seconds: what goes into the table and into DRS timestamps."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps: what schedules and timeouts are measured on."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's monotonic time."""
        ...

    async def wait(self, event: asyncio.Event, at_most: float) -> bool:
        """Wait for ``event``, at most ``at_most`` of this clock's seconds; True if it was set."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait(self, event: asyncio.Event, at_most: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(0.0, at_most))
        return event.is_set()


@dataclass(eq=False)
class _Sleeper:
    deadline: float
    woken: asyncio.Future[None]
    event: asyncio.Event | None = field(default=None)

    def parked(self) -> bool:
        return not self.woken.done() and (self.event is None or not self.event.is_set())


class ManualClock:
    """A clock that moves only when told to. Wall and monotonic time advance together.

    Its ``sleep`` and ``wait`` park until :meth:`advance` moves monotonic time past their
    deadline (or the event is set). :meth:`parked` and :meth:`next_deadline` let a test
    driver move time only once every loop waits on the clock, and only as far as the
    next deadline: virtual time that never skips past real I/O still in flight.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._wall = start
        self._mono = 1_000.0
        self._sleepers: list[_Sleeper] = []
        self._changed: asyncio.Event | None = None

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._wall += seconds
        self._mono += seconds
        for sleeper in self._sleepers:
            if sleeper.deadline <= self._mono and not sleeper.woken.done():
                sleeper.woken.set_result(None)

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock (an NTP step); monotonic time is unaffected."""
        self._wall += seconds

    async def sleep(self, seconds: float) -> None:
        await self._park(seconds, None)

    async def wait(self, event: asyncio.Event, at_most: float) -> bool:
        if event.is_set():
            return True
        setter: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
        try:
            await self._park(at_most, event, setter)
        finally:
            setter.cancel()
        return event.is_set()

    async def _park(
        self,
        seconds: float,
        event: asyncio.Event | None,
        setter: asyncio.Future[Any] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        sleeper = _Sleeper(self._mono + max(0.0, seconds), loop.create_future(), event)
        if sleeper.deadline <= self._mono:
            sleeper.woken.set_result(None)
        self._sleepers.append(sleeper)
        self._signal()
        try:
            if setter is None:
                await sleeper.woken
            else:
                await asyncio.wait({sleeper.woken, setter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._sleepers.remove(sleeper)
            sleeper.woken.cancel()
            self._signal()

    def _signal(self) -> None:
        if self._changed is not None:
            self._changed.set()

    # --- for the test driver -------------------------------------------------------------

    def parked(self) -> int:
        """How many sleeps and waits are parked on this clock (not yet woken)."""
        return sum(sleeper.parked() for sleeper in self._sleepers)

    def next_deadline(self) -> float | None:
        """The earliest monotonic deadline among the parked sleeps and waits."""
        deadlines = [sleeper.deadline for sleeper in self._sleepers if sleeper.parked()]
        return min(deadlines, default=None)

    async def until_parked(self, count: int) -> None:
        """Return once at least ``count`` sleeps or waits are parked (real time passes
        meanwhile: the loops may be doing I/O)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        while self.parked() < count:
            self._changed.clear()
            await self._changed.wait()


async def ticks(clock: Clock, interval: float) -> AsyncIterator[float]:
    """Yield at once, then every ``interval`` seconds on ``clock``, drift-corrected (arq):
    the ticks stay on ``start + k * interval`` however long the work between them took,
    and a tick that the work overran is skipped rather than run in a burst. Yields the
    tick's scheduled monotonic time."""
    start = clock.monotonic()
    tick = 0
    while True:
        yield start + tick * interval
        tick += 1
        now = clock.monotonic()
        if start + tick * interval < now:  # fell behind (a slow query): skip, do not burst
            tick = int((now - start) // interval) + 1
        await clock.sleep(start + tick * interval - now)
