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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aioboto3
import structlog

from drs_poller.clients.calling import AwsCallError
from drs_poller.clients.dynamodb import UnusableIndexError
from drs_poller.clock import SystemClock
from drs_poller.engine.components import Components, build_components
from drs_poller.observability.health import Health
from drs_poller.observability.http import serve_http
from drs_poller.observability.metrics import Metrics

if TYPE_CHECKING:
    import random
    from collections.abc import Coroutine
    from typing import Any

    from drs_poller.clients.aws import ClientPool
    from drs_poller.clients.dynamodb import ExecutionStore
    from drs_poller.clock import Clock
    from drs_poller.engine.answering import Answerer
    from drs_poller.engine.discovery import Discoverer
    from drs_poller.engine.dispatching import Dispatcher
    from drs_poller.engine.leasing import LeaseKeeper
    from drs_poller.engine.polling import Poller
    from drs_poller.engine.state import EngineState
    from drs_poller.settings import Settings

log = structlog.get_logger("drs_poller.daemon")


EXIT_STARTUP = 2
RELEASE_TIMEOUT = 5.0  # seconds the lease release may take at shutdown


class StartupError(Exception):
    """The daemon cannot start (for instance, no AWS region). Exit code 2."""


@dataclass
class RootTasks:
    """The root tasks, held by reference: shutdown stops each in its own order."""

    discoverer: asyncio.Task[None]
    dispatcher: asyncio.Task[None]
    keeper: asyncio.Task[None] | None
    senders: asyncio.Task[None]  # senders of task-token answers (contract §5)
    sweeper: asyncio.Task[None] | None  # sweeper of unanswered tokens
    reporter: asyncio.Task[None] | None = None  # sender of drill reports (docs/report.md)
    publisher: asyncio.Task[None] | None = None  # sender of finalization events (docs/events.md)
    event_sweeper: asyncio.Task[None] | None = None  # sweeper of unsent finalization events
    listener: asyncio.Task[None] | None = None  # listener of DRS events (docs/events.md)

    def all(self) -> list[asyncio.Task[None]]:
        tasks = (
            self.discoverer,
            self.dispatcher,
            self.keeper,
            self.senders,
            self.sweeper,
            self.reporter,
            self.publisher,
            self.event_sweeper,
            self.listener,
        )
        return [task for task in tasks if task]


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
        self.components: Components | None = None
        self.roots: RootTasks | None = None
        self._stop = asyncio.Event()
        self._stack = AsyncExitStack()

    # --- lifecycle --------------------------------------------------------------

    async def run(self, *, handle_signals: bool = True) -> int:
        if handle_signals:
            self._install_signal_handlers()
        try:
            started = await self._unless_stopped(self.startup())
        except StartupError:
            self.exit_code = EXIT_STARTUP
            await self.shutdown()
            raise
        if not started:
            # Stopped while starting up (a quick rollback, a slow table): the start-up
            # calls are abandoned rather than waited out with their retries, because the
            # orchestrator's SIGKILL follows the SIGTERM after its stop timeout.
            await self.shutdown()
            return self.exit_code
        try:
            await self.main_loop()
        finally:
            await self.shutdown()
        return self.exit_code

    async def _unless_stopped(self, starting: Coroutine[Any, Any, None]) -> bool:
        """Run ``starting`` to its end, or until a stop is requested (then cancel it):
        True if it ended. Its errors are raised."""
        task = asyncio.create_task(starting, name="start-up")
        stop = asyncio.create_task(self._stop.wait(), name="stop flag")
        try:
            await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            task.result()
            return True
        task.cancel("stop requested during start-up")
        await asyncio.gather(task, return_exceptions=True)
        log.info("start-up abandoned: stop requested")
        return False

    def request_stop(self, reason: str = "requested") -> None:
        if not self._stop.is_set():
            log.info("stop requested; no new polls will start", reason=reason)
        self._stop.set()

    async def open(self) -> Components:
        """Build the components (:func:`build_components`) without starting any task.

        ``startup`` calls it; tests call it alone and run the same loops on a clock
        they control (tests/harness.py).
        """
        if self.components is not None:
            return self.components
        region = self.session.region_name
        if not region:
            raise StartupError("no AWS region: set AWS_REGION (the table's region)")
        self.components = build_components(
            self.settings,
            session=self.session,
            region=region,
            clock=self.clock,
            metrics=self.metrics,
            health=self.health,
            rng=self.rng,
        )
        self._stack.push_async_callback(self.components.aclose)
        return self.components

    # The components, by name, once open() has built them.
    @property
    def built(self) -> Components:
        if self.components is None:
            raise RuntimeError("the daemon is not open")
        return self.components

    @property
    def clients(self) -> ClientPool:
        return self.built.clients

    @property
    def store(self) -> ExecutionStore:
        return self.built.store

    @property
    def state(self) -> EngineState:
        return self.built.state

    @property
    def poller(self) -> Poller:
        return self.built.poller

    @property
    def discoverer(self) -> Discoverer:
        return self.built.discoverer

    @property
    def dispatcher(self) -> Dispatcher:
        return self.built.dispatcher

    @property
    def leases(self) -> LeaseKeeper | None:
        return self.built.leases

    @property
    def answerer(self) -> Answerer:
        return self.built.answerer

    def may_poll(self) -> bool:
        return self.built.may_poll()

    async def discover_once(self) -> int:
        return await self.built.discoverer.discover_once()

    async def renew_leases(self) -> None:
        """One turn of the keeper of leases (tests drive it on their clock)."""
        if self.built.leases is not None:
            await self.built.leases.tick()

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
        components = await self.open()
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
        leases = components.leases
        if leases is not None:
            await self._first_lease(leases)
        self.roots = RootTasks(
            discoverer=asyncio.create_task(components.discoverer.run(), name="discoverer"),
            dispatcher=asyncio.create_task(components.dispatcher.run(), name="dispatcher"),
            keeper=None
            if leases is None
            else asyncio.create_task(leases.run(), name="keeper of leases"),
            senders=asyncio.create_task(components.answerer.run(), name="senders of answers"),
            sweeper=None
            if settings.task_token_sweep_interval <= 0
            else asyncio.create_task(
                components.answerer.sweep_forever(settings.task_token_sweep_interval),
                name="sweeper of unanswered tokens",
            ),
            reporter=None
            if components.reporter is None
            else asyncio.create_task(components.reporter.run(), name="sender of reports"),
            publisher=None
            if components.publisher is None
            else asyncio.create_task(components.publisher.run(), name="sender of events"),
            event_sweeper=None
            if components.publisher is None
            else asyncio.create_task(
                components.publisher.sweep_forever(), name="sweeper of unsent events"
            ),
            listener=None
            if components.listener is None
            else asyncio.create_task(components.listener.run(), name="listener of DRS events"),
        )
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
            replicas=list(self.built.state.members or ()),
        )

    async def main_loop(self) -> None:
        roots = self.roots.all() if self.roots is not None else []
        stop = asyncio.create_task(self._stop.wait(), name="stop flag")
        try:
            done, _ = await asyncio.wait([stop, *roots], return_when=asyncio.FIRST_COMPLETED)
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
        components, roots = self.components, self.roots
        if components is not None:
            components.dispatcher.stop()
        if roots is not None:
            roots.discoverer.cancel("shutdown: no more discovery")
            intake = [roots.discoverer, roots.dispatcher]
            if roots.listener is not None and components is not None:
                if components.listener is not None:
                    components.listener.stop()
                roots.listener.cancel("shutdown: no more DRS events")
                intake.append(roots.listener)
            # The dispatcher returns on its own once stopped; the keeper of leases keeps
            # renewing while the polls in flight finish.
            await asyncio.gather(*intake, return_exceptions=True)
        if components is not None:
            await self._finish_inflight(components.dispatcher)
        if components is not None and roots is not None:
            # Side by side: the queued answers and reports share the same half of the grace.
            await asyncio.gather(
                self._stop_answering(components.answerer, roots),
                self._stop_reporting(components, roots),
                self._stop_publishing(components, roots),
            )
        if roots is not None and roots.keeper is not None:
            roots.keeper.cancel("shutdown: polls done, releasing the lease")
            await asyncio.gather(roots.keeper, return_exceptions=True)
        if components is not None and components.leases is not None:
            # Best effort and bounded (one UpdateItem): without it a peer takes over
            # after one lease time anyway, and the stop must end before ECS's SIGKILL.
            try:
                async with asyncio.timeout(RELEASE_TIMEOUT):
                    await components.leases.release()
            except TimeoutError:
                log.warning("releasing the lease timed out; peers take over after the lease time")
        await self.close()
        log.info("drs-poller stopped", exit_code=self.exit_code)

    async def _finish_inflight(self, dispatcher: Dispatcher) -> None:
        """Give the batches in flight ``shutdown_grace`` seconds, then cancel them."""
        if not dispatcher.inflight:
            return
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

    async def _stop_answering(self, answerer: Answerer, roots: RootTasks) -> None:
        """Answers queued by the last polls get part of the grace period; what is left is
        answered after a restart (by the next poll, or by the sweep)."""
        await answerer.close(grace=self.settings.shutdown_grace / 2)
        tasks = [task for task in (roots.senders, roots.sweeper) if task is not None]
        for task in tasks:
            task.cancel("shutdown: no more task-token answers")
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stop_reporting(self, components: Components, roots: RootTasks) -> None:
        """Reports queued by the last polls get part of the grace period; the rest are
        not put (the item still holds everything: ``drs-poller report``)."""
        if components.reporter is None or roots.reporter is None:
            return
        await components.reporter.close(grace=self.settings.shutdown_grace / 2)
        roots.reporter.cancel("shutdown: no more reports")
        await asyncio.gather(roots.reporter, return_exceptions=True)

    async def _stop_publishing(self, components: Components, roots: RootTasks) -> None:
        """Events queued by the last polls get part of the grace period; the rest are sent
        by the sweep after a restart, or by a peer's (docs/events.md)."""
        if components.publisher is None:
            return
        await components.publisher.close(grace=self.settings.shutdown_grace / 2)
        tasks = [task for task in (roots.publisher, roots.event_sweeper) if task is not None]
        for task in tasks:
            task.cancel("shutdown: no more finalization events")
        await asyncio.gather(*tasks, return_exceptions=True)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
