"""The dispatcher: sleeps until the earliest execution is due, then hands every
execution due within the coalescing window to the poller as one batch."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from collections.abc import Callable

    from drs_poller.clock import Clock
    from drs_poller.engine.polling import Poller
    from drs_poller.engine.state import EngineState
    from drs_poller.observability.health import Health
    from drs_poller.observability.metrics import Metrics

log = structlog.get_logger("drs_poller.dispatch")

# The loop turns at least this often, so /healthz sees it alive while idle.
IDLE_TURN = 1.0


class _Slot:
    """A batch's dispatch slot, released once: when DRS has answered, or at the end."""

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()


class Dispatcher:
    def __init__(
        self,
        *,
        state: EngineState,
        poller: Poller,
        metrics: Metrics,
        health: Health,
        clock: Clock,
        coalesce_window: float,
        max_inflight_batches: int,
        max_batch: int | None = None,
        may_poll: Callable[[], bool] = lambda: True,
    ) -> None:
        self.state = state
        self.poller = poller
        self.metrics = metrics
        self.health = health
        self.clock = clock
        self.coalesce_window = coalesce_window
        # Executions a batch takes at most: the rest stay due, for the next free slot.
        self.max_batch = max_batch
        self.may_poll = may_poll
        self.inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_inflight_batches)
        self._stopping = False
        self._batches = 0
        self.polled = 0  # executions handed to the poller, in all

    def stopping(self) -> bool:
        # A method, not an attribute: its value changes across awaits.
        return self._stopping

    def stop(self) -> None:
        """Stop taking work; batches in flight are left to the daemon's shutdown."""
        self._stopping = True
        self.state.wakeup.set()

    async def run(self) -> None:
        queue, wakeup = self.state.queue, self.state.wakeup
        while not self.stopping():
            self.health.beat()
            now = self.clock.monotonic()
            next_due = queue.next_due()
            if not self.may_poll():
                # Our lease could have lapsed in a peer's eyes: poll nothing until renewed.
                next_due = None
            if next_due is None or next_due > now:
                wait = IDLE_TURN if next_due is None else min(IDLE_TURN, next_due - now)
                wakeup.clear()
                await self.clock.wait(wakeup, wait)
                continue
            if not await self._acquire_slot():
                break
            batch = queue.pop_due(
                self.clock.monotonic(), window=self.coalesce_window, limit=self.max_batch
            )
            if not batch:
                self._slots.release()
                continue
            self._batches += 1
            self.polled += len(batch)
            slot = _Slot(self._slots)
            task = asyncio.create_task(
                self.poller.poll_batch(batch, observed=slot.release),
                name=f"poll batch {self._batches}",
            )
            self.inflight.add(task)
            self.metrics.inflight_batches.set(len(self.inflight))
            task.add_done_callback(functools.partial(self._reap, slot))

    async def _acquire_slot(self) -> bool:
        """Wait for a free batch slot, still turning (and beating) while every slot is
        busy: batches slowed by a throttling storm are not a dead process, and /healthz
        must not get the task killed in the middle of an outage."""
        while not self.stopping():
            self.health.beat()
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=IDLE_TURN)
            except TimeoutError:
                continue
            if self.stopping():
                self._slots.release()
                return False
            return True
        return False

    def _reap(self, slot: _Slot, task: asyncio.Task[None]) -> None:
        """Release the slot (if DRS never answered) and surface the error of a finished
        batch (arq's reaping)."""
        self.inflight.discard(task)
        slot.release()
        self.metrics.inflight_batches.set(len(self.inflight))
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("poll batch crashed", task=task.get_name(), error=repr(error), exc_info=error)
