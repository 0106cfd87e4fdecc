"""The daemon's components, built in one place from the settings: the clients, the
store, the engine's state, the poller, the answerer of task tokens, and the root loops
(the discoverer, the dispatcher, the senders of answers and, with a lease table, the
keeper of leases).

:func:`build_components` starts nothing. The daemon starts the loops and stops them;
the tests build the same object and run the same loops on a :class:`ManualClock`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from drs_poller.clients.accounts import MemberAccounts, sts_endpoint
from drs_poller.clients.answer_records import AnswerRecords
from drs_poller.clients.aws import ClientPool
from drs_poller.clients.drs import DrsAdapter
from drs_poller.clients.ec2 import Ec2Adapter
from drs_poller.clients.events import EventRecords, EventsAdapter
from drs_poller.clients.leases import LeaseTable
from drs_poller.clients.s3 import S3Adapter
from drs_poller.clients.sqs import SqsAdapter, queue_account, queue_label, queue_region
from drs_poller.clients.stepfunctions import StepFunctionsAdapter
from drs_poller.core.events_out import ReportLocation
from drs_poller.engine.answering import Answerer
from drs_poller.engine.discovery import FETCH_CONCURRENCY, Discoverer
from drs_poller.engine.dispatching import Dispatcher
from drs_poller.engine.hints import WAIT_SECONDS, EventListener
from drs_poller.engine.leasing import LeaseKeeper, default_replica_id
from drs_poller.engine.polling import Poller
from drs_poller.engine.publishing import EventPublisher
from drs_poller.engine.reporting import ReportPublisher
from drs_poller.engine.state import EngineState
from drs_poller.engine.tracking import queue_name
from drs_poller.engine.wiring import caller_from, store_from
from drs_poller.settings import policy_from

if TYPE_CHECKING:
    import random

    import aioboto3

    from drs_poller.clients.dynamodb import ExecutionStore
    from drs_poller.clock import Clock
    from drs_poller.observability.health import Health
    from drs_poller.observability.metrics import Metrics
    from drs_poller.settings import Settings


@dataclass(frozen=True)
class Components:
    clients: ClientPool
    store: ExecutionStore
    state: EngineState
    poller: Poller
    discoverer: Discoverer
    dispatcher: Dispatcher
    leases: LeaseKeeper | None
    answerer: Answerer
    reporter: ReportPublisher | None = None  # with DRS_POLLER_REPORT_BUCKET
    publisher: EventPublisher | None = None  # with DRS_POLLER_EVENT_BUS (docs/events.md)
    listener: EventListener | None = None  # with DRS_POLLER_EVENTS_QUEUE_URL
    listener_clients: ClientPool | None = None

    def may_poll(self) -> bool:
        """Without a lease table, always; with one, while our lease is valid."""
        return self.leases is None or self.leases.may_poll()

    async def aclose(self) -> None:
        if self.listener_clients is not None:
            await self.listener_clients.aclose()
        await self.clients.aclose()


def build_components(
    settings: Settings,
    *,
    session: aioboto3.Session,
    region: str,
    clock: Clock,
    metrics: Metrics,
    health: Health,
    rng: random.Random | None = None,
) -> Components:
    clients = ClientPool(
        session=session,
        settings=settings,
        endpoints={
            "dynamodb": settings.dynamodb_endpoint_url,
            "drs": settings.drs_endpoint_url,
            "ec2": settings.ec2_endpoint_url,
            "stepfunctions": settings.stepfunctions_endpoint_url,
            "s3": settings.s3_endpoint_url,
            "events": settings.events_endpoint_url,
            "sqs": settings.sqs_endpoint_url,
            "sts": settings.sts_endpoint_url or sts_endpoint(region),
        },
    )
    caller = caller_from(settings, metrics=metrics, clock=clock, rng=rng)
    # Member accounts (issue 15): an assumed role per wave AccountId, created on first use.
    clients.members = MemberAccounts(
        clients=clients,
        caller=caller,
        settings=settings,
        region=region,
        clock=clock,
        metrics=metrics,
        rng=rng,
    )
    store = store_from(settings, clients=clients, caller=caller, region=region)
    state = EngineState(
        metrics=metrics,
        policy=policy_from(settings),
        tombstone_seconds=3 * settings.discovery_interval,
        route_events=bool(settings.events_queue_url),
    )
    metrics.refresh_on_collect(lambda: state.refresh_gauges(wall=clock.time()))
    poller = Poller(
        drs=DrsAdapter(clients=clients, caller=caller),
        ec2=Ec2Adapter(clients=clients, caller=caller),
        store=store,
        state=state,
        metrics=metrics,
        clock=clock,
        write_attempts=settings.write_attempts,
        max_concurrent_writes=settings.max_concurrent_writes,
        max_concurrent_calls=settings.max_concurrent_calls,
        stall_check_interval=settings.stall_check_interval,
    )
    answerer = Answerer(
        stepfunctions=StepFunctionsAdapter(clients=clients, caller=caller, region=region),
        records=AnswerRecords(
            clients=clients,
            caller=caller,
            region=region,
            table=settings.table_name,
            index=settings.status_index,
        ),
        store=store,
        metrics=metrics,
        clock=clock,
        heartbeat_interval=settings.task_heartbeat_interval,
        max_execution_age=settings.max_execution_age,
        may_sweep=lambda key, item: state.owns(queue_name(*key), dict(item)),
    )
    poller.answerer = answerer
    reporter: ReportPublisher | None = None
    if settings.report_bucket:
        reporter = ReportPublisher(
            s3=S3Adapter(clients=clients, caller=caller, region=region),
            bucket=settings.report_bucket,
            prefix=settings.report_prefix,
            metrics=metrics,
        )
        poller.reporter = reporter
    publisher: EventPublisher | None = None
    if settings.event_bus:
        publisher = EventPublisher(
            events=EventsAdapter(clients=clients, caller=caller, region=region),
            records=EventRecords(
                clients=clients,
                caller=caller,
                region=region,
                table=settings.table_name,
                index=settings.status_index,
            ),
            store=store,
            caller=caller,
            metrics=metrics,
            clock=clock,
            bus=settings.event_bus,
            report=None
            if not settings.report_bucket
            else ReportLocation(bucket=settings.report_bucket, prefix=settings.report_prefix),
            max_execution_age=settings.max_execution_age,
            may_sweep=lambda key, item: state.owns(queue_name(*key), dict(item)),
        )
        poller.publisher = publisher
    leases: LeaseKeeper | None = None
    if settings.lease_table_name:
        leases = LeaseKeeper(
            table=LeaseTable(
                clients=clients,
                caller=caller,
                region=region,
                table=settings.lease_table_name,
                group=settings.lease_group or settings.table_name,
            ),
            state=state,
            metrics=metrics,
            clock=clock,
            replica_id=settings.replica_id or default_replica_id(),
            lease_time=settings.lease_time,
            discovery_interval=settings.discovery_interval,
        )
        state.me = leases.replica_id
        state.members = ()  # nothing is ours before the first renewal
    discoverer = Discoverer(
        store=store,
        state=state,
        metrics=metrics,
        health=health,
        clock=clock,
        interval=settings.discovery_interval,
        full_interval=settings.full_discovery_interval,
        jobs_per_shard=settings.shard_jobs,
        fetch_concurrency=min(settings.max_concurrent_writes, FETCH_CONCURRENCY),
    )
    dispatcher = Dispatcher(
        state=state,
        poller=poller,
        metrics=metrics,
        health=health,
        clock=clock,
        coalesce_window=settings.coalesce_window,
        max_inflight_batches=settings.max_inflight_batches,
        max_batch=settings.max_batch_executions,
        may_poll=lambda: leases is None or leases.may_poll(),
    )
    listener, listener_clients = _listener_from(
        settings, session=session, region=region, state=state, clock=clock, metrics=metrics, rng=rng
    )
    return Components(
        listener=listener,
        listener_clients=listener_clients,
        clients=clients,
        store=store,
        state=state,
        poller=poller,
        discoverer=discoverer,
        dispatcher=dispatcher,
        leases=leases,
        answerer=answerer,
        reporter=reporter,
        publisher=publisher,
    )


def _listener_from(
    settings: Settings,
    *,
    session: aioboto3.Session,
    region: str,
    state: EngineState,
    clock: Clock,
    metrics: Metrics,
    rng: random.Random | None,
) -> tuple[EventListener | None, ClientPool | None]:
    """The listener of DRS events (docs/events.md), with its own clients and Caller: a
    long poll holds its connection for 20 s, longer than READ_TIMEOUT, and must not hold
    one of the slots the DRS and DynamoDB calls wait for."""
    queue_url = settings.events_queue_url
    if not queue_url:
        return None, None
    own = settings.model_copy(
        update={
            "read_timeout": max(settings.read_timeout, WAIT_SECONDS + 10.0),
            "max_concurrent_calls": 2,
            "max_concurrent_calls_per_region": 2,
        }
    )
    clients = ClientPool(
        session=session, settings=own, endpoints={"sqs": settings.sqs_endpoint_url}
    )
    listener = EventListener(
        sqs=SqsAdapter(
            clients=clients,
            caller=caller_from(own, metrics=metrics, clock=clock, rng=rng),
            queue_url=queue_url,
            region=queue_region(queue_url, default=region),
        ),
        state=state,
        metrics=metrics,
        clock=clock,
        account=queue_account(queue_url),
        queue=queue_label(queue_url),
        hint_delay=settings.coalesce_window / 2,
        rng=rng,
    )
    return listener, clients
