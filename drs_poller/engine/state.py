"""The engine's shared state: tracked executions, their schedule, and gauges over them."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drs_poller.core.deciding import Policy, is_overdue
from drs_poller.core.scheduling import PollQueue

if TYPE_CHECKING:
    from drs_poller.engine.tracking import Tracked
    from drs_poller.observability.metrics import Metrics


@dataclass
class EngineState:
    metrics: Metrics
    policy: Policy
    tombstone_seconds: float
    queue: PollQueue = field(default_factory=PollQueue)
    tracked: dict[str, Tracked] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)  # name -> monotonic expiry
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def forget(self, name: str) -> None:
        tracked = self.tracked.pop(name, None)
        if tracked is not None:
            tracked.dropped = True
        self.queue.discard(name)

    def finish(self, name: str, *, now: float) -> None:
        """Forget an execution that reached a final status, and ignore it in discovery
        for a while: the GSI may still show it as POLLING."""
        self.forget(name)
        self.finished[name] = now + self.tombstone_seconds

    def recently_finished(self, name: str, *, now: float) -> bool:
        expiry = self.finished.get(name)
        return expiry is not None and expiry > now

    def expire_finished(self, *, now: float) -> None:
        for name in [name for name, expiry in self.finished.items() if expiry <= now]:
            del self.finished[name]

    def refresh_gauges(self, *, wall: float) -> None:
        counts: Counter[tuple[str, str]] = Counter()
        overdue = 0
        oldest_start: float | None = None
        for tracked in self.tracked.values():
            execution = tracked.execution
            if execution is None:
                counts[("UNKNOWN", "MALFORMED")] += 1
                continue
            counts[(execution.execution_type.value, execution.phase or "PENDING")] += 1
            overdue += is_overdue(execution, now=wall, policy=self.policy)
            if oldest_start is None or execution.start_time < oldest_start:
                oldest_start = execution.start_time
        self.metrics.set_active(counts)
        self.metrics.overdue.set(overdue)
        self.metrics.oldest_age.set(0.0 if oldest_start is None else max(0.0, wall - oldest_start))
