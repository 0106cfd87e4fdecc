"""The answerer: sends task-token answers and heartbeats off the poll's critical path.

The poller hands every item it has just written or read (``observe``) to the answerer,
which queues what is due: an answer for a token whose holder reached its final status
(only ever after the write that made it final has landed, since that write's item is
what is observed), and a heartbeat, at most every ``heartbeat_interval`` seconds, for a
token whose holder still runs. A few workers send them, so a slow Step Functions
endpoint never delays a poll. The queue is bounded: what does not fit is found again
at the next poll, or by the sweep.

At least once, across replicas and restarts: every answer is recorded on the item
(``TaskTokenAnsweredTime``) after Step Functions accepted it. A token whose answer was
not recorded is answered again: by the next poll while the execution is POLLING, or,
once it finished, by the recovery sweep (``sweep_once``), which finds finished
executions whose ``TaskTokensPending`` is not empty. A second answer is harmless:
Step Functions rejects it (the token is closed) and the record's condition fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from drs_poller.clients.calling import AwsCallError
from drs_poller.clients.stepfunctions import TokenRejectedError
from drs_poller.clock import epoch
from drs_poller.core.answering import (
    PENDING,
    Answer,
    Beat,
    answer_for,
    heartbeats_due,
    tokens_due,
)
from drs_poller.core.models import FINAL_STATUSES
from drs_poller.engine.tracking import key_of

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from drs_poller.clients.answer_records import AnswerRecords
    from drs_poller.clients.dynamodb import ExecutionStore
    from drs_poller.clients.stepfunctions import StepFunctionsAdapter
    from drs_poller.clock import Clock
    from drs_poller.observability.metrics import Metrics

log = structlog.get_logger("drs_poller.answering")

QUEUE_SIZE = 1000
WORKERS = 8  # as many as the Caller lets into one region at once (its default)
# Tokens answered (or rejected) lately, so that the polls that follow, before the
# cached item shows the record, do not send them again.
REMEMBERED = 10_000
# The sweep looks back this much further than the maximum execution age: an execution
# that finished at its maximum age, while every replica was down for up to a day.
SWEEP_MARGIN = 86400.0


@dataclass(frozen=True, slots=True)
class _Job:
    key: tuple[str, str]
    answer: Answer | None = None
    beat: Beat | None = None
    landed_at: float | None = None  # monotonic time the final write landed, when known

    @property
    def slot(self) -> tuple[bool, str]:
        """An answer and a heartbeat for one token may be queued at once; two of either not."""
        return (self.answer is not None, self.token)

    @property
    def token(self) -> str:
        if self.answer is not None:
            return self.answer.token
        assert self.beat is not None  # noqa: S101 - a job holds an answer or a beat
        return self.beat.token


class Answerer:
    def __init__(
        self,
        *,
        stepfunctions: StepFunctionsAdapter,
        records: AnswerRecords,
        store: ExecutionStore,
        metrics: Metrics,
        clock: Clock,
        heartbeat_interval: float,
        max_execution_age: float,
        may_sweep: Callable[[tuple[str, str], Mapping[str, Any]], bool] = lambda _k, _i: True,
        queue_size: int = QUEUE_SIZE,
        workers: int = WORKERS,
    ) -> None:
        self.stepfunctions = stepfunctions
        self.records = records
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.heartbeat_interval = heartbeat_interval
        self.max_execution_age = max_execution_age
        self.may_sweep = may_sweep
        self.workers = workers
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(queue_size)
        self._queued: set[tuple[bool, str]] = set()  # answers and heartbeats queued or sent
        self._done: OrderedDict[str, None] = OrderedDict()
        self._beaten: dict[str, float] = {}  # token -> monotonic time of its last heartbeat

    # --- intake (synchronous: called from the poll) --------------------------------

    def observe(self, item: Mapping[str, Any], *, landed_at: float | None = None) -> int:
        """Queue what ``item`` is due; returns how many jobs were queued."""
        key = key_of(item)  # no copy: observe runs on every poll
        if key is None:
            return 0
        queued = 0
        for holder, token in tokens_due(item):
            self._beaten.pop(token, None)
            if token in self._done or (True, token) in self._queued:
                continue  # the summary is built only for an answer that will be sent
            answer = answer_for(item, holder, token)
            queued += self._put(_Job(key=key, answer=answer, landed_at=landed_at))
        if self.heartbeat_interval > 0:
            now = self.clock.monotonic()
            for beat in heartbeats_due(item):
                last = self._beaten.get(beat.token)
                if last is None or now - last >= self.heartbeat_interval:
                    queued += self._put(_Job(key=key, beat=beat))
            while len(self._beaten) > REMEMBERED:  # tokens whose holder we never saw end
                del self._beaten[next(iter(self._beaten))]
        return queued

    def _put(self, job: _Job) -> int:
        if job.slot in self._queued or job.token in self._done:
            return 0
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.metrics.task_token_dropped.inc()
            return 0
        self._queued.add(job.slot)
        return 1

    # --- the workers -------------------------------------------------------------

    async def run(self) -> None:
        """The senders of answers: ``workers`` tasks draining the queue, until cancelled."""
        async with asyncio.TaskGroup() as group:
            for number in range(self.workers):
                group.create_task(self._work(), name=f"sender of answers {number}")

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await self.handle(job)
            finally:
                self.queue.task_done()

    async def drain(self) -> None:
        """Send everything queued, in this task (tests; the demo)."""
        while not self.queue.empty():
            job = self.queue.get_nowait()
            try:
                await self.handle(job)
            finally:
                self.queue.task_done()

    async def handle(self, job: _Job) -> None:
        try:
            if job.answer is not None:
                await self._answer(job, job.answer)
            elif job.beat is not None:
                await self._heartbeat(job, job.beat)
        except Exception:
            if job.answer is not None:
                self.metrics.task_token_answers.labels(_kind(job), "error").inc()
            else:
                self.metrics.task_token_heartbeats.labels("error").inc()
            log.exception("task token handling failed unexpectedly; retried later")
        finally:
            self._queued.discard(job.slot)

    async def _answer(self, job: _Job, answer: Answer) -> None:
        kind = answer.holder.scope.lower()
        bound = log.bind(execution_id=job.key[0], holder=answer.holder.path, status=answer.status)
        try:
            if answer.success:
                await self.stepfunctions.send_success(answer.token, answer.output)
            else:
                await self.stepfunctions.send_failure(
                    answer.token, error=answer.error or "", cause=answer.cause or ""
                )
        except TokenRejectedError as rejected:
            await self._rejected(job, answer.holder, rejected, kind=kind)
            return
        except AwsCallError as error:
            self.metrics.task_token_answers.labels(kind, "error").inc()
            bound.warning("task token answer failed; sent again later", error=str(error))
            return
        if job.landed_at is not None:
            self.metrics.task_token_answer_delay.observe(
                max(0.0, self.clock.monotonic() - job.landed_at)
            )
        self.metrics.task_token_answers.labels(kind, answer.recorded.value.lower()).inc()
        self._remember(answer.token)
        await self._record(job, answer.holder, answer.recorded, bound=bound)
        bound.info("task token answered", answer=answer.recorded.value)

    async def _heartbeat(self, job: _Job, beat: Beat) -> None:
        self._beaten[beat.token] = self.clock.monotonic()
        try:
            await self.stepfunctions.send_heartbeat(beat.token)
        except TokenRejectedError as rejected:
            if rejected.code == "InvalidToken":
                # Not recorded: moto rejects a heartbeat as InvalidToken for a state without
                # HeartbeatSeconds, and the final answer must still be tried. No more
                # heartbeats for it; its answer records INVALID_TOKEN if it is invalid.
                self._beaten[beat.token] = math.inf
                self.metrics.task_token_heartbeats.labels("invalid_token").inc()
                log.warning(
                    "Step Functions rejected a heartbeat as InvalidToken; no more heartbeats",
                    execution_id=job.key[0],
                    holder=beat.holder.path,
                )
                return
            self._beaten.pop(beat.token, None)
            await self._rejected(job, beat.holder, rejected, kind="heartbeat")
            return
        except AwsCallError as error:
            self.metrics.task_token_heartbeats.labels("error").inc()
            log.warning(
                "task token heartbeat failed",
                execution_id=job.key[0],
                holder=beat.holder.path,
                error=str(error),
            )
            return
        self.metrics.task_token_heartbeats.labels("success").inc()

    async def _rejected(
        self, job: _Job, holder: Any, rejected: TokenRejectedError, *, kind: str
    ) -> None:
        """Step Functions will take no answer: counted, logged, recorded, not retried."""
        outcome = rejected.recorded.value.lower()
        if kind == "heartbeat":
            self.metrics.task_token_heartbeats.labels(outcome).inc()
        else:
            self.metrics.task_token_answers.labels(kind, outcome).inc()
        self._remember(job.token)
        bound = log.bind(execution_id=job.key[0], holder=holder.path)
        recorded = await self._record(job, holder, rejected.recorded, bound=bound)
        # A token already answered (by a peer, or before a restart) is rejected as well:
        # then the record is there already, and this is the normal end of a duplicate.
        (bound.warning if recorded else bound.info)(
            "Step Functions rejected the task token; not retried",
            code=rejected.code,
            during=kind,
            already_recorded=not recorded,
        )

    async def _record(self, job: _Job, holder: Any, recorded: Any, *, bound: Any) -> bool:
        try:
            return await self.records.record(
                key=job.key,
                holder=holder,
                token=job.token,
                recorded=recorded,
                at=epoch(self.clock.time()),
            )
        except AwsCallError as error:
            # Sent, not recorded: a restart may send it again, which is harmless.
            bound.warning("task token answer not recorded", error=str(error))
            return False

    def _remember(self, token: str) -> None:
        self._done[token] = None
        while len(self._done) > REMEMBERED:
            self._done.popitem(last=False)

    def forget_heartbeats(self, tokens: set[str]) -> None:
        for token in tokens:
            self._beaten.pop(token, None)

    # --- the recovery sweep ---------------------------------------------------------

    async def sweep_once(self) -> int:
        """Find finished executions with a token due and no answer recorded; queue their
        answers. Returns how many were queued."""
        since = self.clock.time() - self.max_execution_age - SWEEP_MARGIN
        queued = 0
        statuses = tuple(sorted(FINAL_STATUSES))
        projection = self.store.projection
        # On an index that does not project TaskTokensPending (KEYS_ONLY, or an INCLUDE
        # without it) a filter on it would match nothing: every finished execution in
        # the window is then read whole, and the attribute is checked here.
        on_index = projection.whole or PENDING in projection.attributes
        keys = [
            key
            async for key in self.records.unanswered(
                statuses=statuses, since=since, filter_on_index=on_index
            )
        ]
        items = await self.store.get_many(keys) if keys else {}
        for key, item in items.items():
            if item.get("Status") not in FINAL_STATUSES or not item.get(PENDING):
                continue
            if self.may_sweep(key, item):
                queued += self.observe(item)
        self.metrics.task_token_sweeps.inc()
        if queued:
            log.info("sweep found unanswered task tokens", queued=queued)
        return queued

    async def sweep_forever(self, interval: float) -> None:
        """Sweep at start-up (a crash before the answer is the case it is for), then
        every ``interval`` seconds."""
        while True:
            try:
                await self.sweep_once()
            except AwsCallError as error:
                log.error("task token sweep failed", error=str(error))  # noqa: TRY400
            except Exception:
                log.exception("task token sweep failed unexpectedly")
            await asyncio.sleep(interval)

    async def close(self, *, grace: float) -> None:
        """Give what is queued ``grace`` seconds; what is left is answered after a restart."""
        if self.queue.empty() or grace <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), timeout=grace)


def _kind(job: _Job) -> str:
    if job.answer is not None:
        return job.answer.holder.scope.lower()
    return "heartbeat"
