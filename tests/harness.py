"""The integration harness: a real moto server, the DRS simulator, a fresh table per test,
``World`` (which drives the real daemon components on a clock the test moves) and
``DaemonProcess`` (``drs-poller run`` as a real process). Tests import it as
``harness``; ``conftest.py`` only re-exports its fixtures."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import sys
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from moto.server import ThreadedMotoServer

from drs_poller.clients.dynamodb import to_python, to_wire, with_decimals
from drs_poller.clock import ManualClock, SystemClock
from drs_poller.engine.daemon import Daemon
from drs_poller.local.items import ExecutionSpec, ServerSpec, WaveSpec, execution_item
from drs_poller.local.stack import FAKE_CREDENTIALS, LOOPBACK, local_stack, warm_up_moto
from drs_poller.local.table import (
    DEFAULT_PROJECTION,
    create_table,
    lease_table_definition,
)
from drs_poller.observability.metrics import Metrics
from drs_poller.settings import load_settings
from drs_poller.simulator.timelines import (
    JobScript,
    RunSnapshot,
    ServerScript,
    ServerSnapshot,
    Snapshot,
)

if TYPE_CHECKING:
    from drs_poller.engine.components import Components

REGION = "us-east-1"
OTHER_REGION = "eu-west-1"


@pytest.fixture(scope="session")
def moto_url():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    warm_up_moto(url)  # the backends' first load is not any one test's to wait for
    yield url
    server.stop()


@pytest.fixture
def clock():
    return ManualClock(start=1_800_000_000.0)


_ids = itertools.count(1)


def job_id(n: int | None = None) -> str:
    return f"drsjob-{(n if n is not None else next(_ids)):017d}"


def server_id(n: int) -> str:
    return f"s-{n:017d}"


def launched(*, runs: tuple[str, ...] | None = None) -> ServerSnapshot:
    return ServerSnapshot(
        "LAUNCHED",
        None if runs is None else tuple(RunSnapshot(r, f"action-{i}") for i, r in enumerate(runs)),
    )


class Loops:
    """One daemon's root loops in a world. Until the test lets it (``held`` false), the
    dispatcher polls nothing: it turns and waits on the clock, as while its lease lapsed,
    so that a test moves time and discovers before the polls it then lets run."""

    def __init__(self, components: Components) -> None:
        self.components = components
        self.tasks: list[asyncio.Task[None]] = []
        self.held = True
        self.free = False  # start(): free for good
        may_poll = components.dispatcher.may_poll
        components.dispatcher.may_poll = lambda: not self.held and may_poll()


class World:
    """One test's world: a table, the DRS simulator, the initiator's writes, and daemons."""

    def __init__(self, *, stack: Any, clock: ManualClock, table: str, ddb: Any) -> None:
        self.stack = stack
        self.clock = clock
        self.table = table
        self.ddb = ddb
        self.daemons: list[Daemon] = []
        self._lease_tables: list[str] = []
        self._loops: dict[int, Loops] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def drs(self):
        return self.stack.drs

    # --- DRS ----------------------------------------------------------------------
    def job(
        self,
        servers: list[str],
        snapshots: list[tuple[float, str, dict[str, ServerSnapshot]] | Snapshot],
        *,
        region: str = REGION,
        is_drill: bool = True,
        job: str | None = None,
        ec2_ids: dict[str, str] | None = None,
        recovery_ids: dict[str, str] | None = None,
        unreported_instances: frozenset[str] = frozenset(),
        account: str | None = None,
    ) -> str:
        """Script a DRS job starting now: ``snapshots`` are (seconds from now, job status,
        {server: snapshot}), or Snapshot objects (for a job status deliberately outside the
        model); a server left out of a snapshot is PENDING. The job does not
        report the recovery instance of a server in ``unreported_instances``. ``account``:
        the AWS account the job runs in (None: the simulator's default account)."""
        jid = job or job_id()
        ec2_ids = ec2_ids or {}
        recovery_ids = {**ec2_ids, **(recovery_ids or {})}
        self.drs.add_job(
            JobScript(
                job_id=jid,
                region=region,
                is_drill=is_drill,
                created_at=self.clock.time(),
                **({"account_id": account} if account is not None else {}),
                servers=tuple(
                    ServerScript(
                        source_server_id=s,
                        recovery_instance_id=recovery_ids.get(s),
                        ec2_instance_id=ec2_ids.get(s),
                        job_reports_instance=s not in unreported_instances,
                    )
                    for s in servers
                ),
                timeline=tuple(
                    entry
                    if isinstance(entry, Snapshot)
                    else Snapshot(entry[0], entry[1], dict(entry[2]))
                    for entry in snapshots
                ),
            )
        )
        return jid

    async def ec2_instances(self, count: int, *, region: str = REGION) -> list[dict[str, Any]]:
        session = self.stack.session(region)
        async with session.client("ec2", endpoint_url=self.stack.moto_url) as ec2:
            result = await ec2.run_instances(
                ImageId="ami-12c6146b", MinCount=count, MaxCount=count, InstanceType="m5.large"
            )
        return result["Instances"]

    # --- the table ----------------------------------------------------------------
    async def put(self, item: dict[str, Any]) -> None:
        await self.ddb.put_item(
            TableName=self.table, Item={k: to_wire(with_decimals(v)) for k, v in item.items()}
        )

    async def put_spec(self, spec: ExecutionSpec) -> dict[str, Any]:
        item = execution_item(spec)
        await self.put(item)
        return item

    async def get(self, execution_id: str, plan_id: str = "plan-local") -> dict[str, Any]:
        result = await self.ddb.get_item(
            TableName=self.table,
            Key={"ExecutionId": {"S": execution_id}, "PlanId": {"S": plan_id}},
            ConsistentRead=True,
        )
        return to_python(result["Item"])

    async def update(
        self,
        execution_id: str,
        expression: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {}
        if names:
            kwargs["ExpressionAttributeNames"] = names
        await self.ddb.update_item(
            TableName=self.table,
            Key={"ExecutionId": {"S": execution_id}, "PlanId": {"S": "plan-local"}},
            UpdateExpression=expression,
            ExpressionAttributeValues={k: to_wire(v) for k, v in values.items()},
            **kwargs,
        )

    def spec(
        self,
        execution_id: str,
        waves: list[tuple[str, list[ServerSpec]]],
        *,
        execution_type: str | None = "DRILL",
        start_time: float | None = None,
    ) -> ExecutionSpec:
        return ExecutionSpec(
            execution_id=execution_id,
            execution_type=execution_type,
            start_time=self.clock.time() if start_time is None else start_time,
            waves=tuple(
                WaveSpec(name=f"wave-{i + 1}", region=region, servers=tuple(servers))
                for i, (region, servers) in enumerate(waves)
            ),
        )

    # --- the daemon -----------------------------------------------------------------
    async def lease_table(self) -> str:
        """A fresh replica lease table (deleted with the world)."""
        name = f"leases-{uuid.uuid4().hex[:12]}"
        await self.ddb.create_table(**lease_table_definition(name))
        self._lease_tables.append(name)
        return name

    async def daemon(self, *, clock: Any = None, **overrides: Any) -> Daemon:
        """A daemon's components, built as ``drs-poller run`` builds them, with its
        dispatcher's real loop running on the world's clock (held until :meth:`step`,
        :meth:`dispatch` or :meth:`start` lets it poll)."""
        settings = {
            "table_name": self.table,
            "dynamodb_endpoint_url": self.stack.moto_url,
            "ec2_endpoint_url": self.stack.moto_url,
            "drs_endpoint_url": self.stack.drs_url,
            "metrics_port": 0,
            "metrics_host": LOOPBACK,
            "coalesce_window": 0.0,
            "backoff_base": 0.001,
            "backoff_cap": 0.01,
            "max_retry_after": 0.0,
            **overrides,
        }
        daemon = Daemon(
            load_settings(**settings),
            session=self.stack.session(),
            clock=clock or self.clock,
            metrics=Metrics(),
            rng=random.Random(0),
        )
        components = await daemon.open()
        self.daemons.append(daemon)
        await daemon.check_index()  # as start-up does: the StatusIndex's projection
        # Not when the test runs the daemon itself in real time (on a SystemClock).
        if isinstance(self.clock, ManualClock) and not isinstance(daemon.clock, SystemClock):
            loops = Loops(components)
            self._loops[id(daemon)] = loops
            self._spawn(loops, components.dispatcher.run(), "dispatcher")
        return daemon

    def _spawn(self, loops: Loops, coroutine: Any, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        loops.tasks.append(task)
        self._tasks.append(task)

    async def start(self, daemon: Daemon) -> None:
        """Run all of the daemon's root loops, as ``startup()`` does (the discoverer, the
        keeper of leases, and the dispatcher, free to poll), on the world's clock:
        :meth:`run_for` then moves that clock."""
        loops = self._loops[id(daemon)]
        loops.held, loops.free = False, True
        components = daemon.components
        assert components is not None
        self._spawn(loops, components.discoverer.run(), "discoverer")
        if components.leases is not None:
            self._spawn(loops, components.leases.run(), "keeper of leases")
        components.state.wakeup.set()
        await self.settle()

    async def run_for(self, seconds: float) -> None:
        """Virtual time: move the world's clock ``seconds`` ahead, from one deadline of
        the loops to the next, each time only once every loop waits on the clock again
        and no poll is in flight (real I/O is never skipped)."""
        assert isinstance(self.clock, ManualClock)
        end = self.clock.monotonic() + seconds
        await self.settle()
        while True:
            deadline = self.clock.next_deadline()
            if deadline is None or deadline > end:
                self.clock.advance(max(0.0, end - self.clock.monotonic()))
                await self.settle()
                return
            self.clock.advance(max(0.0, deadline - self.clock.monotonic()))
            await self.settle()

    async def settle(self, *, within: float = 120.0) -> None:
        """Wait (real time) until every running loop waits on the clock and no batch of
        polls is in flight; a loop that crashed raises here."""

        async def quiet() -> None:
            while True:
                await self.clock.until_parked(len(self._tasks))
                inflight = {
                    task
                    for loops in self._loops.values()
                    for task in loops.components.dispatcher.inflight
                }
                if inflight:
                    await asyncio.wait(inflight)
                    continue
                await asyncio.sleep(0)  # done-callbacks run; then look again
                if self.clock.parked() >= len(self._tasks) and not any(
                    loops.components.dispatcher.inflight for loops in self._loops.values()
                ):
                    return

        waiter = asyncio.ensure_future(asyncio.wait_for(quiet(), within))
        await asyncio.wait({waiter, *self._tasks}, return_when=asyncio.FIRST_COMPLETED)
        crashed = [task for task in self._tasks if task.done()]
        if crashed:
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
            raise AssertionError(f"a root loop ended: {crashed[0]!r}") from (
                None if crashed[0].cancelled() else crashed[0].exception()
            )
        await waiter

    async def dispatch(self, daemon: Daemon) -> int:
        """Let the daemon's Dispatcher (its real loop) poll what is due now, and wait
        until those polls are done. Returns how many executions it polled."""
        loops = self._loops[id(daemon)]
        dispatcher = loops.components.dispatcher
        before = dispatcher.polled
        loops.held = False
        loops.components.state.wakeup.set()
        try:
            await self.settle()
        finally:
            loops.held = not loops.free
        return dispatcher.polled - before

    async def step(self, daemon: Daemon, seconds: float = 0.0, *, discover: bool = True) -> int:
        """Advance the clock, discover, and let the dispatcher poll whatever is due.
        Returns executions polled."""
        if seconds:
            self.clock.advance(seconds)
        if discover:
            await daemon.discover_once()
        return await self.dispatch(daemon)

    async def run_until_final(
        self, daemon: Daemon, execution_id: str, *, step: float = 5.0, limit: float = 4 * 3600
    ) -> dict[str, Any]:
        elapsed = 0.0
        while elapsed <= limit:
            item = await self.get(execution_id)
            if item["Status"] != "POLLING":
                return item
            await self.step(daemon, step)
            elapsed += step
        raise AssertionError(f"{execution_id} still POLLING after {limit} s: {item}")

    @staticmethod
    async def sleep(seconds: float) -> None:
        """Real time, only for tests that run the daemon as a process."""
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        for loops in self._loops.values():
            loops.components.dispatcher.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for daemon in self.daemons:
            await daemon.close()
        for name in self._lease_tables:
            await self.ddb.delete_table(TableName=name)


@pytest.fixture
def projection() -> str:
    """What the world's StatusIndex projects: init-table's default unless a test
    parametrizes ``projection`` (ALL, KEYS_ONLY, INCLUDE)."""
    return DEFAULT_PROJECTION


@pytest.fixture
async def world(clock, moto_url, projection):
    async with local_stack(clock=clock, region=REGION, moto_url=moto_url) as stack:
        session = stack.session()
        async with session.client("dynamodb", endpoint_url=moto_url) as ddb:
            table = f"executions-{uuid.uuid4().hex[:12]}"
            await create_table(ddb, table, projection=projection)
            w = World(stack=stack, clock=clock, table=table, ddb=ddb)
            try:
                yield w
            finally:
                await w.close()
                await ddb.delete_table(TableName=table)


def servers_of(item: dict[str, Any], wave: int = 0) -> list[dict[str, Any]]:
    return item["Waves"][wave]["Servers"]


def metric(daemon: Daemon, name: str, labels: dict[str, str] | None = None) -> float:
    value = daemon.metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


__all__ = [
    "FAKE_CREDENTIALS",
    "OTHER_REGION",
    "REGION",
    "Decimal",
    "World",
    "job_id",
    "launched",
    "metric",
    "server_id",
    "servers_of",
]


class DaemonProcess:
    """``drs-poller run`` as a real process (``python -m drs_poller run``), its JSON log
    lines collected as they arrive."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.proc: Any = None
        self._reader: Any = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "drs_poller",
            "run",
            env={**os.environ, **self.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            text = raw.decode().rstrip("\n")
            self.raw.append(text)
            try:
                self.lines.append(json.loads(text))
            except ValueError:
                self.lines.append({"event": "<not json>", "text": text})

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]

    async def wait_for(self, name: str, *, within: float = 30.0) -> dict[str, Any]:
        async def poll() -> dict[str, Any]:
            while not self.events(name):
                if self.proc.returncode is not None:
                    raise AssertionError(f"daemon exited before {name!r}:\n" + "\n".join(self.raw))
                await asyncio.sleep(0.02)
            return self.events(name)[0]

        return await asyncio.wait_for(poll(), within)

    async def stop(self, sig: int, *, within: float = 30.0) -> int:
        self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            await self.kill()
            raise AssertionError(
                f"still running {within} s after signal {sig}; its last lines:\n"
                + "\n".join(self.raw[-30:])
            ) from None
        await self._reader
        return code

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def daemon_env(*, stack: Any, table: str, **settings: Any) -> dict[str, str]:
    env = {
        "AWS_REGION": stack.region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "DRS_POLLER_TABLE_NAME": table,
        "DRS_POLLER_DYNAMODB_ENDPOINT_URL": stack.moto_url,
        "DRS_POLLER_EC2_ENDPOINT_URL": stack.moto_url,
        "DRS_POLLER_DRS_ENDPOINT_URL": stack.drs_url,
        "DRS_POLLER_METRICS_HOST": LOOPBACK,
        "DRS_POLLER_METRICS_PORT": "0",
        "DRS_POLLER_LOG_FORMAT": "json",
    }
    env.update({f"DRS_POLLER_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@pytest.fixture
async def live_world(moto_url):
    """A world on the real clock, for tests that run the daemon as a process."""
    clock = SystemClock()
    async with local_stack(clock=clock, region=REGION, moto_url=moto_url) as stack:
        session = stack.session()
        async with session.client("dynamodb", endpoint_url=moto_url) as ddb:
            table = f"executions-{uuid.uuid4().hex[:12]}"
            await create_table(ddb, table)
            w = World(stack=stack, clock=clock, table=table, ddb=ddb)  # type: ignore[arg-type]
            try:
                yield w
            finally:
                await w.close()
                await ddb.delete_table(TableName=table)


async def replica_turn(world: Any, *daemons: Any, seconds: float = 0.0) -> None:
    """Move time, then let each replica renew, discover and poll, as its root tasks would."""
    if seconds:
        world.clock.advance(seconds)
    for daemon in daemons:
        await daemon.renew_leases()
    for daemon in daemons:
        await daemon.discover_once()
        await world.dispatch(daemon)


def owned_executions(daemon: Any) -> set[str]:
    """The execution ids a replica tracks (owns) now."""
    return {tracked.execution_id for tracked in daemon.state.tracked.values()}
