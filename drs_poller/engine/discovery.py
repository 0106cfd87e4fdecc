"""The discoverer: finds POLLING executions through the StatusIndex, adds new ones to
the schedule, refreshes cached items, and forgets those that left POLLING."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

import structlog

from drs_poller.clients.calling import AwsCallError
from drs_poller.core.ownership import home_region, job_count, shard_counts
from drs_poller.engine.tracking import key_of, queue_key

if TYPE_CHECKING:
    from drs_poller.clients.dynamodb import ExecutionStore
    from drs_poller.clock import Clock
    from drs_poller.engine.state import EngineState
    from drs_poller.observability.health import Health
    from drs_poller.observability.metrics import Metrics

log = structlog.get_logger("drs_poller.discovery")


class Discoverer:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        state: EngineState,
        metrics: Metrics,
        health: Health,
        clock: Clock,
        interval: float,
        jobs_per_shard: int = 1000,
    ) -> None:
        self.store = store
        self.state = state
        self.metrics = metrics
        self.health = health
        self.clock = clock
        self.interval = interval
        self.jobs_per_shard = jobs_per_shard

    async def discover_once(self) -> int:
        """One full, paged StatusIndex query. Returns how many POLLING items it saw."""
        state, now = self.state, self.clock.monotonic()
        seen: set[str] = set()
        others: dict[str, dict[str, Any]] = {}
        jobs: Counter[str] = Counter()
        added = 0
        async for page in self.store.query_polling():
            for item in page:
                key = key_of(item)
                if key is None:
                    self.metrics.malformed_items.inc()
                    log.error(
                        "item without ExecutionId/PlanId in StatusIndex", item_keys=sorted(item)
                    )
                    continue
                name = queue_key(*key)
                seen.add(name)
                jobs[home_region(item)] += job_count(item)
                added += self._take(key, item, others=others, now=now)
        state.others = others
        if state.members is not None:
            # The shards follow the jobs: re-route everything if a region's count changed.
            shards = shard_counts(jobs, jobs_per_shard=self.jobs_per_shard)
            taken, handed = state.rebalance(state.members, shards=shards, now=now)
            if taken or handed:
                log.info("shards changed", shards=shards, taken_over=taken, handed_over=handed)
        for name in [name for name in state.tracked if name not in seen]:
            tracked = state.tracked[name]
            if tracked.in_flight:
                continue  # the poll in flight will find out from its conditional write
            state.forget(name)
            log.info("execution left POLLING", execution_id=tracked.execution_id)
        state.expire_finished(now=now)
        self.metrics.discoveries.labels("success").inc()
        self.metrics.last_discovery.set(self.clock.time())
        self.health.mark_ready()
        state.refresh_gauges(wall=self.clock.time())
        if added:
            state.wakeup.set()
            log.info(
                "discovered executions",
                added=added,
                tracked=len(state.tracked),
                owned_by_peers=len(state.others),
            )
        return len(seen)

    def _take(
        self,
        key: tuple[str, str],
        item: dict[str, Any],
        *,
        others: dict[str, dict[str, Any]],
        now: float,
    ) -> bool:
        """Track, refresh, or set aside for its owner one POLLING item; True if new."""
        state, name = self.state, queue_key(*key)
        if state.recently_finished(name, now=now):
            return False
        tracked = state.tracked.get(name)
        if not state.owns(name, item):
            others[name] = item
            if tracked is not None and not tracked.in_flight:
                state.hand_over(tracked)
            return False
        if tracked is None:
            state.track(key, item, now=now)
            return True
        if tracked.offer(item) and name not in state.queue and not tracked.in_flight:
            state.queue.schedule(name, now)
        return False

    async def tick(self) -> None:
        """One discovery; a failure is counted and logged, and the next tick tries again."""
        try:
            await self.discover_once()
        except AwsCallError as error:
            self.metrics.discoveries.labels("error").inc()
            log.error("discovery failed", error=str(error))  # noqa: TRY400 - message is complete
        except Exception:
            self.metrics.discoveries.labels("error").inc()
            log.exception("discovery failed unexpectedly")

    async def run(self) -> None:
        """Discover every ``interval`` seconds, drift-corrected, until cancelled."""
        start = self.clock.monotonic()
        tick = 0
        while True:
            await self.tick()
            tick += 1
            next_tick = start + tick * self.interval
            now = self.clock.monotonic()
            if next_tick < now:  # fell behind (a slow query): skip ticks rather than burst
                tick = int((now - start) // self.interval) + 1
                next_tick = start + tick * self.interval
            await asyncio.sleep(next_tick - now)
