"""The drill reports: put to S3 when an execution ends, and read for ``drs-poller report``.

The poller hands the publisher the item of every write that made an execution final,
after that write has landed (``submit``: synchronous, never blocks). One sender renders
the report (docs/report.md) and puts ``<prefix><ExecutionId>.html`` and ``.json`` into
``DRS_POLLER_REPORT_BUCKET``, off the poll's path. A put is retried by the Caller with
the daemon's backoff; one that still fails is counted
(``drs_poller_report_puts_total{outcome="error"}``) and logged, and that is all: the
final status was written before, and nothing here can change it. The queue is bounded;
what does not fit is counted as ``dropped``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final

import structlog

from drs_poller.clients.aws import ClientPool
from drs_poller.clients.calling import AwsCallError
from drs_poller.clock import SystemClock
from drs_poller.core.report import as_of_time, build_report, report_json
from drs_poller.core.report_html import render_html
from drs_poller.engine.wiring import caller_from, store_from
from drs_poller.observability.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import Mapping

    import aioboto3

    from drs_poller.clients.s3 import S3Adapter
    from drs_poller.settings import Settings

log = structlog.get_logger("drs_poller.reporting")

QUEUE_SIZE: Final = 1000
FORMATS: Final = ("html", "json")
CONTENT_TYPES: Final = {"html": "text/html; charset=utf-8", "json": "application/json"}


def report_key(prefix: str, execution_id: str, fmt: str) -> str:
    """The object key of one report: ``<prefix><ExecutionId>.<fmt>`` (docs/report.md)."""
    return f"{prefix}{execution_id}.{fmt}"


def render_reports(item: Mapping[str, Any]) -> dict[str, bytes]:
    """The HTML and JSON reports of a finished execution, standing at its EndTime."""
    report = build_report(item, as_of=as_of_time(item, now=0.0))
    return {"html": render_html(report).encode(), "json": report_json(report).encode()}


class ReportPublisher:
    def __init__(
        self,
        *,
        s3: S3Adapter,
        bucket: str,
        prefix: str,
        metrics: Metrics,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.metrics = metrics
        self.queue: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue(queue_size)

    def submit(self, item: Mapping[str, Any]) -> bool:
        """Queue the report of ``item``, the item a final write left; False if the queue
        is full (counted, logged)."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            for fmt in FORMATS:
                self.metrics.report_puts.labels(fmt, "dropped").inc()
            log.warning(
                "report not queued: the queue is full", execution_id=item.get("ExecutionId")
            )
            return False
        return True

    async def run(self) -> None:
        """The sender, until cancelled."""
        while True:
            item = await self.queue.get()
            try:
                await self.publish(item)
            finally:
                self.queue.task_done()

    async def drain(self) -> None:
        """Put everything queued, in this task (tests; the demo)."""
        while not self.queue.empty():
            item = self.queue.get_nowait()
            try:
                await self.publish(item)
            finally:
                self.queue.task_done()

    async def publish(self, item: Mapping[str, Any]) -> None:
        """Render and put both reports of ``item``; never raises (but when cancelled)."""
        execution_id = str(item.get("ExecutionId") or "")
        bound = log.bind(execution_id=execution_id, bucket=self.bucket)
        try:
            # In a thread: a report of hundreds of servers takes a few hundred ms to
            # render (600 servers: about 0.3 s), which the event loop must not wait for.
            bodies = await asyncio.to_thread(render_reports, item)
        except Exception:
            for fmt in FORMATS:
                self.metrics.report_puts.labels(fmt, "render_error").inc()
            log.exception("report could not be rendered; not put", execution_id=execution_id)
            return
        for fmt in FORMATS:
            key = report_key(self.prefix, execution_id, fmt)
            try:
                await self.s3.put_object(
                    bucket=self.bucket,
                    key=key,
                    body=bodies[fmt],
                    content_type=CONTENT_TYPES[fmt],
                )
            except AwsCallError as error:
                self.metrics.report_puts.labels(fmt, "error").inc()
                bound.error("report put failed", key=key, error=str(error))
                continue
            except Exception:
                self.metrics.report_puts.labels(fmt, "error").inc()
                log.exception("report put failed unexpectedly", execution_id=execution_id, key=key)
                continue
            self.metrics.report_puts.labels(fmt, "success").inc()
            bound.info("report put", key=key, bytes=len(bodies[fmt]))

    async def close(self, *, grace: float) -> None:
        """Give what is queued ``grace`` seconds; the rest is not put."""
        if self.queue.empty() or grace <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), timeout=grace)


# --- drs-poller report -----------------------------------------------------------------


class ExecutionNotFoundError(Exception):
    """No item, or several and no plan id to choose: the message says which."""


async def read_execution(
    settings: Settings,
    *,
    session: aioboto3.Session,
    execution_id: str,
    plan_id: str | None = None,
) -> dict[str, Any]:
    """The execution's item, read by key (a consistent Query on ``ExecutionId``), with the
    daemon's clients, timeouts and retries."""
    region = session.region_name
    assert region is not None  # noqa: S101 - the command line checks it first
    clients = ClientPool(
        session=session, settings=settings, endpoints={"dynamodb": settings.dynamodb_endpoint_url}
    )
    metrics = Metrics()
    caller = caller_from(settings, metrics=metrics, clock=SystemClock())
    store = store_from(settings, clients=clients, caller=caller, region=region)
    try:
        items = await store.find_execution(execution_id, plan_id=plan_id)
    finally:
        await clients.aclose()
    where = f"table {settings.table_name} ({region})"
    if not items:
        plan = "" if plan_id is None else f" with plan id {plan_id!r}"
        raise ExecutionNotFoundError(f"no execution {execution_id!r}{plan} in {where}")
    if len(items) > 1:
        plans = ", ".join(sorted(repr(str(item.get("PlanId"))) for item in items))
        raise ExecutionNotFoundError(
            f"execution {execution_id!r} has {len(items)} items in {where}, for plans "
            f"{plans}: choose one with --plan-id"
        )
    return items[0]
