"""One clock, injected: wall time for what is written, monotonic time for scheduling.

Every component that needs the time takes a :class:`Clock`. Production code uses
:class:`SystemClock`; tests and the local stack use :class:`ManualClock` and move
time themselves instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock epoch seconds: what goes into the table and into DRS timestamps."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps: what schedules and timeouts are measured on."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to. Wall and monotonic time advance together."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._wall = start
        self._mono = 1_000.0

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._wall += seconds
        self._mono += seconds

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock (an NTP step); monotonic time is unaffected."""
        self._wall += seconds
