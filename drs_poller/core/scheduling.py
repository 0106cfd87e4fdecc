"""The schedule: one entry per execution, keyed by the time its next poll is due.

A heap with lazy deletion: rescheduling pushes a new entry and the old one is
skipped when it surfaces. Times are on the monotonic clock and are passed in.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Due:
    name: str  # the execution's queue name (Tracked.name)
    due: float


class PollQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._due: dict[str, tuple[float, int]] = {}
        self._counter = 0

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def schedule(self, key: str, due: float) -> None:
        """Add ``key``, or move it to ``due`` if it is already scheduled."""
        self._counter += 1
        self._due[key] = (due, self._counter)
        heapq.heappush(self._heap, (due, self._counter, key))
        if len(self._heap) > 2 * len(self._due) + 64:
            self._compact()

    def discard(self, key: str) -> None:
        self._due.pop(key, None)

    def due_at(self, key: str) -> float | None:
        entry = self._due.get(key)
        return entry[0] if entry else None

    def next_due(self) -> float | None:
        self._drop_stale_head()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float, *, window: float = 0.0, limit: int | None = None) -> list[Due]:
        """Remove and return every entry due by ``now + window``, earliest first.

        The window pulls nearly-due executions forward (never back), so that one
        DRS call per region serves all of them.
        """
        horizon = now + window
        popped: list[Due] = []
        while self._heap and (limit is None or len(popped) < limit):
            self._drop_stale_head()
            if not self._heap or self._heap[0][0] > horizon:
                break
            due, _, key = heapq.heappop(self._heap)
            del self._due[key]
            popped.append(Due(name=key, due=due))
        return popped

    def _drop_stale_head(self) -> None:
        while self._heap:
            due, counter, key = self._heap[0]
            if self._due.get(key) == (due, counter):
                return
            heapq.heappop(self._heap)

    def _compact(self) -> None:
        self._heap = [(due, counter, key) for key, (due, counter) in self._due.items()]
        heapq.heapify(self._heap)
