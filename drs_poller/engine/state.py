"""The engine's shared state: tracked executions, their schedule, and gauges over them."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drs_poller.core.deciding import Policy, is_overdue
from drs_poller.core.drs_events import concerns, event_routes, item_routes
from drs_poller.core.ownership import home_place, owner_of, work_shard
from drs_poller.core.scheduling import PollQueue
from drs_poller.engine.tracking import RouteIndex, Tracked, key_of

if TYPE_CHECKING:
    from typing import Any

    from drs_poller.core.drs_events import DrsEvent
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
    # Replicas sharing the work (None: no lease table, this replica owns everything),
    # the shards per region (regions not listed have one), and the POLLING items
    # discovery saw that belong to another replica, kept so that a take-over starts
    # at once instead of at the next discovery.
    me: str = ""
    members: tuple[str, ...] | None = None
    shards: dict[str, int] = field(default_factory=dict)
    others: dict[str, dict[str, Any]] = field(default_factory=dict)
    # DRS events in: the tracked executions by source server and job id, and the same
    # for ``others`` (built when an event first needs it after discovery replaced them).
    # Kept only when events come in (``route_events``).
    route_events: bool = True
    routes: RouteIndex = field(default_factory=RouteIndex)
    _others_routes: tuple[int, RouteIndex, dict[str, frozenset[tuple[str, str]]]] | None = None

    def owns(self, name: str, item: dict[str, Any]) -> bool:
        if self.members is None:
            return True
        shard = work_shard(name, home_place(item), self.shards)
        return owner_of(shard, self.members) == self.me

    def track(self, key: tuple[str, str], item: dict[str, Any], *, now: float) -> None:
        tracked = Tracked(item_key=key, item=item)
        old = self.tracked.get(tracked.name)
        if old is not None:
            self.routes.remove(old.name, old.routes)
            old.index = None
        self.tracked[tracked.name] = tracked
        if self.route_events:
            tracked.join(self.routes)
        self.others.pop(tracked.name, None)
        self.queue.schedule(tracked.name, now)

    def hand_over(self, tracked: Tracked) -> None:
        """Stop polling an execution another replica owns now; keep its item for later."""
        self.forget(tracked.name)
        self.others[tracked.name] = tracked.newer_item or tracked.item

    def rebalance(
        self,
        members: tuple[str, ...] | None,
        *,
        now: float,
        shards: dict[str, int] | None = None,
    ) -> tuple[int, int]:
        """Apply new members (and shard counts): returns (taken over, handed over)."""
        shards = self.shards if shards is None else shards
        if members == self.members and shards == self.shards:
            return (0, 0)
        self.members, self.shards = members, shards
        handed = 0
        for tracked in list(self.tracked.values()):
            if not tracked.in_flight and not self.owns(tracked.name, tracked.item):
                self.hand_over(tracked)
                handed += 1
        taken = 0
        for name, item in list(self.others.items()):
            key = key_of(item)
            if (
                key is not None
                and self.owns(name, item)
                and not self.recently_finished(name, now=now)
            ):
                self.track(key, item, now=now)
                taken += 1
        if taken:
            self.wakeup.set()
        return (taken, handed)

    # --- DRS events in (engine/hints.py) ---------------------------------------------

    def concerned(
        self, event: DrsEvent, *, own_account: str | None = None
    ) -> tuple[list[str], list[str]]:
        """The executions ``event`` concerns: (tracked here, owned by another replica).
        ``own_account``: the daemon's own account, when known (its waves have no
        AccountId); an event of another account concerns that account's waves only."""
        ids = event_routes(event)
        ours = [
            name
            for name in sorted(self.routes.names(ids))
            if (tracked := self.tracked.get(name)) is not None
            and concerns(event, tracked.routes, own_account=own_account)
        ]
        if not self.others:
            return ours, []
        index, routes = self._index_others()
        theirs = [
            name
            for name in sorted(index.names(ids))
            if name in self.others
            and name not in self.tracked
            and concerns(event, routes[name], own_account=own_account)
        ]
        return ours, theirs

    def _index_others(self) -> tuple[RouteIndex, dict[str, frozenset[tuple[str, str]]]]:
        cached = self._others_routes
        if cached is not None and cached[0] == id(self.others):
            return cached[1], cached[2]
        index = RouteIndex()
        routes: dict[str, frozenset[tuple[str, str]]] = {}
        for name, item in self.others.items():
            routes[name] = item_routes(item)
            index.add(name, routes[name])
        self._others_routes = (id(self.others), index, routes)
        return index, routes

    def hint(self, name: str, *, now: float, event_time: float | None = None) -> bool:
        """Pull a tracked execution's next poll forward to ``now`` (never later than it
        already is); while a poll of it is in flight, the next one is due as soon as that
        poll ends. Returns whether anything moved. ``event_time`` (wall clock) is the
        event's, for the lag the poll observes."""
        tracked = self.tracked.get(name)
        if tracked is None or tracked.dropped:
            return False
        if event_time is not None and (
            tracked.event_time is None or event_time < tracked.event_time
        ):
            tracked.event_time = event_time
        if tracked.in_flight:
            moved = not tracked.rehint
            tracked.rehint = True
            return moved
        due = self.queue.due_at(name)
        if due is not None and due <= now:
            return False
        self.queue.schedule(name, now)
        self.wakeup.set()
        return True

    def forget(self, name: str) -> None:
        tracked = self.tracked.pop(name, None)
        if tracked is not None:
            tracked.dropped = True
            self.routes.remove(name, tracked.routes)
            tracked.index = None
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
        stalled: Counter[str] = Counter()
        overdue = 0
        oldest_start: float | None = None
        for tracked in self.tracked.values():
            execution = tracked.execution
            stalled.update(tracked.stalled)
            if execution is None:
                counts[("UNKNOWN", "MALFORMED")] += 1
                continue
            phase = tracked.schedule_phase()
            counts[(execution.execution_type.value, phase.value if phase else "PENDING")] += 1
            overdue += is_overdue(execution, now=wall, policy=self.policy)
            if oldest_start is None or execution.start_time < oldest_start:
                oldest_start = execution.start_time
        self.metrics.set_active(counts)
        self.metrics.set_stalled(stalled)
        self.metrics.overdue.set(overdue)
        self.metrics.oldest_age.set(0.0 if oldest_start is None else max(0.0, wall - oldest_start))
