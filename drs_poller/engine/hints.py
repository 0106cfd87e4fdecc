"""DRS events in: the listener of ``DRS_POLLER_EVENTS_QUEUE_URL`` (docs/events.md).

An EventBridge rule on source ``aws.drs`` puts each DRS event in an SQS queue. The
listener long-polls it and takes each event as a *hint*: the tracked executions the
event concerns (by source server, by job id, in the event's place: its account and
region, issue 15) are pulled forward in the poll queue, due half ``COALESCE_WINDOW`` after
the event arrives; the dispatcher then polls them as usual, coalesced, so a burst of
events costs one DescribeJobs per place. An event
of member account B (forwarded to the hub's bus) pulls only waves whose AccountId is B;
the daemon's own account's events pull the waves without one. Polling stays
the source of truth: an event lost, late or duplicated changes only when a poll happens.

What happens to each message:

* handled (it pulled polls forward, or its executions were due anyway): deleted;
* not a DRS event, or one that concerns no execution: deleted, counted by reason;
* it concerns executions another replica owns: made visible again at once
  (ChangeMessageVisibility 0) so that replica can receive it, until it has been received
  ``release_bound`` times; then deleted and counted (``owned_elsewhere``);
* the listener crashes on it: not deleted; it comes back after the queue's visibility
  timeout and, after the redrive policy's ``maxReceiveCount``, goes to the DLQ.

The queue gone or access denied: counted, logged once, retried with backoff (capped at
:data:`MAX_RETRY_DELAY`); polling carries on, and /healthz does not depend on the queue.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Final

import structlog

from drs_poller.clients.calling import AwsCallError
from drs_poller.core.backoff import ErrorKind
from drs_poller.core.drs_events import DrsEvent, Rejected, parse_event

if TYPE_CHECKING:
    from drs_poller.clients.sqs import Message, SqsAdapter
    from drs_poller.clock import Clock
    from drs_poller.engine.state import EngineState
    from drs_poller.observability.metrics import Metrics

log = structlog.get_logger("drs_poller.events")

WAIT_SECONDS: Final = 20  # ReceiveMessage's longest long poll
MAX_MESSAGES: Final = 10
RELEASE_BOUND: Final = 5  # receives of another replica's event before it is deleted
FIRST_RETRY_DELAY: Final = 1.0
MAX_RETRY_DELAY: Final = 180.0
UNRECOGNISED: Final = "unrecognised"  # events_received_total's detail_type for non-events

_QUEUE_MISSING: Final = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)
_ACCESS_DENIED: Final = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "KMS.AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)


def error_reason(error: AwsCallError) -> str:
    """The ``reason`` label of a failed queue call."""
    if error.code in _QUEUE_MISSING:
        return "queue_missing"
    if error.code in _ACCESS_DENIED:
        return "access_denied"
    if error.kind is ErrorKind.THROTTLED:
        return "throttled"
    if error.kind is ErrorKind.TRANSIENT:
        return "transient"
    return "other"


class EventListener:
    def __init__(
        self,
        *,
        sqs: SqsAdapter,
        state: EngineState,
        metrics: Metrics,
        clock: Clock,
        account: str | None,
        queue: str,
        wait_seconds: int = WAIT_SECONDS,
        release_bound: int = RELEASE_BOUND,
        hint_delay: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.sqs = sqs
        self.state = state
        self.metrics = metrics
        self.clock = clock
        # The daemon's own account (the queue's): its events concern the waves without
        # an AccountId; None: not known, so events of any account may concern them.
        self.account = account
        self.wait_seconds = wait_seconds
        self.release_bound = release_bound
        # An event pulls its executions forward to this long after it arrives (half the
        # coalesce window), not to the moment it arrives: the events of a burst are then
        # polled in one batch, one DescribeJobs per place, as the coalesce window intends.
        # At W10k with events delivered on time, a poll at each arrival made DescribeJobs
        # 4,230 calls in five minutes; half a window later, 970.
        self.hint_delay = hint_delay
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.reachable = metrics.events_queue_reachable.labels(queue)
        self.failures = 0  # consecutive failed turns
        self.last: DrsEvent | None = None  # the last DRS event received (the demo shows it)
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        """Long-poll until stopped or cancelled; never raises for the queue's sake."""
        while not self._stopping:
            try:
                ok = await self.turn()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug in handling: the message comes back after its visibility timeout
                # (and ends in the DLQ); the listener goes on.
                log.exception("events listener turn failed unexpectedly")
                ok = False
            if not ok and not self._stopping:
                await self.clock.sleep(self.retry_delay())

    def retry_delay(self) -> float:
        """Half fixed, half jittered, doubling per failed turn up to MAX_RETRY_DELAY."""
        ceiling = min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * 2 ** max(0, self.failures - 1))
        return float(ceiling / 2 + self.rng.uniform(0.0, ceiling / 2))

    async def turn(self) -> bool:
        """One ReceiveMessage and its messages handled. False if the queue failed."""
        try:
            messages = await self.sqs.receive(wait_seconds=self.wait_seconds)
        except AwsCallError as error:
            self._failed(error, operation="ReceiveMessage")
            return False
        self._reached()
        if not messages:
            return True
        delete: list[Message] = []
        release: list[Message] = []
        now = self.clock.monotonic()
        for message in messages:
            verdict = self.handle(message, now=now)
            (release if verdict == "release" else delete).append(message)
        try:
            for message in release:
                await self.sqs.release(message)
                self.metrics.events_released.inc()
            if delete:
                failed = await self.sqs.delete(delete)
                if failed:
                    log.warning("some events were not deleted; they come back", failed=failed)
        except AwsCallError as error:
            self._failed(error, operation=error.operation)
            return False
        return True

    def handle(self, message: Message, *, now: float) -> str:
        """What to do with one message: ``delete`` or ``release``. Hints as it goes."""
        parsed = parse_event(message.body)
        if isinstance(parsed, Rejected):
            self.metrics.events_received.labels(UNRECOGNISED).inc()
            return self._discard(parsed.reason.value, message, why=parsed.why)
        event: DrsEvent = parsed
        self.last = event
        self.metrics.events_received.labels(event.detail_type).inc()
        if not event.routable:
            if self._foreign(event):
                return self._discard("other_account", message, why=f"account {event.account}")
            return self._discard("no_resources", message, why="names no source server or job")
        return self._route(event, message, now=now)

    def _route(self, event: DrsEvent, message: Message, *, now: float) -> str:
        """Hint the executions ``event`` concerns; delete or release the message."""
        ours, theirs = self.state.concerned(event, own_account=self.account)
        event_time = event.time if event.time is not None else self.clock.time()
        due = now + self.hint_delay
        hinted = sum(self.state.hint(name, now=due, event_time=event_time) for name in ours)
        if hinted:
            self.metrics.events_hinted.inc(hinted)
            self.state.wakeup.set()
        log.debug(
            "drs event",
            detail_type=event.detail_type,
            event_id=event.event_id,
            region=event.region,
            account=event.account,
            source_servers=list(event.source_servers),
            job_id=event.job_id,
            state=event.state,
            executions=len(ours),
            hinted=hinted,
            owned_elsewhere=len(theirs),
            receive_count=message.receive_count,
        )
        if theirs:
            if message.receive_count < self.release_bound:
                return "release"
            if not ours:
                return self._discard("owned_elsewhere", message, why="another replica's")
            return "delete"
        if not ours:
            if self._foreign(event):
                # A member account's event for no wave of that account (issue 15).
                return self._discard("other_account", message, why=f"account {event.account}")
            return self._discard("no_execution", message, why="no tracked execution")
        return "delete"

    def _foreign(self, event: DrsEvent) -> bool:
        """Whether the event is of another account than the daemon's own (known)."""
        return self.account is not None and event.account not in (None, self.account)

    def _discard(self, reason: str, message: Message, *, why: str) -> str:
        self.metrics.events_discarded.labels(reason).inc()
        log.debug("drs event discarded", reason=reason, why=why, message_id=message.message_id)
        return "delete"

    def _failed(self, error: AwsCallError, *, operation: str) -> None:
        reason = error_reason(error)
        self.metrics.events_queue_errors.labels(reason).inc()
        self.reachable.set(0)
        self.failures += 1
        if self.failures == 1:
            log.error(
                "events queue unreachable; polling carries on, retrying with backoff",
                queue_url=self.sqs.queue_url,
                operation=operation,
                reason=reason,
                code=error.code,
            )

    def _reached(self) -> None:
        self.reachable.set(1)
        if self.failures:
            log.info("events queue reachable again", queue_url=self.sqs.queue_url)
        self.failures = 0
