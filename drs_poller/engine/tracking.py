"""What the daemon knows about each execution it tracks, between polls.

The item cache is fed by discovery (whole items from the StatusIndex, or a GetItem
when a lean pass finds an item new or changed) and by the daemon's own writes (what
was read plus what was written). A poll decides from
the cache; when the cache is stale the conditional write fails and hands back the
current item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drs_poller.clients.dynamodb import REVISION
from drs_poller.core.completion import Outcome, server_outcome
from drs_poller.core.drs_events import item_routes
from drs_poller.core.evidence import JobLog, Signature, stalled_servers
from drs_poller.core.models import (
    Execution,
    LaunchActionsLookup,
    MalformedItemError,
    parse_execution,
)
from drs_poller.core.phases import Phase, parse_phase

if TYPE_CHECKING:
    from collections.abc import Mapping

    from drs_poller.core.places import Place


def queue_name(execution_id: str, plan_id: str) -> str:
    return f"{execution_id}\x1f{plan_id}"


def key_of(item: Mapping[str, Any]) -> tuple[str, str] | None:
    execution_id, plan_id = item.get("ExecutionId"), item.get("PlanId")
    if isinstance(execution_id, str) and isinstance(plan_id, str):
        return (execution_id, plan_id)
    return None


@dataclass(frozen=True, slots=True)
class LogRead:
    """The last read of a job's log (DescribeJobLogItems) for one execution: what the job
    looked like then (:attr:`LogWatch.signature`), when (monotonic), and whether the
    read failed. One for each job an execution tracks: kept small."""

    signature: Signature
    at: float
    failed: bool = False


class RouteIndex:
    """Source server and job ids -> the executions whose items name them: how a DRS event
    finds its executions without a scan (engine/hints.py). Kept by :meth:`Tracked.load`;
    the region is checked on the execution itself."""

    def __init__(self) -> None:
        # id -> the one execution naming it (nearly always), else a set of them: a set
        # per id was 25 MB at 100,000 servers (W10k-accounts); the name is one string
        # per execution, shared by all of its ids.
        self._names: dict[str, str | set[str]] = {}

    def add(self, name: str, routes: frozenset[tuple[str, str]]) -> None:
        names = self._names
        for _, found in routes:
            held = names.get(found)
            if held is None:
                names[found] = name
            elif isinstance(held, str):
                if held != name:
                    names[found] = {held, name}
            else:
                held.add(name)

    def remove(self, name: str, routes: frozenset[tuple[str, str]]) -> None:
        names = self._names
        for _, found in routes:
            held = names.get(found)
            if held is None:
                continue
            if isinstance(held, str):
                if held == name:
                    del names[found]
                continue
            held.discard(name)
            if len(held) == 1:
                names[found] = next(iter(held))
            elif not held:
                del names[found]

    def names(self, ids: tuple[str, ...]) -> set[str]:
        found: set[str] = set()
        for one in ids:
            held = self._names.get(one)
            if isinstance(held, str):
                found.add(held)
            elif held:
                found |= held
        return found

    def __len__(self) -> int:
        return len(self._names)


@dataclass(slots=True)
class Tracked:
    item_key: tuple[str, str]  # the table key: (ExecutionId, PlanId)
    item: dict[str, Any]
    execution: Execution | None = None
    problem: MalformedItemError | None = None
    reported_problem: str | None = None
    reported_evidence_error: str | None = None
    polls_since_write: int = 0
    in_flight: bool = False
    dropped: bool = False
    overdue_reported: bool = False
    newer_item: dict[str, Any] | None = None  # offered by discovery while a poll was in flight
    # Another writer must act before this execution can finish: a server not started yet
    # (a later wave's job ids come from the initiator), or an item we cannot parse.
    awaits_writer: bool = False
    # The phase this process schedules by: the last poll's decision. The item's `Phase`
    # can be older, because a change of phase alone is not written (contract §1).
    decided_phase: Phase | None = None
    # For the execution's life in this process (a restart reads them again): each
    # RECOVERY source server's launch actions, keyed (region, source server id); the
    # polls on which ListLaunchActions failed transiently; and what was already
    # reported once (out-of-model values as (field, value), unavailable reasons).
    launch_actions: dict[tuple[Place, str], LaunchActionsLookup] = field(default_factory=dict)
    launch_action_failures: dict[tuple[Place, str], int] = field(default_factory=dict)
    # Frozen, replaced when one is added: almost always empty, and an empty set is 216
    # bytes (4 MB at 10,000 executions); ``frozenset()`` is one shared object.
    reported_unknowns: frozenset[tuple[str, str]] = frozenset()
    reported_unavailable: frozenset[str] = frozenset()
    # The evidence (issue 13), in memory for the execution's life here (a restart reads
    # each job's log once more): the last log read of each job, and when it was read.
    job_logs: dict[str, JobLog] = field(default_factory=dict)
    job_log_reads: dict[str, LogRead] = field(default_factory=dict)
    stalled: tuple[str, ...] = ()  # the Phase of each server the item shows Stalled
    # DRS events in (docs/events.md): the index this execution's routes are kept in
    # while tracked, and the hash of those routes (:attr:`routes`), the time of the
    # earliest event not yet followed by a poll (wall clock), and a hint that came while
    # a poll was in flight (the next poll is then due at once).
    index: RouteIndex | None = None
    routes_hash: int = 0
    event_time: float | None = None
    rehint: bool = False

    def __post_init__(self) -> None:
        self.load(self.item)

    def schedule_phase(self) -> Phase | None:
        """The phase to schedule by: the last poll's decision, else the item's `Phase`."""
        if self.decided_phase is not None:
            return self.decided_phase
        return parse_phase(self.execution.phase) if self.execution else None

    @property
    def execution_id(self) -> str:
        return self.item_key[0]

    @property
    def name(self) -> str:
        return queue_name(*self.item_key)

    @property
    def routes(self) -> frozenset[tuple[str, str]]:
        """The (place, id) pairs a DRS event can name this execution by, as kept in the
        index (none while not in one). Derived from the item when asked, not held: at
        W10k they were 430,000 objects, about 39 MB; an event asks for a few."""
        return item_routes(self.item) if self.index is not None else frozenset()

    def load(self, item: dict[str, Any]) -> None:
        held = self.item
        self.item = item
        if self.index is not None:
            routes = item_routes(item)
            # The index holds the routes of the item held before: only a changed set
            # (a later wave's job ids) moves them. Equal hashes of two different sets
            # (one in 2**64) would leave an event unrouted: a hint missed, not a status.
            if hash(routes) != self.routes_hash:
                self.index.remove(self.name, item_routes(held))
                self.index.add(self.name, routes)
                self.routes_hash = hash(routes)
        self.stalled = tuple(stalled_servers(item))
        try:
            self.execution, self.problem = parse_execution(item), None
        except MalformedItemError as problem:
            self.execution, self.problem = None, problem
            self.awaits_writer = True
            return
        execution = self.execution
        self.awaits_writer = any(
            server_outcome(server, execution.mode_of(wave)) is Outcome.NOT_STARTED
            for wave in execution.waves
            for server in wave.servers
        )

    def join(self, index: RouteIndex) -> None:
        """Be found by DRS events: keep this execution's routes in ``index`` from now on
        (only while events come in: at 10,000 executions the index is about 8 MB)."""
        self.index = index
        routes = item_routes(self.item)
        self.routes_hash = hash(routes)
        index.add(self.name, routes)

    def offer(self, item: dict[str, Any]) -> bool:
        """Take a copy from discovery unless it is older than what we hold. The GSI is
        eventually consistent; the daemon's revision counter orders its own writes."""
        if self.in_flight:
            self.newer_item = item
            return False
        if int(item.get(REVISION) or 0) < int(self.item.get(REVISION) or 0) or item == self.item:
            return False
        self.load(item)
        return True
