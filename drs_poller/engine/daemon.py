"""The daemon's lifecycle: ``startup()``, then ``main_loop()``, then ``shutdown()``.

Signal handlers only set a flag. Shutdown stops intake first (the discoverer and
the dispatcher), gives in-flight polls ``shutdown_grace`` seconds to finish, then
cancels what is left. Every write is a single conditional UpdateItem, so a poll
cancelled mid-write leaves the item either before or after that write, never
in between; whoever polls it next re-reads and decides again.
"""

from __future__ import annotations

import asyncio
import signal
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import aioboto3
import structlog

from drs_poller.clients.aws import ClientPool
from drs_poller.clients.calling import AwsCallError, Caller
from drs_poller.clients.drs import DrsAdapter
from drs_poller.clients.dynamodb import ExecutionStore, UnusableIndexError
from drs_poller.clients.ec2 import Ec2Adapter
from drs_poller.clients.leases import LeaseTable
from drs_poller.clock import Clock, SystemClock
from drs_poller.core.backoff import BackoffPolicy
from drs_poller.core.deciding import Policy
from drs_poller.core.phases import Intervals
from drs_poller.engine.discovery import Discoverer
from drs_poller.engine.dispatching import Dispatcher
from drs_poller.engine.leasing import LeaseKeeper, default_replica_id
from drs_poller.engine.polling import Poller
from drs_poller.engine.state import EngineState
from drs_poller.observability.health import Health
from drs_poller.observability.http import serve_http
from drs_poller.observability.metrics import Metrics

if TYPE_CHECKING:
    import random

    from drs_poller.settings import Settings

log = structlog.get_logger("drs_poller.daemon")


EXIT_STARTUP = 2
KEEPER_TASK = "keeper of leases"


class StartupError(Exception):
    """The daemon cannot start (for instance, no AWS region). Exit code 2."""


def policy_from(settings: Settings) -> Policy:
    return Policy(
        intervals=Intervals(
            pending=settings.interval_pending,
            started=settings.interval_started,
            in_progress=settings.interval_in_progress,
            post_launch=settings.interval_post_launch,
        ),
        post_launch_grace=settings.post_launch_grace,
        unknown_job_max_polls=settings.unknown_job_max_polls,
        history_limit=settings.history_limit,
        overdue_after=settings.overdue_after,
        max_execution_age=settings.max_execution_age,
        heartbeat_interval=settings.heartbeat_interval,
    )


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        session: aioboto3.Session | None = None,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.session = session or aioboto3.Session()
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.health = Health(self.clock, settings.liveness_timeout)
        self.rng = rng
        self.metrics_url: str | None = None
        self.exit_code = 0
        self._stop = asyncio.Event()
        self._stack = AsyncExitStack()
        self._roots: list[asyncio.Task[None]] = []

    # --- lifecycle --------------------------------------------------------------

    async def run(self, *, handle_signals: bool = True) -> int:
        if handle_signals:
            self._install_signal_handlers()
        try:
            await self.startup()
        except StartupError:
            self.exit_code = EXIT_STARTUP
            await self.shutdown()
            raise
        try:
            await self.main_loop()
        finally:
            await self.shutdown()
        return self.exit_code

    def request_stop(self, reason: str = "requested") -> None:
        if not self._stop.is_set():
            log.info("stop requested; no new polls will start", reason=reason)
        self._stop.set()

    async def open(self) -> None:
        """Build the components (clients, store, poller, ...) without starting any task.

        ``startup`` calls it; tests and the demo call it alone and then drive
        :meth:`discover_once` and :meth:`poll_due` on a clock they control.
        """
        if getattr(self, "state", None) is not None:
            return
        settings = self.settings
        region = self.session.region_name
        if not region:
            raise StartupError("no AWS region: set AWS_REGION (the table's region)")
        self.clients = ClientPool(
            session=self.session,
            settings=settings,
            endpoints={
                "dynamodb": settings.dynamodb_endpoint_url,
                "drs": settings.drs_endpoint_url,
                "ec2": settings.ec2_endpoint_url,
            },
        )
        self._stack.push_async_callback(self.clients.aclose)
        caller = Caller(
            metrics=self.metrics,
            clock=self.clock,
            policy=BackoffPolicy(
                base=settings.backoff_base,
                cap=settings.backoff_cap,
                max_attempts=settings.max_attempts,
                max_retry_after=settings.max_retry_after,
            ),
            max_concurrent=settings.max_concurrent_calls,
            max_per_region=settings.max_concurrent_calls_per_region,
            rng=self.rng,
        )
        self.store = ExecutionStore(
            clients=self.clients,
            caller=caller,
            region=region,
            table=settings.table_name,
            index=settings.status_index,
        )
        self.state = EngineState(
            metrics=self.metrics,
            policy=policy_from(settings),
            tombstone_seconds=3 * settings.discovery_interval,
        )
        self.poller = Poller(
            drs=DrsAdapter(clients=self.clients, caller=caller),
            ec2=Ec2Adapter(clients=self.clients, caller=caller),
            store=self.store,
            state=self.state,
            metrics=self.metrics,
            clock=self.clock,
            write_attempts=settings.write_attempts,
            max_concurrent_writes=settings.max_concurrent_writes,
        )
        self.leases: LeaseKeeper | None = None
        if settings.lease_table_name:
            self.leases = LeaseKeeper(
                table=LeaseTable(
                    clients=self.clients,
                    caller=caller,
                    region=region,
                    table=settings.lease_table_name,
                    group=settings.lease_group or settings.table_name,
                ),
                state=self.state,
                metrics=self.metrics,
                clock=self.clock,
                replica_id=settings.replica_id or default_replica_id(),
                lease_time=settings.lease_time,
                discovery_interval=settings.discovery_interval,
            )
            self.state.me = self.leases.replica_id
            self.state.members = ()  # nothing is ours before the first renewal
        self.discoverer = Discoverer(
            store=self.store,
            state=self.state,
            metrics=self.metrics,
            health=self.health,
            clock=self.clock,
            interval=settings.discovery_interval,
            full_interval=settings.full_discovery_interval,
            jobs_per_shard=settings.shard_jobs,
            fetch_concurrency=settings.max_concurrent_writes,
        )
        self.dispatcher = Dispatcher(
            state=self.state,
            poller=self.poller,
            metrics=self.metrics,
            health=self.health,
            clock=self.clock,
            coalesce_window=settings.coalesce_window,
            max_inflight_batches=settings.max_inflight_batches,
            may_poll=self.may_poll,
        )

    def may_poll(self) -> bool:
        return self.leases is None or self.leases.may_poll()

    async def discover_once(self) -> int:
        return await self.discoverer.discover_once()

    async def renew_leases(self) -> None:
        """One turn of the keeper of leases (tests drive it on their clock)."""
        if self.leases is not None:
            await self.leases.tick()

    async def poll_due(self) -> int:
        """Poll, as one batch, every execution due now (within the coalescing window)."""
        if not self.may_poll():
            return 0
        batch = self.state.queue.pop_due(
            self.clock.monotonic(), window=self.settings.coalesce_window
        )
        if batch:
            await self.poller.poll_batch(batch)
        return len(batch)

    async def close(self) -> None:
        await self._stack.aclose()

    async def check_index(self) -> None:
        """Read the StatusIndex's projection once (DescribeTable); discovery reads by it.
        An index the daemon cannot work with, or a table it cannot describe, stops
        start-up with a message naming it."""
        settings = self.settings
        try:
            projection = await self.store.describe_index()
        except UnusableIndexError as error:
            raise StartupError(f"{error}") from None
        except AwsCallError as error:
            raise StartupError(
                f"cannot describe the table {settings.table_name!r} (DRS_POLLER_TABLE_NAME; "
                f"the task role needs dynamodb:DescribeTable): {error.code}"
            ) from None
        log.info(
            "status index",
            index=settings.status_index,
            projection=projection.describe(),
            peer_writes_seen_by="lean passes" if projection.revision else "full passes",
        )

    async def startup(self) -> None:
        await self.open()
        await self.check_index()
        settings = self.settings
        try:
            self.metrics_url = await self._stack.enter_async_context(
                serve_http(
                    metrics=self.metrics,
                    health=self.health,
                    host=settings.metrics_host,
                    port=settings.metrics_port,
                )
            )
        except OSError as error:
            raise StartupError(
                f"cannot serve /metrics on {settings.metrics_host}:{settings.metrics_port} "
                f"(DRS_POLLER_METRICS_HOST / DRS_POLLER_METRICS_PORT): {error.strerror or error}"
            ) from None
        if self.leases is not None:
            await self._first_lease(self.leases)
        self._roots = [
            asyncio.create_task(self.discoverer.run(), name="discoverer"),
            asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
        ]
        if self.leases is not None:
            self._roots.append(asyncio.create_task(self.leases.run(), name=KEEPER_TASK))
        log.info(
            "drs-poller started",
            table=settings.table_name,
            region=self.session.region_name,
            metrics_url=self.metrics_url,
        )

    async def _first_lease(self, leases: LeaseKeeper) -> None:
        """Register before the first discovery, so that no replica starts by polling all.

        A lease table that does not exist, or that we may not write, is a start-up
        error; a transient failure is left to the keeper's next turns.
        """
        error = await leases.tick()
        if error is not None and error.kind == "permanent":
            raise StartupError(
                f"cannot use the lease table {leases.table.table!r}"
                f" (DRS_POLLER_LEASE_TABLE_NAME): {error.code}"
            )
        log.info(
            "lease taken",
            replica_id=leases.replica_id,
            lease_group=self.settings.lease_group or self.settings.table_name,
            replicas=list(self.state.members or ()),
        )

    async def main_loop(self) -> None:
        stop = asyncio.create_task(self._stop.wait(), name="stop flag")
        try:
            done, _ = await asyncio.wait([stop, *self._roots], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        for task in done:
            if task is not stop:
                # A root task never returns on its own: this is a bug. Exit non-zero so
                # the orchestrator restarts the task, rather than idle while looking healthy.
                self.exit_code = 1
                error = None if task.cancelled() else task.exception()
                log.error("root task ended unexpectedly", task=task.get_name(), error=repr(error))

    async def shutdown(self) -> None:
        self.health.mark_stopping()
        dispatcher = getattr(self, "dispatcher", None)
        if dispatcher is not None:
            dispatcher.stop()
        # The keeper of leases keeps renewing while polls in flight finish.
        keeper = [task for task in self._roots if task.get_name() == KEEPER_TASK]
        intake = [task for task in self._roots if task.get_name() != KEEPER_TASK]
        for task in intake:
            if task.get_name() == "discoverer":
                task.cancel("shutdown: no more discovery")
        await asyncio.gather(*intake, return_exceptions=True)
        if dispatcher is not None and dispatcher.inflight:
            pending = set(dispatcher.inflight)
            log.info(
                "waiting for polls in flight",
                batches=len(pending),
                grace_seconds=self.settings.shutdown_grace,
            )
            _, still_running = await asyncio.wait(pending, timeout=self.settings.shutdown_grace)
            for task in still_running:
                task.cancel("shutdown grace period over")
            if still_running:
                log.warning(
                    "cancelled polls still in flight after the grace period",
                    batches=len(still_running),
                )
                await asyncio.gather(*still_running, return_exceptions=True)
        for task in keeper:
            task.cancel("shutdown: polls done, releasing the lease")
        await asyncio.gather(*keeper, return_exceptions=True)
        leases = getattr(self, "leases", None)
        if leases is not None:
            await leases.release()
        await self.close()
        log.info("drs-poller stopped", exit_code=self.exit_code)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
