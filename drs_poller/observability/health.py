"""Liveness and readiness, decided from the main loop's heartbeat.

Pure: no I/O and no real time, so the HTTP layer only reports what this decides and
tests drive it with a :class:`~drs_poller.clock.ManualClock`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drs_poller.clock import Clock


class Health:
    def __init__(self, clock: Clock, liveness_timeout: float) -> None:
        if liveness_timeout <= 0:
            raise ValueError("liveness_timeout must be positive")
        self._clock = clock
        self._timeout = liveness_timeout
        # Construction counts as the first beat: startup (connecting, the first
        # discovery) gets one full timeout before a liveness probe may restart us.
        self._last_beat = clock.monotonic()
        self._ready = False
        self._stopping = False

    def beat(self) -> None:
        """Record that the main loop completed a turn."""
        self._last_beat = self._clock.monotonic()

    def mark_ready(self) -> None:
        """Record the first successful discovery; readiness is never withdrawn by it."""
        self._ready = True

    def mark_stopping(self) -> None:
        """Take the poller out of readiness for the rest of its life (graceful shutdown)."""
        self._stopping = True

    def seconds_since_beat(self) -> float:
        return self._clock.monotonic() - self._last_beat

    def alive(self) -> bool:
        return self.seconds_since_beat() <= self._timeout

    def ready(self) -> bool:
        return self._ready and not self._stopping and self.alive()

    def describe(self) -> dict[str, Any]:
        return {
            "alive": self.alive(),
            "ready": self._ready,
            "stopping": self._stopping,
            "seconds_since_beat": round(self.seconds_since_beat(), 3),
            "liveness_timeout": self._timeout,
        }
