"""The discoverer: finds POLLING executions through the StatusIndex, adds new ones to
the schedule, refreshes cached items, and forgets those that left POLLING."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import structlog

from drs_poller.clients.calling import AwsCallError
from drs_poller.clients.dynamodb import BATCH_GET_LIMIT, REVISION
from drs_poller.clock import ticks
from drs_poller.core.models import ExecutionStatus
from drs_poller.core.ownership import home_place, job_count, shard_counts
from drs_poller.engine.tracking import key_of, queue_name

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from drs_poller.clients.dynamodb import ExecutionStore
    from drs_poller.clock import Clock
    from drs_poller.engine.state import EngineState
    from drs_poller.observability.health import Health
    from drs_poller.observability.metrics import Metrics

log = structlog.get_logger("drs_poller.discovery")

Item = dict[str, Any]
# What discovery has for a POLLING item: its key, an item, and whether that item was
# read whole in this pass (else it is the copy held, or, for an execution that just
# finished, the lean item).
_Seen = tuple[tuple[str, str], dict[str, Any], bool]
# On an index projected ALL, a lean pass reads whole by key at most ``lean_fetch_floor``
# items, or one in this many of those it saw if that is more; beyond that it turns into
# a full pass (which reads them from the Query).
_LEAN_FETCH_SHARE = 8
LEAN_FETCH_FLOOR = 100
# BatchGetItem requests a pass has in flight at most. They share the AWS call gate
# (MAX_CONCURRENT_CALLS) with the polls' DRS calls and the writes: a full pass at W10k
# (100 requests of 100 items) could hold 16 slots of 32 beside 16 writes, and 1,728
# polls in the 10 seconds after it were late by up to 5 s (844 in one run with 4).
FETCH_CONCURRENCY = 4
# A full pass while executions are being polled reads one request at a time: it is
# background work (its reads catch other writers' changes within a full interval), and
# each answer of 100 items is decoded and compared on the event loop the polls share.
# With 4 in flight at W10k, the pass took the CPU for a few seconds every 300 s, and
# every poll later than 1 s in a run fell in the 20 s after it.
BACKGROUND_FETCH_CONCURRENCY = 1


def _revision(item: dict[str, Any]) -> int:
    return int(item.get(REVISION) or 0)


class Discoverer:
    """Discovery passes come in two kinds.

    A *full* pass reads every POLLING item whole. It runs first, then every
    ``full_interval`` seconds. On an index projected ALL it reads them from the
    StatusIndex Query itself; on a KEYS_ONLY or INCLUDE index it reads the keys from
    the index and the items with BatchGetItem (eventually consistent, as the index).

    The passes between are *lean*: the index is read for each item's key (and its
    ``PollerRevision`` and first wave's ``Region`` where the index projects them), and
    only the items that need it are read whole, with a consistent BatchGetItem:

    - an execution this replica has not seen yet;
    - a tracked one whose ``PollerRevision`` went past ours (a peer wrote it; noticed
      only where the index projects ``PollerRevision``);
    - a tracked one that waits for another writer (a server not started yet, whose job
      ids the initiator writes later; an item we could not parse).

    Any other change by another writer reaches the cache at the next full pass, or
    sooner through the conditional write, which fails on any change and hands back
    the current item. An execution that left POLLING is missed by a lean pass as by a
    full one. A lean pass decodes a few dozen bytes per item instead of the whole
    item: at 10,000 executions, most of the daemon's CPU. On an index projected ALL,
    DynamoDB charges the same read units for both (it prices the index entry, which is
    the whole item); on a lean index, a few bytes an item.
    """

    def __init__(
        self,
        *,
        store: ExecutionStore,
        state: EngineState,
        metrics: Metrics,
        health: Health,
        clock: Clock,
        interval: float,
        full_interval: float,
        jobs_per_shard: int,
        fetch_concurrency: int,
        lean_fetch_floor: int = LEAN_FETCH_FLOOR,
    ) -> None:
        self.store = store
        self.state = state
        self.metrics = metrics
        self.health = health
        self.clock = clock
        self.interval = interval
        self.full_interval = full_interval
        self.jobs_per_shard = jobs_per_shard
        self.fetch_concurrency = fetch_concurrency
        self.lean_fetch_floor = lean_fetch_floor
        self._next_full = -math.inf
        # name -> (home region, distinct jobs) of every POLLING item, from its last whole
        # read: a lean pass sums the jobs per region for the shards from it.
        self._jobs: dict[str, tuple[str, int]] = {}

    async def discover_once(self, *, full: bool | None = None) -> int:
        """One paged StatusIndex query, full or lean (by default, as the schedule says).
        Returns how many POLLING items it saw."""
        now = self.clock.monotonic()
        if full is None:
            full = now >= self._next_full
        whole_index = self.store.projection.whole
        if full and whole_index:
            seen, wanted = await self._read_whole()
        elif full:
            # The index has keys only: every POLLING item is read whole by key. A
            # failure fails the pass, as a failed Query page does.
            keys = [key async for key, _, _ in self._polling(lean=False)]
            # At start-up nothing is polled yet: the pass reads at full speed.
            concurrency = BACKGROUND_FETCH_CONCURRENCY if self.state.tracked else None
            seen = await self._fetch(keys, consistent=False, strict=True, concurrency=concurrency)
        else:
            seen, wanted = await self._read_lean(now=now)
            if whole_index and len(wanted) > max(
                self.lean_fetch_floor, len(seen) // _LEAN_FETCH_SHARE
            ):
                # Many new or changed items (a start-up, a big take-over): one full
                # pass reads them from the index for less than a read by key each.
                return await self.discover_once(full=True)
            if wanted:
                seen.update(await self._fetch(wanted))
        self._apply(seen, now=now)
        if full:
            self._next_full = now + self.full_interval
        self.metrics.discoveries.labels("success").inc()
        self.metrics.last_discovery.set(self.clock.time())
        self.health.mark_ready()
        return len(seen)

    async def _polling(self, *, lean: bool) -> AsyncIterator[tuple[tuple[str, str], str, Item]]:
        """Every POLLING item of the StatusIndex with its key and queue name, page by page
        (a page is freed once its items are taken)."""
        async for page in self.store.query_polling(lean=lean):
            for item in page:
                key = self._key(item)
                if key is not None:
                    yield key, queue_name(*key), item

    async def _read_whole(self) -> tuple[dict[str, _Seen], list[tuple[str, str]]]:
        seen: dict[str, _Seen] = {}
        async for key, name, item in self._polling(lean=False):
            held = self._held(name)
            # Keep one copy of an unchanged item: the page's copy is freed with the
            # page, so a full pass does not hold every item twice at its peak.
            seen[name] = (key, held if held == item else item, True)
        return seen, []

    async def _read_lean(self, *, now: float) -> tuple[dict[str, _Seen], list[tuple[str, str]]]:
        """The lean items; the whole item, where this replica holds it and it is current;
        and the keys of the items to read whole."""
        state = self.state
        seen: dict[str, _Seen] = {}
        wanted: list[tuple[str, str]] = []
        async for key, name, lean in self._polling(lean=True):
            tracked = state.tracked.get(name)
            known: dict[str, Any] | None
            if tracked is not None:
                known = tracked.item
                if not tracked.in_flight and (
                    tracked.awaits_writer or _revision(lean) > _revision(known)
                ):
                    wanted.append(key)
                    continue
            else:
                # A peer's execution is not re-read when the peer writes it: a
                # take-over starts from the copy held, and its first write corrects it.
                known = state.others.get(name)
                if known is None and not state.recently_finished(name, now=now):
                    wanted.append(key)
                    continue
            seen[name] = (key, lean if known is None else known, False)
        return seen, wanted

    async def _fetch(
        self,
        keys: list[tuple[str, str]],
        *,
        consistent: bool = True,
        strict: bool = False,
        concurrency: int | None = None,
    ) -> dict[str, _Seen]:
        """Read items whole, with BatchGetItem (a few requests at a time). An item that
        fails to read is left for the next pass (it counts as seen, so nothing is
        forgotten for it), unless ``strict``: then the failure is raised. One that left
        POLLING since the index showed it is not seen.

        Each answer is taken as it arrives, and an item equal to the copy held keeps
        that copy: the copy read is freed with its answer, so a full pass on a lean
        index holds each unchanged item once, not twice, at its peak."""
        limit = asyncio.Semaphore(
            min(concurrency or self.fetch_concurrency, self.fetch_concurrency)
        )
        chunks = [keys[at : at + BATCH_GET_LIMIT] for at in range(0, len(keys), BATCH_GET_LIMIT)]
        seen: dict[str, _Seen] = {}
        failed = 0

        async def fetch(chunk: list[tuple[str, str]]) -> None:
            nonlocal failed
            try:
                async with limit:
                    result = await self.store.get_many(chunk, consistent=consistent)
            except AwsCallError:
                if strict:
                    raise
                failed += len(chunk)
                for key in chunk:
                    tracked = self.state.tracked.get(queue_name(*key))
                    if tracked is not None:
                        seen[tracked.name] = (key, tracked.item, False)
                return
            self._take_answer(chunk, result, seen)

        results = await asyncio.gather(*(fetch(chunk) for chunk in chunks), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if failed:
            log.warning("discovery could not read some items; the next pass retries", failed=failed)
        # In the order of ``keys``, as the index listed them.
        return {name: seen[name] for key in keys if (name := queue_name(*key)) in seen}

    def _take_answer(
        self,
        chunk: list[tuple[str, str]],
        answer: dict[tuple[str, str], Item],
        seen: dict[str, _Seen],
    ) -> None:
        for key in chunk:
            item = answer.get(key)
            if item is not None and item.get("Status") == ExecutionStatus.POLLING.value:
                name = queue_name(*key)
                held = self._held(name)
                seen[name] = (key, held if held == item else item, True)

    def _held(self, name: str) -> dict[str, Any] | None:
        """The copy of an item this replica holds: tracked, or kept for its owner."""
        tracked = self.state.tracked.get(name)
        return tracked.item if tracked is not None else self.state.others.get(name)

    def _key(self, item: dict[str, Any]) -> tuple[str, str] | None:
        key = key_of(item)
        if key is None:
            self.metrics.malformed_items.inc()
            log.error("item without ExecutionId/PlanId in StatusIndex", item_keys=sorted(item))
        return key

    def _apply(self, seen: dict[str, _Seen], *, now: float) -> None:
        """Track, refresh or set aside what was seen; re-shard; forget what left POLLING."""
        state = self.state
        others: dict[str, dict[str, Any]] = {}
        jobs: Counter[str] = Counter()
        added = 0
        for name, (key, item, fresh) in seen.items():
            if fresh:
                self._jobs[name] = (home_place(item), job_count(item))
            region, count = self._jobs.get(name) or (home_place(item), 0)
            jobs[region] += count
            added += self._take(key, item, fresh=fresh, others=others, now=now)
        state.others = others
        for name in [name for name in self._jobs if name not in seen]:
            del self._jobs[name]
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
        if added:
            state.wakeup.set()
            log.info(
                "discovered executions",
                added=added,
                tracked=len(state.tracked),
                owned_by_peers=len(state.others),
            )

    def _take(
        self,
        key: tuple[str, str],
        item: dict[str, Any],
        *,
        fresh: bool = True,
        others: dict[str, dict[str, Any]],
        now: float,
    ) -> bool:
        """Track, refresh, or set aside for its owner one POLLING item; True if new.
        An item not read in this pass (``fresh`` false) is the copy already held."""
        state, name = self.state, queue_name(*key)
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
        if fresh and tracked.offer(item) and name not in state.queue and not tracked.in_flight:
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
        async for _ in ticks(self.clock, self.interval):
            await self.tick()
