"""``drs-poller demo``: the real daemon, on an embedded local stack, on a seeded workload.

moto server (DynamoDB, EC2) and the DRS double run on loopback; an initiator task
starts executions the way the API that starts drills and recoveries would; the
real :class:`~drs_poller.engine.daemon.Daemon` tracks them to a final status. Time
is compressed: DRS timelines and the daemon's intervals run ``speed`` times faster.

The demo only watches and reports. When an execution ends with another status than
CONTRACT §2 says it must, that is the daemon's finding to report, not to paper over.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aiohttp
from botocore.exceptions import ClientError

from drs_poller.clients.dynamodb import item_key, to_python, to_wire
from drs_poller.clients.paging import paginate
from drs_poller.clock import SystemClock
from drs_poller.core.models import FINAL_STATUSES, ExecutionStatus
from drs_poller.engine.daemon import Daemon
from drs_poller.localstack.initiator import execution_item
from drs_poller.localstack.scenarios import PRIMARY_REGION, Scenario, build_workload
from drs_poller.localstack.stack import LOOPBACK, LocalStack, local_stack
from drs_poller.localstack.table import create_table
from drs_poller.observability.logs import configure_logging
from drs_poller.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from types_aiobotocore_dynamodb.client import DynamoDBClient

EXIT_OK = 0
EXIT_UNEXPECTED_END = 1
EXIT_BAD_OPTIONS = 2

# An EC2 AMI moto accepts without registering one first.
DEMO_AMI = "ami-12c6146b"
DEMO_INSTANCE_TYPE = "t3.medium"
# How often the demo reads the table: progress is printed every PROGRESS_EVERY seconds,
# but the end is noticed within WATCH_TICK so the summary is not a second late.
WATCH_TICK = 0.25
PROGRESS_EVERY = 1.0
# "4x the longest scripted timeline, plus 30 s": generous, because a daemon that is
# merely slow is not what the deadline catches; one that never finishes is.
DEADLINE_FACTOR = 4.0
DEADLINE_SLACK = 30.0
# Below this a poll interval only burns CPU (and moto's) without showing anything new.
MIN_POLL_INTERVAL = 0.02
REAL_POST_LAUNCH_GRACE = 600.0  # the daemon's default, scaled like every other duration
METRIC_FAMILIES_SHOWN = ("drs_poller_executions_finalized_total", "drs_poller_polls_total")


@dataclass(frozen=True)
class DemoOptions:
    executions: int = 8
    speed: float = 120.0
    keep_running: bool = False
    seed: int = 7

    def problems(self) -> list[str]:
        problems = []
        if self.executions < 1:
            problems.append(f"--executions must be at least 1 (got {self.executions})")
        if not 1 <= self.speed <= 10_000:
            problems.append(f"--speed must be between 1 and 10000 (got {self.speed:g})")
        return problems


@dataclass(frozen=True)
class ExecutionReport:
    """How one execution ended (or where it stood when the demo stopped waiting)."""

    scenario: Scenario
    item: Mapping[str, Any] | None  # the last consistent read of its item; None: never written

    @property
    def status(self) -> str | None:
        status = None if self.item is None else self.item.get("Status")
        return None if status is None else str(status)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def as_expected(self) -> bool:
        return self.finished and self.status == self.scenario.expected_status

    @property
    def duration(self) -> float | None:
        """Demo seconds from StartTime to EndTime, once finished."""
        if self.item is None or "EndTime" not in self.item:
            return None
        return float(self.item["EndTime"]) - float(self.item["StartTime"])

    @property
    def polls(self) -> int:
        if self.item is None:
            return 0
        return sum(
            int(server.get("PollAttempts") or 0)
            for wave in self.item.get("Waves") or []
            for server in wave.get("Servers") or []
        )


@dataclass
class DemoResult:
    exit_code: int
    table_name: str
    region: str
    reports: list[ExecutionReport] = field(default_factory=list)
    daemon_exit_code: int | None = None


class Console:
    """Lines for the person watching. Resolves ``sys.stdout`` per line, so a capturing
    test (or a redirected stream) sees everything."""

    def __init__(self, started: float) -> None:
        self.started = started

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, text: str = "") -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def event(self, text: str) -> None:
        self.line(f"[{self.elapsed():5.1f} s] {text}")


def demo_settings(*, table_name: str, stack: LocalStack, speed: float, deadline: float) -> Settings:
    """The daemon's settings with every duration divided by ``speed``.

    ``deadline`` (demo seconds) keeps the maximum execution age beyond the demo's own
    patience, so an execution the daemon cannot finish shows up as unfinished, not
    as abandoned by a max-age that only the time compression made short.
    """

    def interval(real_seconds: float) -> float:
        return max(MIN_POLL_INTERVAL, real_seconds / speed)

    interval_started = interval(15)
    return load_settings(
        table_name=table_name,
        dynamodb_endpoint_url=stack.moto_url,
        ec2_endpoint_url=stack.moto_url,
        drs_endpoint_url=stack.drs_url,
        interval_pending=interval(45),
        interval_started=interval_started,
        interval_in_progress=interval(30),
        interval_post_launch=interval(30),
        discovery_interval=max(0.5, 30 / speed),
        post_launch_grace=REAL_POST_LAUNCH_GRACE / speed,
        overdue_after=1800 / speed,
        max_execution_age=max(43_200 / speed, 2 * deadline),
        heartbeat_interval=min(3600.0, max(1.0, 300 / speed)),
        # Coalescing polls early by more than half the shortest interval would poll
        # STARTED executions at twice their pace.
        coalesce_window=min(0.2, interval_started / 2),
        metrics_port=0,
        metrics_host=LOOPBACK,
        log_format="console",
        log_level="WARNING",
    )


class DemoInitiator:
    """Starts executions the way the API that starts drills and recoveries would.

    Each execution: start its first DRS jobs, then write the POLLING item. A later
    wave is started once the wave before it is final: its DRS job first, then its job
    ids go into the item with a path-level conditional UpdateItem, so nothing the
    daemon wrote is rewritten, and nothing is written once the execution left POLLING.
    """

    def __init__(
        self,
        *,
        dynamodb: DynamoDBClient,
        stack: LocalStack,
        table_name: str,
        instance_ids: Mapping[str, str],
        watch_interval: float,
        console: Console,
    ) -> None:
        self.dynamodb = dynamodb
        self.stack = stack
        self.table_name = table_name
        self.instance_ids = instance_ids
        self.watch_interval = watch_interval
        self.console = console

    async def run(self, scenarios: list[Scenario]) -> None:
        await asyncio.gather(*(self.start_execution(scenario) for scenario in scenarios))

    async def start_execution(self, scenario: Scenario) -> None:
        spec = scenario.spec
        await asyncio.sleep(max(0.0, spec.start_time - time.time()))
        for wave in scenario.waves:
            if wave.starts_with_execution:
                self.stack.drs.add_job(
                    wave.job_script(created_at=spec.start_time, instance_ids=self.instance_ids)
                )
        item = execution_item(spec)
        await self.dynamodb.put_item(
            TableName=self.table_name,
            Item={name: to_wire(value) for name, value in item.items()},
            ConditionExpression="attribute_not_exists(ExecutionId)",
        )
        for index in scenario.later_waves:
            if not await self._wait_for_final_wave(scenario, index - 1):
                return
            await self.start_wave(scenario, index)

    async def _wait_for_final_wave(self, scenario: Scenario, index: int) -> bool:
        while True:
            item = await self._read(scenario)
            if item is None or item.get("Status") != ExecutionStatus.POLLING:
                status = None if item is None else item.get("Status")
                self.console.event(
                    f"{scenario.execution_id} left POLLING ({status}) before wave "
                    f"{index + 2} was started; the initiator leaves it alone"
                )
                return False
            if item["Waves"][index].get("Status") in FINAL_STATUSES:
                return True
            await asyncio.sleep(self.watch_interval)

    async def start_wave(self, scenario: Scenario, index: int) -> None:
        wave = scenario.waves[index]
        started_at = time.time()
        self.stack.drs.add_job(
            wave.job_script(created_at=started_at, instance_ids=self.instance_ids)
        )
        assignments = [f"Waves[{index}].#status = :in_progress", f"Waves[{index}].StartTime = :now"]
        for position in range(len(wave.server_ids)):
            server = f"Waves[{index}].Servers[{position}]"
            assignments += [f"{server}.RecoveryJobId = :job", f"{server}.LaunchTime = :now"]
        try:
            await self.dynamodb.update_item(
                TableName=self.table_name,
                Key=_key(scenario),
                UpdateExpression="SET " + ", ".join(assignments),
                # Only while POLLING, and only once: a second start would re-point servers
                # the daemon may already be tracking.
                ConditionExpression=(
                    f"#status = :polling AND attribute_not_exists(Waves[{index}].Servers[0]"
                    ".RecoveryJobId)"
                ),
                ExpressionAttributeNames={"#status": "Status"},
                ExpressionAttributeValues={
                    ":polling": to_wire(ExecutionStatus.POLLING.value),
                    ":in_progress": to_wire("IN_PROGRESS"),
                    ":now": to_wire(Decimal(f"{started_at:.3f}")),
                    ":job": to_wire(wave.job_id),
                },
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            self.console.event(
                f"{scenario.execution_id}: wave {index + 1} not started (the item left POLLING "
                "or the wave was already started)"
            )
            return
        self.console.event(f"{scenario.execution_id}: wave {index + 1} started ({wave.job_id})")

    async def _read(self, scenario: Scenario) -> dict[str, Any] | None:
        result = await self.dynamodb.get_item(
            TableName=self.table_name, Key=_key(scenario), ConsistentRead=True
        )
        raw = result.get("Item")
        return to_python(raw) if raw else None


def _task_error(task: asyncio.Task[Any]) -> str | None:
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return None if error is None else repr(error)


def _key(scenario: Scenario) -> dict[str, Any]:
    return item_key((scenario.execution_id, scenario.spec.plan_id))


async def launch_instances(stack: LocalStack, scenarios: list[Scenario]) -> dict[str, str]:
    """Real EC2 instances in moto for every server DRS will launch, in its wave's region.

    Returns source server id -> instance id (the id doubles as the recovery instance
    id: both match ``^i-[0-9a-f]{8,}$`` and fit in 19 characters).
    """
    wanted: dict[str, list[str]] = {}
    for scenario in scenarios:
        for wave in scenario.waves:
            wanted.setdefault(wave.region, []).extend(wave.launching_server_ids)
    instance_ids: dict[str, str] = {}
    for region, server_ids in wanted.items():
        if not server_ids:
            continue
        async with stack.session(region).client("ec2", endpoint_url=stack.moto_url) as ec2:
            result = await ec2.run_instances(
                ImageId=DEMO_AMI,
                MinCount=len(server_ids),
                MaxCount=len(server_ids),
                InstanceType=DEMO_INSTANCE_TYPE,
            )
        launched = [instance["InstanceId"] for instance in result["Instances"]]
        instance_ids.update(zip(server_ids, launched, strict=True))
    return instance_ids


async def read_table(dynamodb: DynamoDBClient, table_name: str) -> dict[str, dict[str, Any]]:
    """Every item, by ExecutionId. A consistent Scan: the demo's own display only; the
    daemon itself never scans (CONTRACT §1)."""
    items: dict[str, dict[str, Any]] = {}

    async def fetch(request: dict[str, Any]) -> dict[str, Any]:
        return dict(await dynamodb.scan(**request))

    request = {"TableName": table_name, "ConsistentRead": True}
    async for page in paginate(
        fetch,
        request,
        what=f"Scan {table_name}",
        resume_with="ExclusiveStartKey",
        resume_from="LastEvaluatedKey",
    ):
        for raw in page.get("Items") or []:
            item = to_python(raw)
            items[str(item["ExecutionId"])] = item
    return items


def progress_line(scenarios: list[Scenario], items: Mapping[str, Mapping[str, Any]]) -> str:
    finished = 0
    phases: Counter[str] = Counter()
    for scenario in scenarios:
        item = items.get(scenario.execution_id)
        if item is None:
            phases["not started"] += 1
        elif item.get("Status") in FINAL_STATUSES:
            finished += 1
        else:
            # No Phase yet: written, but the daemon has not polled it.
            phases[str(item.get("Phase") or "awaiting first poll")] += 1
    shown = ", ".join(f"{phase} {count}" for phase, count in sorted(phases.items()))
    return f"{finished}/{len(scenarios)} finished" + (f" · phases: {shown}" if shown else "")


def summary_lines(reports: list[ExecutionReport], *, speed: float) -> list[str]:
    header = (
        "execution",
        "type",
        "region(s)",
        "waves/servers",
        "status",
        "expected",
        "duration",
        "polls",
        "ok",
        "scenario",
    )
    rows = [header]
    for report in reports:
        scenario = report.scenario
        duration = report.duration
        shown_duration = (
            "—" if duration is None else f"{duration:5.1f} s ≈ {duration * speed / 60:5.1f} min"
        )
        rows.append(
            (
                scenario.execution_id,
                scenario.execution_type,
                "+".join(scenario.regions),
                f"{len(scenario.waves)}/{scenario.server_count}",
                report.status or "(not written)",
                scenario.expected_status,
                shown_duration,
                str(report.polls),
                "✓" if report.as_expected else "✗",
                scenario.kind.value,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return [line.rstrip() for line in lines]


async def fetch_metric_lines(metrics_url: str) -> list[str]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"{metrics_url}/metrics") as response,
    ):
        response.raise_for_status()
        text = await response.text()
    return [
        line
        for line in text.splitlines()
        if line.startswith(METRIC_FAMILIES_SHOWN)
        and not line.startswith("#")
        # prometheus_client adds a *_created sample per counter: a timestamp, not a figure.
        and "_created" not in line.split("{", 1)[0]
    ]


def give_up_after(scenarios: list[Scenario], *, speed: float) -> float:
    """Demo seconds from now the demo waits for every execution to finish."""
    grace = REAL_POST_LAUNCH_GRACE / speed
    now = time.time()
    longest = max(
        scenario.spec.start_time - now + scenario.scripted_seconds(post_launch_grace=grace)
        for scenario in scenarios
    )
    return DEADLINE_FACTOR * longest + DEADLINE_SLACK


class DemoRun:
    """One run of the demo on a started stack and table."""

    def __init__(
        self,
        *,
        options: DemoOptions,
        stack: LocalStack,
        dynamodb: DynamoDBClient,
        table_name: str,
        console: Console,
        rng: random.Random,
    ) -> None:
        self.options = options
        self.stack = stack
        self.dynamodb = dynamodb
        self.table_name = table_name
        self.console = console
        self.rng = rng

    async def run(self) -> DemoResult:
        options = self.options
        speed = options.speed
        # One second of lead, so setup (EC2 instances, daemon start) does not eat into
        # the first executions' timelines.
        scenarios = build_workload(
            executions=options.executions, speed=speed, rng=self.rng, start_time=time.time() + 1
        )
        instance_ids = await launch_instances(self.stack, scenarios)
        deadline = give_up_after(scenarios, speed=speed)
        settings = demo_settings(
            table_name=self.table_name, stack=self.stack, speed=speed, deadline=deadline
        )
        self._describe_workload(scenarios, deadline=deadline)

        daemon = Daemon(settings, session=self.stack.session())
        daemon_task = asyncio.create_task(daemon.run(handle_signals=False), name="demo daemon")
        initiator = DemoInitiator(
            dynamodb=self.dynamodb,
            stack=self.stack,
            table_name=self.table_name,
            instance_ids=instance_ids,
            watch_interval=settings.interval_pending,
            console=self.console,
        )
        initiator_task = asyncio.create_task(initiator.run(scenarios), name="demo initiator")
        result = DemoResult(
            exit_code=EXIT_UNEXPECTED_END, table_name=self.table_name, region=self.stack.region
        )
        try:
            items = await self.watch(
                scenarios,
                deadline=self.console.elapsed() + deadline,
                daemon_task=daemon_task,
                initiator_task=initiator_task,
            )
            result.reports = [
                ExecutionReport(scenario, items.get(scenario.execution_id))
                for scenario in scenarios
            ]
            await self.report(result, daemon=daemon, daemon_task=daemon_task)
            if options.keep_running and not daemon_task.done():
                await self.keep_running(daemon)
        finally:
            initiator_task.cancel()
            # Its failure, if any, was reported by watch(); here it only has to be gone.
            await asyncio.gather(initiator_task, return_exceptions=True)
            daemon.request_stop("demo finished")
            result.daemon_exit_code = await self._daemon_exit_code(daemon_task)
        if result.daemon_exit_code != 0:
            result.exit_code = EXIT_UNEXPECTED_END
        return result

    async def _daemon_exit_code(self, daemon_task: asyncio.Task[int]) -> int:
        try:
            exit_code = await daemon_task
        except Exception as error:  # noqa: BLE001 - reported: this is what the demo is for
            self.console.line(f"the daemon failed: {error!r}")
            return EXIT_UNEXPECTED_END
        if exit_code != 0:
            self.console.line(f"the daemon exited with {exit_code}")
        return exit_code

    def _describe_workload(self, scenarios: list[Scenario], *, deadline: float) -> None:
        servers = sum(scenario.server_count for scenario in scenarios)
        self.console.line(
            f"drs-poller demo: {len(scenarios)} executions ({servers} servers), "
            f"speed x{self.options.speed:g}, seed {self.options.seed}, table {self.table_name}"
        )
        self.console.line(
            f"  moto (DynamoDB, EC2) {self.stack.moto_url} · DRS double {self.stack.drs_url} · "
            f"giving up after {deadline:.0f} s"
        )

    async def watch(
        self,
        scenarios: list[Scenario],
        *,
        deadline: float,
        daemon_task: asyncio.Task[int],
        initiator_task: asyncio.Task[None],
    ) -> dict[str, dict[str, Any]]:
        """Read the table until every execution is final, the deadline passes, or the
        daemon or the initiator stops; print progress about once a second."""
        last_progress = float("-inf")
        while True:
            items = await read_table(self.dynamodb, self.table_name)
            done = all(
                items.get(s.execution_id, {}).get("Status") in FINAL_STATUSES for s in scenarios
            )
            now = self.console.elapsed()
            if done or now - last_progress >= PROGRESS_EVERY:
                self.console.event(progress_line(scenarios, items))
                last_progress = now
            if done:
                return items
            if now >= deadline:
                self.console.event("deadline passed; not every execution finished")
                return items
            # The daemon never returns on its own; the initiator does, once everything
            # is started, and only its failure is worth stopping for.
            if daemon_task.done():
                why = _task_error(daemon_task) or f"exit code {daemon_task.result()}"
                self.console.event(f"the daemon stopped early: {why}")
                return items
            if initiator_task.done() and _task_error(initiator_task) is not None:
                self.console.event(f"the initiator failed: {_task_error(initiator_task)}")
                return items
            await asyncio.sleep(WATCH_TICK)

    async def report(
        self, result: DemoResult, *, daemon: Daemon, daemon_task: asyncio.Task[int]
    ) -> None:
        console = self.console
        console.line()
        for line in summary_lines(result.reports, speed=self.options.speed):
            console.line(line)
        console.line()
        drs = self.stack.drs
        by_operation = Counter(call.operation for call in drs.calls)
        shown = ", ".join(
            f"{operation} {count}" for operation, count in sorted(by_operation.items())
        )
        console.line(
            f"DRS calls: DescribeJobs {drs.count('DescribeJobs')} "
            f"(all operations {len(drs.calls)}: {shown or 'none'})"
        )
        if daemon.metrics_url is not None and not daemon_task.done():
            console.line(f"metrics: {daemon.metrics_url}/metrics")
            try:
                for line in await fetch_metric_lines(daemon.metrics_url):
                    console.line(f"  {line}")
            except (aiohttp.ClientError, TimeoutError) as error:
                console.line(f"  (could not read /metrics: {error!r})")
        unexpected = [report for report in result.reports if not report.as_expected]
        if unexpected:
            console.line()
            console.line("not as expected:")
            for report in unexpected:
                got = report.status or "never written"
                console.line(
                    f"  {report.scenario.execution_id} ({report.scenario.kind.value}): "
                    f"{got}, expected {report.scenario.expected_status}"
                )
        else:
            console.line(f"all {len(result.reports)} executions ended as expected")
        result.exit_code = EXIT_UNEXPECTED_END if unexpected else EXIT_OK

    async def keep_running(self, daemon: Daemon) -> None:
        self.console.line()
        self.console.line(
            f"keeping the stack and the daemon running (metrics {daemon.metrics_url}/metrics, "
            f"DynamoDB/EC2 {self.stack.moto_url}, DRS {self.stack.drs_url}); Ctrl-C to stop"
        )
        await wait_for_interrupt()
        self.console.line("stopping")


async def wait_for_interrupt() -> None:
    """Until SIGINT or SIGTERM (or until cancelled, where signals cannot be handled)."""
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, interrupted.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals
            continue
        installed.append(sig)
    try:
        await interrupted.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def execute_demo(options: DemoOptions, *, moto_url: str | None = None) -> DemoResult:
    """Run the demo and return how it went. ``moto_url`` reuses a running moto server
    (a test reads the table afterwards through it); otherwise one is started."""
    console = Console(started=time.monotonic())
    problems = options.problems()
    if problems:
        for problem in problems:
            console.line(f"drs-poller demo: {problem}")
        return DemoResult(exit_code=EXIT_BAD_OPTIONS, table_name="", region=PRIMARY_REGION)
    # The daemon's INFO lines would drown the progress; warnings and errors still show.
    configure_logging(fmt="console", level="WARNING")
    # A fresh name per run: moto keeps its state per process, and a reused moto server
    # may still hold an earlier run's table.
    table_name = f"drs-poller-demo-{uuid.uuid4().hex[:8]}"
    async with local_stack(clock=SystemClock(), region=PRIMARY_REGION, moto_url=moto_url) as stack:
        session = stack.session()
        async with session.client("dynamodb", endpoint_url=stack.moto_url) as dynamodb:
            await create_table(dynamodb, table_name)
            run = DemoRun(
                options=options,
                stack=stack,
                dynamodb=dynamodb,
                table_name=table_name,
                console=console,
                rng=random.Random(options.seed),  # noqa: S311 - a reproducible workload
            )
            try:
                return await run.run()
            except SettingsError as error:
                console.line(f"drs-poller demo: {error}")
                return DemoResult(
                    exit_code=EXIT_BAD_OPTIONS, table_name=table_name, region=stack.region
                )
            except ClientError as error:
                console.line(f"drs-poller demo: the local stack failed: {error}")
                return DemoResult(
                    exit_code=EXIT_UNEXPECTED_END, table_name=table_name, region=stack.region
                )


async def run_demo(*, executions: int, speed: float, keep_running: bool, seed: int) -> int:
    """``drs-poller demo``: 0 iff every execution ended with its expected status in time."""
    options = DemoOptions(executions=executions, speed=speed, keep_running=keep_running, seed=seed)
    result = await execute_demo(options)
    return result.exit_code


__all__ = [
    "DemoInitiator",
    "DemoOptions",
    "DemoResult",
    "ExecutionReport",
    "execute_demo",
    "run_demo",
]
