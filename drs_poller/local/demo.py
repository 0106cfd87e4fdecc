"""``drs-poller demo``: the real daemon on an embedded local stack, on a seeded workload.

Everything ``docker compose`` runs as services, in one process on loopback: moto
server (DynamoDB, EC2, SQS, EventBridge), the DRS simulator (``simulate``'s code, recovery instances
created in moto), ``init-table``'s code, ``initiate``'s code (StartRecovery, then the
POLLING item), and the real :class:`~drs_poller.engine.daemon.Daemon`. Time is
compressed: DRS durations and the daemon's intervals run ``speed`` times faster.

A second AWS account (:data:`~drs_poller.local.scenarios.SECOND_ACCOUNT`): two of the
mix's executions have waves there (``AccountId``). The initiator starts their jobs with
credentials assumed into that account through moto's STS; the simulator tells the
accounts apart by the access key ids (moto's ``GetCallerIdentity``) and creates their
recovery instances in that account's EC2; the daemon reaches it through its
``account_role_name`` role, assumed at ``sts_endpoint_url`` (moto).

DRS events (docs/events.md): the simulator puts a "DRS Source Server Launch Result" on
moto's EventBridge when a launch ends; a rule sends it to the queue the daemon listens to
(``local/events.py`` wires them), and the live view counts what the daemon received. The
finalization events the daemon puts on the demo's bus are read back and printed at the end.

The demo only watches and reports. When an execution ends with another status than
contract §2 says it must, that is the daemon's finding to report, not to paper over.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from drs_poller.clients.dynamodb import to_python
from drs_poller.clients.paging import paginate
from drs_poller.clock import SystemClock
from drs_poller.core.models import FINAL_STATUSES
from drs_poller.core.report import as_of_time, build_report
from drs_poller.core.report_html import render_html
from drs_poller.engine.daemon import Daemon
from drs_poller.local.events import (
    DEMO_EVENT_BUS,
    DemoEvents,
    received_finalizations,
    unwire_events,
    wire_events,
)
from drs_poller.local.initiate import Initiator, NotEnoughSourceServers
from drs_poller.local.scenarios import (
    PRIMARY_REGION,
    SECOND_ACCOUNT,
    ExecutionPlan,
    plan_workload,
)
from drs_poller.local.stack import LOOPBACK, LocalStack, local_stack, moto_server
from drs_poller.local.table import init_tables
from drs_poller.local.view import LiveView, build_rows
from drs_poller.observability.logs import configure_logging
from drs_poller.settings import Settings, SettingsError, load_settings
from drs_poller.simulator.instances import Ec2Instances
from drs_poller.simulator.standalone import SimulatorOptions, build_simulator

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from types_aiobotocore_dynamodb.client import DynamoDBClient

    from drs_poller.simulator.service import DrsSimulator

EXIT_OK = 0
EXIT_UNEXPECTED_END = 1
EXIT_BAD_OPTIONS = 2

DEFAULT_SPEED = 60.0
# How often the demo reads the table and redraws.
WATCH_TICK = 0.25
# Patience: the longest real time an execution may need (two sequential waves of a
# recovery with actions, plus the start spread), times a factor, plus slack. Generous,
# because a daemon that is merely slow is not what the deadline catches.
REAL_LONGEST_EXECUTION = 2 * (13.5 * 60 + 30 + 6 * 60 + 10 * 60) + 120
DEADLINE_FACTOR = 3.0
DEADLINE_SLACK = 30.0
# Below this a poll interval only burns CPU (and moto's) without showing anything new.
MIN_POLL_INTERVAL = 0.02
REAL_POST_LAUNCH_GRACE = 600.0  # the daemon's default, scaled like every other duration
# The daemon's default stall bounds, scaled too (the job-log check interval is not: it has
# a floor of 30 s, and the log is read at every status change anyway).
REAL_STALL_BOUND = 1800.0
# The simulator's inventory: enough servers of each behaviour that concurrent
# executions never have to share one (sharing would only make them wait: one
# active job per source server).
SOURCE_SERVERS_PER_EXECUTION = 8
MIN_SOURCE_SERVERS = 64
METRIC_FAMILIES_SHOWN = ("drs_poller_executions_finalized_total", "drs_poller_polls_total")
# The role the daemon assumes in the second account (the setting's default, named here:
# moto's STS does not require it to exist).
DAEMON_ROLE_NAME = "drs-poller-member"


@dataclass(frozen=True)
class DemoOptions:
    executions: int = 8
    speed: float = DEFAULT_SPEED
    keep_running: bool = False
    seed: int = 7
    tty: bool | None = None  # None: ask stdout
    reports: Path | None = None  # write each execution's HTML drill report here

    def problems(self) -> list[str]:
        problems = []
        if not 1 <= self.executions <= 500:
            problems.append(f"--executions must be between 1 and 500 (got {self.executions})")
        if not 1 <= self.speed <= 10_000:
            problems.append(f"--speed must be between 1 and 10000 (got {self.speed:g})")
        return problems


@dataclass(frozen=True)
class ExecutionReport:
    """How one execution ended (or where it stood when the demo stopped waiting)."""

    plan: ExecutionPlan
    item: Mapping[str, Any] | None  # the last consistent read of its item; None: never written
    drs_calls: int = 0

    @property
    def status(self) -> str | None:
        status = None if self.item is None else self.item.get("Status")
        return None if status is None else str(status)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def as_expected(self) -> bool:
        return self.finished and self.status == self.plan.expected_status

    @property
    def duration(self) -> float | None:
        """Demo seconds from StartTime to EndTime, once finished."""
        if self.item is None or "EndTime" not in self.item:
            return None
        return float(self.item["EndTime"]) - float(self.item["StartTime"])

    def figure(self, name: str) -> float | None:
        """The execution's measured ``RecoveryTimeSeconds`` / ``RecoveryPointSeconds``
        (issue 13: the last server up from its start, the largest data-loss window),
        written when it finished."""
        value = None if self.item is None else self.item.get(name)
        return None if value is None else float(value)

    @property
    def polls(self) -> int:
        if self.item is None:
            return 0
        return sum(
            int(server.get("PollAttempts") or 0)
            for wave in self.item.get("Waves") or []
            for server in wave.get("Servers") or []
        )

    @property
    def job_ids(self) -> set[str]:
        if self.item is None:
            return set()
        return {
            str(server["RecoveryJobId"])
            for wave in self.item.get("Waves") or []
            for server in wave.get("Servers") or []
            if server.get("RecoveryJobId")
        }


@dataclass
class DemoResult:
    exit_code: int
    table_name: str
    region: str
    reports: list[ExecutionReport] = field(default_factory=list)
    daemon_exit_code: int | None = None
    metrics_url: str | None = None
    report_files: list[Path] = field(default_factory=list)


def demo_settings(
    *,
    table_name: str,
    stack: LocalStack,
    speed: float,
    deadline: float,
    events: DemoEvents | None = None,
) -> Settings:
    """The daemon's settings with every duration divided by ``speed``.

    ``deadline`` (demo seconds) keeps the maximum execution age beyond the demo's own
    patience, so an execution the daemon cannot finish shows up as unfinished, not
    as abandoned by a max-age that only the time compression made short.
    """

    def interval(real_seconds: float) -> float:
        return max(MIN_POLL_INTERVAL, real_seconds / speed)

    interval_started = interval(15)
    wiring: dict[str, Any] = {}
    if events is not None:
        wiring = {
            "events_queue_url": events.queue_url,
            "sqs_endpoint_url": stack.moto_url,
            # Events out: finalization events on the demo's bus, which a rule sends to
            # the queue the demo prints them from at the end.
            "event_bus": events.bus,
            "events_endpoint_url": stack.moto_url,
        }
    return load_settings(
        **wiring,
        table_name=table_name,
        dynamodb_endpoint_url=stack.moto_url,
        ec2_endpoint_url=stack.moto_url,
        drs_endpoint_url=stack.drs_url,
        # The second account: its role assumed through moto's STS.
        account_role_name=DAEMON_ROLE_NAME,
        sts_endpoint_url=stack.moto_url,
        interval_pending=interval(45),
        interval_started=interval_started,
        interval_in_progress=interval(30),
        interval_post_launch=interval(30),
        discovery_interval=max(0.5, 30 / speed),
        full_discovery_interval=max(5.0, 300 / speed),
        post_launch_grace=REAL_POST_LAUNCH_GRACE / speed,
        stall_snapshot_seconds=REAL_STALL_BOUND / speed,
        stall_conversion_seconds=REAL_STALL_BOUND / speed,
        stall_launch_seconds=REAL_STALL_BOUND / speed,
        stall_post_launch_actions_seconds=REAL_STALL_BOUND / speed,
        overdue_after=1800 / speed,
        max_execution_age=max(43_200 / speed, 2 * deadline),
        heartbeat_interval=min(3600.0, max(1.0, 900 / speed)),
        # Coalescing polls early by more than half the shortest interval would poll
        # STARTED executions at twice their pace.
        coalesce_window=min(0.2, interval_started / 2),
        metrics_port=0,
        metrics_host=LOOPBACK,
        log_format="console",
        # Overdue warnings are expected (a three-wave recovery outlasts OVERDUE_AFTER, as it
        # would for real) and log lines would tear the live view; errors still show.
        log_level="ERROR",
    )


def _task_error(task: asyncio.Task[Any]) -> str | None:
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return None if error is None else repr(error)


async def read_table(dynamodb: DynamoDBClient, table_name: str) -> dict[str, dict[str, Any]]:
    """Every item, by ExecutionId. A consistent Scan: the demo's own display only; the
    daemon itself never scans (contract §1)."""
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


def drs_calls_per_execution(
    simulator: DrsSimulator, reports_jobs: Mapping[str, set[str]]
) -> dict[str, int]:
    """Calls that asked about each execution's jobs; a batched call counts for each one."""
    counts = dict.fromkeys(reports_jobs, 0)
    for call in simulator.calls:
        asked = set(call.job_ids)
        if not asked:
            continue
        for execution_id, jobs in reports_jobs.items():
            if asked & jobs:
                counts[execution_id] += 1
    return counts


def summary_lines(reports: list[ExecutionReport], *, speed: float) -> list[str]:
    header = (
        "execution",
        "type",
        "region(s)",
        "waves/servers",
        "status",
        "expected",
        "duration",
        "RTO",
        "RPO",
        "polls",
        "DRS calls",
        "ok",
        "scenario",
    )
    rows = [header]
    for report in reports:
        plan = report.plan
        duration = report.duration
        shown_duration = (
            "—" if duration is None else f"{duration:5.1f} s ≈ {duration * speed / 60:5.1f} min"
        )
        rto, rpo = report.figure("RecoveryTimeSeconds"), report.figure("RecoveryPointSeconds")
        rows.append(
            (
                plan.execution_id,
                plan.execution_type,
                "+".join(plan.places),
                f"{len(plan.waves)}/{plan.server_count}",
                report.status or "(not written)",
                plan.expected_status,
                shown_duration,
                # The recovery time is compressed like every duration; the data-loss window
                # is the simulator's replication lag, which is not (it is not a phase).
                "—" if rto is None else f"{rto:.0f} s ≈ {rto * speed / 60:.1f} min",
                "—" if rpo is None else f"{rpo:.0f} s",
                str(report.polls),
                str(report.drs_calls),
                "✓" if report.as_expected else "✗",
                plan.kind.value,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return [line.rstrip() for line in lines]


def evidence_note(*, speed: float) -> str:
    """What the RTO and RPO columns are, and how coarse they are at this speed."""
    return (
        "RTO: the last server up from the execution's start; RPO: the largest data-loss"
        " window (the simulator's replication lag, not compressed). Both are the item's"
        f" whole demo seconds (issue 13); at --speed {speed:g} one demo second stands for"
        f" {speed / 60:g} real minute(s)."
    )


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


def write_reports(folder: Path, items: list[Mapping[str, Any]], *, now: float) -> list[Path]:
    """Each item's HTML drill report (docs/report.md) as ``<folder>/<ExecutionId>.html``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for item in items:
        name = str(item.get("ExecutionId") or "unnamed").replace("/", "_")
        path = folder / f"{name}.html"
        path.write_text(
            render_html(build_report(item, as_of=as_of_time(item, now=now))), encoding="utf-8"
        )
        written.append(path)
    return written


def give_up_after(*, speed: float) -> float:
    """Demo seconds the demo waits for every execution to finish."""
    return DEADLINE_FACTOR * REAL_LONGEST_EXECUTION / speed + DEADLINE_SLACK


class DemoRun:
    """One run of the demo on a started stack and table."""

    def __init__(
        self,
        *,
        options: DemoOptions,
        stack: LocalStack,
        dynamodb: DynamoDBClient,
        table_name: str,
        view: LiveView,
        events: DemoEvents | None = None,
    ) -> None:
        self.events = events
        self.options = options
        self.stack = stack
        self.dynamodb = dynamodb
        self.table_name = table_name
        self.view = view

    async def run(self) -> DemoResult:
        options = self.options
        speed = options.speed
        rng = random.Random(options.seed)  # noqa: S311 - a reproducible workload
        plans = plan_workload(executions=options.executions, rng=rng, second_account=SECOND_ACCOUNT)
        deadline = give_up_after(speed=speed)
        settings = demo_settings(
            table_name=self.table_name,
            stack=self.stack,
            speed=speed,
            deadline=deadline,
            events=self.events,
        )
        self._describe_workload(plans, deadline=deadline)

        daemon = Daemon(settings, session=self.stack.session())
        daemon_task = asyncio.create_task(daemon.run(handle_signals=False), name="demo daemon")
        result = DemoResult(
            exit_code=EXIT_UNEXPECTED_END, table_name=self.table_name, region=self.stack.region
        )
        async with Initiator(
            session=self.stack.session(),
            drs_endpoint_url=self.stack.drs_url,
            dynamodb=self.dynamodb,
            table_name=self.table_name,
            speed=speed,
            report=self.view.event,
            watch_interval=settings.interval_pending,
            sts_endpoint_url=self.stack.moto_url,
        ) as initiator:
            # Half a second of lead, so the daemon's start does not eat into the first
            # executions' timelines.
            initiator_task = asyncio.create_task(
                initiator.run(plans, started_at=time.time() + 0.5), name="demo initiator"
            )
            try:
                items = await self.watch(
                    plans,
                    deadline=self.view.elapsed() + deadline,
                    daemon=daemon,
                    daemon_task=daemon_task,
                    initiator_task=initiator_task,
                )
                self.view.finish()
                reports = [ExecutionReport(plan, items.get(plan.execution_id)) for plan in plans]
                calls = drs_calls_per_execution(
                    self.stack.drs, {r.plan.execution_id: r.job_ids for r in reports}
                )
                result.reports = [
                    ExecutionReport(r.plan, r.item, calls[r.plan.execution_id]) for r in reports
                ]
                result.metrics_url = daemon.metrics_url
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
            self.view.line(f"the daemon failed: {error!r}")
            return EXIT_UNEXPECTED_END
        if exit_code != 0:
            self.view.line(f"the daemon exited with {exit_code}")
        return exit_code

    def _describe_workload(self, plans: list[ExecutionPlan], *, deadline: float) -> None:
        servers = sum(plan.server_count for plan in plans)
        self.view.line(
            f"drs-poller demo: {len(plans)} executions ({servers} servers), "
            f"speed x{self.options.speed:g}, seed {self.options.seed}, table {self.table_name}"
        )
        self.view.line(
            f"  moto (DynamoDB, EC2, STS) {self.stack.moto_url} · DRS simulator "
            f"{self.stack.drs_url} · giving up after {deadline:.0f} s"
        )
        members = sorted(
            {wave.account_id for plan in plans for wave in plan.waves if wave.account_id}
        )
        if members:
            self.view.line(
                f"  other accounts: {', '.join(members)} (roles assumed through moto's STS: "
                f"the initiator's to start jobs, the daemon's {DAEMON_ROLE_NAME} to read them)"
            )

    async def watch(
        self,
        plans: list[ExecutionPlan],
        *,
        deadline: float,
        daemon: Daemon,
        daemon_task: asyncio.Task[int],
        initiator_task: asyncio.Task[None],
    ) -> dict[str, dict[str, Any]]:
        """Read the table until every execution is final, the deadline passes, or the
        daemon or the initiator stops; redraw the live view on every read."""
        while True:
            items = await read_table(self.dynamodb, self.table_name)
            self.view.note = events_note(daemon)
            done = all(items.get(p.execution_id, {}).get("Status") in FINAL_STATUSES for p in plans)
            self.view.update(build_rows(plans, items, now=time.time()), force=done)
            if done:
                return items
            if self.view.elapsed() >= deadline:
                self.view.event("deadline passed; not every execution finished")
                return items
            # The daemon never returns on its own; the initiator does, once everything
            # is started, and only its failure is worth stopping for.
            if daemon_task.done():
                why = _task_error(daemon_task) or f"exit code {daemon_task.result()}"
                self.view.event(f"the daemon stopped early: {why}")
                return items
            if initiator_task.done() and _task_error(initiator_task) is not None:
                self.view.event(f"the initiator failed: {_task_error(initiator_task)}")
                self.view.update(build_rows(plans, items, now=time.time()), force=True)
                return items
            await asyncio.sleep(WATCH_TICK)

    async def report(
        self, result: DemoResult, *, daemon: Daemon, daemon_task: asyncio.Task[int]
    ) -> None:
        view = self.view
        view.line()
        for line in summary_lines(result.reports, speed=self.options.speed):
            view.line(line)
        view.line(evidence_note(speed=self.options.speed))
        view.line()
        drs = self.stack.drs
        by_operation: dict[str, int] = {}
        for call in drs.calls:
            by_operation[call.operation] = by_operation.get(call.operation, 0) + 1
        shown = ", ".join(f"{op} {count}" for op, count in sorted(by_operation.items()))
        view.line(
            f"DRS calls: DescribeJobs {drs.count('DescribeJobs')} "
            f"(all operations {len(drs.calls)}: {shown or 'none'})"
        )
        await self._report_events(daemon)
        if daemon.metrics_url is not None and not daemon_task.done():
            view.line(f"metrics were served at {daemon.metrics_url}/metrics")
            try:
                for line in await fetch_metric_lines(daemon.metrics_url):
                    view.line(f"  {line}")
            except (aiohttp.ClientError, TimeoutError) as error:
                view.line(f"  (could not read /metrics: {error!r})")
        self._write_reports(result)
        unexpected = [report for report in result.reports if not report.as_expected]
        if unexpected:
            view.line()
            view.line("not as expected:")
            for report in unexpected:
                got = report.status or "never written"
                view.line(
                    f"  {report.plan.execution_id} ({report.plan.kind.value}): "
                    f"{got}, expected {report.plan.expected_status}"
                )
        else:
            view.line(f"all {len(result.reports)} executions ended as expected")
        result.exit_code = EXIT_UNEXPECTED_END if unexpected else EXIT_OK

    async def _report_events(self, daemon: Daemon) -> None:
        """What came in (DRS events) and what went out (finalization events)."""
        if self.events is None:
            return
        view = self.view
        publisher = self.stack.events
        published = publisher.published if publisher is not None else 0
        view.line(f"DRS events: {published} published by the simulator; {events_note(daemon)}")
        finalizations = await received_finalizations(self.stack.moto_url, self.events)
        view.line(
            f"finalization events received from bus {self.events.bus}: {len(finalizations)}"
            + ("" if finalizations else " (the daemon puts none without DRS_POLLER_EVENT_BUS)")
        )
        for event in finalizations:
            view.line(f"  {event.line()}")

    def _write_reports(self, result: DemoResult) -> None:
        folder = self.options.reports
        if folder is None:
            return
        items = [report.item for report in result.reports if report.item is not None]
        try:
            written = write_reports(folder, items, now=time.time())
        except OSError as error:
            self.view.line(f"drill reports: could not write to {folder}: {error}")
            return
        result.report_files = written
        self.view.line(
            f"drill reports: {len(written)} HTML files in {folder.resolve()}"
            " (drs-poller report EXECUTION_ID makes one from the table too)"
        )

    async def keep_running(self, daemon: Daemon) -> None:
        self.view.line()
        self.view.line(
            f"keeping the stack and the daemon running (metrics {daemon.metrics_url}/metrics, "
            f"DynamoDB/EC2 {self.stack.moto_url}, DRS {self.stack.drs_url}); Ctrl-C to stop"
        )
        await wait_for_interrupt()
        self.view.line("stopping")


def events_note(daemon: Daemon) -> str:
    """One line on the DRS events the daemon received (empty without a listener)."""
    listener = daemon.components.listener if daemon.components is not None else None
    if listener is None:
        return ""
    metrics = daemon.metrics

    def total(counter: Any) -> int:
        return int(
            sum(
                sample.value
                for family in counter.collect()
                for sample in family.samples
                if sample.name.endswith("_total")
            )
        )

    note = (
        f"DRS events in: {total(metrics.events_received)} received, "
        f"{total(metrics.events_hinted)} polls pulled forward, "
        f"{total(metrics.events_discarded)} discarded"
    )
    last = listener.last
    if last is not None:
        named = last.source_servers[0] if last.source_servers else (last.job_id or "-")
        region = last.server_regions[0] if last.server_regions else last.region
        note += f" · last: {last.state or last.detail_type} {named} ({region})"
    return note


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
    view = LiveView(speed=options.speed, started=time.monotonic(), tty=options.tty)
    problems = options.problems()
    if problems:
        for problem in problems:
            view.line(f"drs-poller demo: {problem}")
        return DemoResult(exit_code=EXIT_BAD_OPTIONS, table_name="", region=PRIMARY_REGION)
    # The daemon's INFO lines would drown the live view; errors still show.
    configure_logging(fmt="console", level="ERROR")
    # A fresh name per run: moto keeps its state per process, and a reused moto server
    # may still hold an earlier run's table.
    table_name = f"drs-poller-demo-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack_scope:
        if moto_url is None:
            moto_url = await stack_scope.enter_async_context(moto_server())
        # The simulator exactly as `drs-poller simulate` builds it, instances in moto's EC2.
        simulator = build_simulator(
            SimulatorOptions(
                speed=options.speed,
                seed=options.seed,
                source_servers=max(
                    MIN_SOURCE_SERVERS, SOURCE_SERVERS_PER_EXECUTION * options.executions
                ),
            ),
            clock=SystemClock(),
            instances=Ec2Instances(moto_url),
        )
        stack = await stack_scope.enter_async_context(
            local_stack(
                clock=simulator.clock,
                region=PRIMARY_REGION,
                moto_url=moto_url,
                simulator=simulator,
                events=True,
            )
        )
        session = stack.session()
        dynamodb = await stack_scope.enter_async_context(
            session.client("dynamodb", endpoint_url=stack.moto_url)
        )
        await init_tables(dynamodb, table=table_name)  # what `drs-poller init-table` does
        events = await wire_events(stack.moto_url, region=PRIMARY_REGION)
        stack_scope.push_async_callback(unwire_events, stack.moto_url, events)
        run = DemoRun(
            options=options,
            stack=stack,
            dynamodb=dynamodb,
            table_name=table_name,
            view=view,
            events=events,
        )
        try:
            return await run.run()
        except SettingsError as error:
            view.line(f"drs-poller demo: {error}")
            return DemoResult(
                exit_code=EXIT_BAD_OPTIONS, table_name=table_name, region=stack.region
            )
        except (ClientError, BotoCoreError, NotEnoughSourceServers) as error:
            view.line(f"drs-poller demo: the local stack failed: {error}")
            return DemoResult(
                exit_code=EXIT_UNEXPECTED_END, table_name=table_name, region=stack.region
            )
    raise AssertionError("unreachable")  # pragma: no cover - the block always returns


async def run_demo(
    *,
    executions: int,
    speed: float,
    keep_running: bool,
    seed: int,
    reports: Path | None = None,
) -> int:
    """``drs-poller demo``: 0 iff every execution ended with its expected status in time."""
    options = DemoOptions(
        executions=executions,
        speed=speed,
        keep_running=keep_running,
        seed=seed,
        reports=reports,
    )
    result = await execute_demo(options)
    return result.exit_code


__all__ = [
    "DEFAULT_SPEED",
    "DEMO_EVENT_BUS",
    "DemoOptions",
    "DemoResult",
    "ExecutionReport",
    "demo_settings",
    "execute_demo",
    "run_demo",
    "write_reports",
]
