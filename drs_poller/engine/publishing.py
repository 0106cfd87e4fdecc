"""Finalization events out: PutEvents when a wave or an execution reached its final
status, after the write that made it final has landed (docs/events.md).

The poller hands the publisher every item it has just written or read (``submit``:
synchronous, never blocks), as it does the answerer; the publisher queues an event for
each final status the item holds whose event is neither recorded on the item
(``EventsPublished``) nor sent by this process already. So an event is only ever built
from what the table holds, after the write that made the status final has landed. One
sender takes up to 10 queued events into one PutEvents call. The entries EventBridge
rejects one by one (``FailedEntryCount``) are sent again with the daemon's backoff, up
to ``DRS_POLLER_MAX_ATTEMPTS`` attempts; what is still rejected is counted
(``drs_poller_events_published_total{outcome="failed"}``) and logged, and stays
unrecorded, so the next poll of the execution, or the sweep, sends it again. What does
not fit the bounded queue is counted as ``dropped`` and found again the same way.

At least once, across replicas and restarts (the answerer's pattern): every accepted
event is recorded on its item (``ADD EventsPublished``), and the recovery sweep finds
finished executions whose execution event is not recorded (a crash, or a failover,
between the final write and PutEvents) and queues what they are due. A second copy is
harmless: it carries the same ``IdempotencyKey``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog

from drs_poller.clients.calling import AwsCallError
from drs_poller.core.backoff import ErrorKind, classify
from drs_poller.core.events_out import (
    PUBLISHED,
    SOURCE,
    Finished,
    ReportLocation,
    detail_json,
    detail_of,
    end_time,
    events_due,
)
from drs_poller.core.models import FINAL_STATUSES
from drs_poller.engine.tracking import key_of

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from drs_poller.clients.calling import Caller
    from drs_poller.clients.dynamodb import ExecutionStore
    from drs_poller.clients.events import EntryResult, EventRecords, EventsAdapter
    from drs_poller.clock import Clock
    from drs_poller.observability.metrics import Metrics

log = structlog.get_logger("drs_poller.publishing")

QUEUE_SIZE: Final = 1000
BATCH: Final = 10  # PutEvents' limit
REMEMBERED: Final = 10_000  # events sent lately, not queued again before the item shows them
# The sweep reads executions that ended within SWEEP_LOOKBACK (so started within the
# maximum execution age before that): turning events on does not announce every
# execution of the past days, and each sweep reads a bounded window.
SWEEP_LOOKBACK: Final = 6 * 3600.0
SWEEP_INTERVAL: Final = 300.0


@dataclass(frozen=True, slots=True)
class _Event:
    key: tuple[str, str]
    finished: Finished
    entry: dict[str, Any]

    @property
    def kind(self) -> str:
        return "execution" if self.finished.wave is None else "wave"


class EventPublisher:
    def __init__(
        self,
        *,
        events: EventsAdapter,
        records: EventRecords,
        store: ExecutionStore,
        caller: Caller,
        metrics: Metrics,
        clock: Clock,
        bus: str,
        report: ReportLocation | None,
        max_execution_age: float,
        may_sweep: Callable[[tuple[str, str], Mapping[str, Any]], bool] = lambda _k, _i: True,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.events = events
        self.records = records
        self.store = store
        self.caller = caller
        self.metrics = metrics
        self.clock = clock
        self.bus = bus
        self.report = report
        self.max_execution_age = max_execution_age
        self.may_sweep = may_sweep
        self.queue: asyncio.Queue[_Event] = asyncio.Queue(queue_size)
        self._queued: set[str] = set()  # idempotency keys queued or being sent
        self._done: OrderedDict[str, None] = OrderedDict()  # accepted lately

    # --- intake (synchronous: called from the poll) --------------------------------

    def submit(self, item: Mapping[str, Any]) -> int:
        """Queue the events ``item`` (what the table holds) is due; returns how many."""
        due = events_due(item)
        if not due:
            return 0
        key = key_of(item)
        if key is None:
            return 0
        queued = 0
        for finished in due:
            idem = finished.key
            if idem in self._queued or idem in self._done:
                continue
            event = self._event(key, item, finished)
            if event is None:
                continue
            try:
                self.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.metrics.events_published.labels(event.kind, "dropped").inc()
                log.warning(
                    "finalization event not queued: the queue is full (sent again at the"
                    " next poll of the execution, or by the sweep)",
                    execution_id=finished.execution_id,
                    scope=finished.scope,
                    status=finished.status,
                )
                continue
            self._queued.add(idem)
            queued += 1
        return queued

    def _event(
        self, key: tuple[str, str], item: Mapping[str, Any], finished: Finished
    ) -> _Event | None:
        try:
            detail = detail_json(detail_of(item, finished, report=self.report))
        except Exception:
            kind = "execution" if finished.wave is None else "wave"
            self.metrics.events_published.labels(kind, "failed").inc()
            log.exception(
                "finalization event could not be built; not sent",
                execution_id=finished.execution_id,
                scope=finished.scope,
            )
            return None
        entry = {
            "Source": SOURCE,
            "DetailType": finished.detail_type,
            "Detail": detail,
            "EventBusName": self.bus,
        }
        return _Event(key=key, finished=finished, entry=entry)

    # --- the sender ---------------------------------------------------------------

    async def run(self) -> None:
        """The sender, until cancelled: up to 10 queued events a PutEvents call."""
        while True:
            await self._send([await self.queue.get()])

    async def drain(self) -> None:
        """Send everything queued, in this task (tests; the demo)."""
        while not self.queue.empty():
            await self._send([])

    async def _send(self, batch: list[_Event]) -> None:
        """Fill ``batch`` from the queue up to BATCH entries, and publish it."""
        while len(batch) < BATCH and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        try:
            await self.publish(batch)
        finally:
            for _ in batch:
                self.queue.task_done()

    async def publish(self, batch: list[_Event]) -> None:
        """Put ``batch``; retry the entries EventBridge rejects; record what it accepted.
        Never raises (but when cancelled)."""
        accepted: list[_Event] = []
        try:
            await self._put(batch, accepted)
        except Exception:
            log.exception("finalization events failed unexpectedly")
        finally:
            for event in batch:
                self._queued.discard(event.finished.key)
        if accepted:
            await self._record(accepted)

    async def _put(self, batch: list[_Event], accepted: list[_Event]) -> None:
        pending = batch
        policy = self.caller.policy
        attempt = 0
        while pending:
            attempt += 1
            try:
                results = await self.events.put_events([event.entry for event in pending])
            except AwsCallError as error:
                for event in pending:
                    self._failed(event, code=error.code, message=str(error), attempts=attempt)
                return
            rejected: list[tuple[_Event, EntryResult]] = []
            for event, result in zip(pending, results, strict=True):
                if result.event_id is not None:
                    accepted.append(event)
                    self._remember(event.finished.key)
                    self.metrics.events_published.labels(event.kind, "sent").inc()
                    log.info(
                        "finalization event sent",
                        execution_id=event.finished.execution_id,
                        scope=event.finished.scope,
                        status=event.finished.status,
                        event_id=result.event_id,
                    )
                else:
                    rejected.append((event, result))
            retry = []
            for event, result in rejected:
                code = result.error_code or "Unknown"
                kind = classify(code, None)
                if kind is ErrorKind.PERMANENT or not policy.should_retry(kind, attempt=attempt):
                    self._failed(
                        event, code=code, message=result.error_message or "", attempts=attempt
                    )
                else:
                    self.metrics.events_published.labels(event.kind, "retried").inc()
                    retry.append(event)
            if retry:
                log.warning(
                    "EventBridge rejected finalization events; sending them again",
                    entries=len(retry),
                    codes=sorted({r.error_code or "Unknown" for _, r in rejected}),
                    attempt=attempt,
                )
                await self.caller.sleep(policy.delay(attempt, rng=self.caller.rng))
            pending = retry

    def _failed(self, event: _Event, *, code: str, message: str, attempts: int) -> None:
        self.metrics.events_published.labels(event.kind, "failed").inc()
        log.error(
            "finalization event not sent; sent again at the execution's next poll or by the sweep",
            execution_id=event.finished.execution_id,
            scope=event.finished.scope,
            status=event.finished.status,
            code=code,
            error=message,
            attempts=attempts,
        )

    async def _record(self, accepted: list[_Event]) -> None:
        tags: dict[tuple[str, str], list[str]] = defaultdict(list)
        for event in accepted:
            tags[event.key].append(event.finished.tag)
        for key, of_item in tags.items():
            try:
                await self.records.record(key=key, tags=of_item)
            except AwsCallError as error:
                # Sent, not recorded: the sweep (or a restart) may send it again, with
                # the same IdempotencyKey.
                log.warning(
                    "finalization event sent but not recorded",
                    execution_id=key[0],
                    tags=of_item,
                    error=str(error),
                )

    def _sent_lately(self, key: tuple[str, str], *, status: str) -> bool:
        return Finished(key[0], key[1], status).key in self._done

    def _remember(self, idem: str) -> None:
        self._done[idem] = None
        while len(self._done) > REMEMBERED:
            self._done.popitem(last=False)

    # --- the recovery sweep ---------------------------------------------------------

    async def sweep_once(self) -> int:
        """Find finished executions (ended within SWEEP_LOOKBACK) whose execution event is
        not recorded; queue what they are due. Returns how many events were queued."""
        now = self.clock.time()
        since = now - self.max_execution_age - SWEEP_LOOKBACK
        projection = self.store.projection
        on_index = projection.whole or PUBLISHED in projection.attributes
        keys = []
        for status in sorted(FINAL_STATUSES):
            found = self.records.unpublished(status=status, since=since, filter_on_index=on_index)
            # Not those whose execution event this process sent lately: nothing to read.
            keys.extend(
                [key async for key in found if not self._sent_lately(key, status=str(status))]
            )
        items = await self.store.get_many(keys) if keys else {}
        queued = 0
        for key, item in items.items():
            ended = end_time(item)
            if item.get("Status") not in FINAL_STATUSES or (
                ended is not None and ended < now - SWEEP_LOOKBACK
            ):
                continue
            if self.may_sweep(key, item):
                queued += self.submit(item)
        if queued:
            log.info("sweep found unsent finalization events", queued=queued)
        return queued

    async def sweep_forever(self, interval: float = SWEEP_INTERVAL) -> None:
        """Sweep at start-up, then every ``interval`` seconds."""
        while True:
            try:
                await self.sweep_once()
            except AwsCallError as error:
                log.error("finalization event sweep failed", error=str(error))  # noqa: TRY400
            except Exception:
                log.exception("finalization event sweep failed unexpectedly")
            await asyncio.sleep(interval)

    async def close(self, *, grace: float) -> None:
        """Give what is queued ``grace`` seconds; the rest is sent after a restart (the
        sweep) or by a peer."""
        if self.queue.empty() or grace <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), timeout=grace)
