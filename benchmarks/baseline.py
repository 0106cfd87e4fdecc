"""The design drs-poller replaces, re-implemented faithfully to measure it side by side.

* An EventBridge rule invokes a *finder* Lambda every 60 s.
* The finder pages through StatusIndex (``Status = POLLING``) and skips executions
  that are not yet due: due = LastPolledTime + the interval of the execution's phase
  (45 s PENDING, 15 s STARTED, 30 s IN_PROGRESS and POST_LAUNCH).
* It invokes one *poller* Lambda per due execution (asynchronously; the item is the
  payload, so the poller needs no read).
* The poller calls DescribeJobs once per server job (servers not yet finished), and
  writes the whole Waves list back with one UpdateItem on every poll.

Honest costs, not slowed down on purpose: clients are created once and reused (warm
Lambdas); invocations run concurrently (asyncio tasks, up to the default account
concurrency of 1000); within one invocation the calls are sequential, as one Lambda
with a synchronous SDK makes them. The completion rules are the project's pure core
(``drs_poller.core``), so the final statuses are right; the I/O pattern is the old
design's. A newly launched server's recovery instance is described once (one call per
server) and a newly failed server's job log is read once, as drs-poller does, so both
trackers write the same facts.

Run as ``python -m benchmarks.baseline --table T --dynamodb-url U --drs-url U
--speed S --summary PATH``; it runs until SIGTERM, then writes its invocation counts
and durations (for Lambda GB-seconds) to PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import aioboto3
from botocore.config import Config

from drs_poller.clients.drs import parse_job
from drs_poller.clients.dynamodb import to_python, to_wire, with_decimals
from drs_poller.core.completion import Outcome, server_outcome
from drs_poller.core.deciding import decide
from drs_poller.core.models import (
    JOB_NOT_FOUND,
    InstanceDetails,
    JobLookup,
    JobView,
    LaunchStatus,
    parse_execution,
)
from drs_poller.core.phases import Intervals, parse_phase
from drs_poller.settings import load_settings, policy_from

FINDER_PERIOD = 60.0
LAMBDA_CONCURRENCY = 1000  # the default account concurrency limit


class Baseline:
    def __init__(self, *, args: argparse.Namespace) -> None:
        speed = args.speed
        self.table = args.table
        self.index = args.index
        self.dynamodb_url = args.dynamodb_url
        self.drs_url = args.drs_url
        self.region = args.region
        self.period = FINDER_PERIOD / speed
        self.intervals = Intervals(45 / speed, 15 / speed, 30 / speed, 30 / speed)
        self.policy = replace(
            policy_from(load_settings(table_name=self.table)),
            intervals=self.intervals,
            post_launch_grace=600 / speed,
            overdue_after=1800 / speed,
            max_execution_age=4 * 3600 / speed,
            heartbeat_interval=0.0,  # the old design writes on every poll
        )
        self.session = aioboto3.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto and the simulator accept any
            region_name=self.region,
        )
        self.config = Config(
            retries={"mode": "standard", "total_max_attempts": 3},
            max_pool_connections=LAMBDA_CONCURRENCY,
            connect_timeout=10,
            read_timeout=60,
        )
        self.stack = AsyncExitStack()
        self.dynamodb: Any = None
        self.drs: dict[str, Any] = {}
        self.slots = asyncio.Semaphore(LAMBDA_CONCURRENCY)
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.finder_durations: list[float] = []
        self.poller_durations: list[float] = []
        self.poller_errors = 0
        self.throttled_invocations = 0
        self.peak_concurrency = 0
        self.running = 0
        # Invocations that started while another one for the same execution still ran:
        # the old design has no fence, so the later-finishing one overwrites Waves.
        self.in_flight: dict[str, int] = {}
        self.overlapping_invocations = 0

    async def open(self) -> None:
        self.dynamodb = await self.stack.enter_async_context(
            self.session.client("dynamodb", endpoint_url=self.dynamodb_url, config=self.config)
        )

    async def drs_client(self, region: str) -> Any:
        if region not in self.drs:
            self.drs[region] = await self.stack.enter_async_context(
                self.session.client(
                    "drs", region_name=region, endpoint_url=self.drs_url, config=self.config
                )
            )
        return self.drs[region]

    # ------------------------------------------------------------------ finder

    async def run(self) -> None:
        next_tick = time.monotonic()
        while not self.stopping.is_set():
            started = time.monotonic()
            await self.find()
            self.finder_durations.append(time.monotonic() - started)
            next_tick += self.period
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.stopping.wait(), timeout=max(0.0, next_tick - time.monotonic())
                )
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.stack.aclose()

    async def find(self) -> None:
        now = time.time()
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": self.index,
            "KeyConditionExpression": "#s = :polling",
            "ExpressionAttributeNames": {"#s": "Status"},
            "ExpressionAttributeValues": {":polling": {"S": "POLLING"}},
        }
        while True:
            page = await self.dynamodb.query(**request)
            for wire in page.get("Items") or []:
                item = to_python(wire)
                if self.is_due(item, now):
                    self.invoke(item)
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def is_due(self, item: dict[str, Any], now: float) -> bool:
        last = item.get("LastPolledTime")
        phase = parse_phase(item.get("Phase"))
        if last is None or phase is None:
            return True
        return now >= float(last) + self.intervals.of(phase)

    def invoke(self, item: dict[str, Any]) -> None:
        if self.slots.locked():
            self.throttled_invocations += 1  # Lambda would throttle; the event retries later
        task = asyncio.create_task(self.poller(item))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ------------------------------------------------------------------ poller

    async def poller(self, item: dict[str, Any]) -> None:
        execution_id = item["ExecutionId"]
        if self.in_flight.get(execution_id):
            self.overlapping_invocations += 1
        self.in_flight[execution_id] = self.in_flight.get(execution_id, 0) + 1
        try:
            await self._invocation(item)
        finally:
            self.in_flight[execution_id] -= 1

    async def _invocation(self, item: dict[str, Any]) -> None:
        async with self.slots:
            self.running += 1
            self.peak_concurrency = max(self.peak_concurrency, self.running)
            started = time.monotonic()
            try:
                await self.poll(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed invocation is counted, as Lambda would
                self.poller_errors += 1
            finally:
                self.poller_durations.append(time.monotonic() - started)
                self.running -= 1

    async def poll(self, item: dict[str, Any]) -> None:  # noqa: C901 - the old Lambda, as one
        # LastPolledTime is the invocation's start: the finder's due test then does not
        # depend on how long the calls took (which time compression would magnify).
        started = time.time()
        execution = parse_execution(item)
        jobs: dict[str, JobLookup] = {}
        instances: dict[str, InstanceDetails] = {}
        reasons: dict[tuple[str, str], str] = {}
        for wave in execution.waves:
            mode = execution.mode_of(wave)
            region = wave.region or self.region
            for server in wave.servers:
                if not server.job_id or server_outcome(server, mode) is not Outcome.ACTIVE:
                    continue
                drs = await self.drs_client(region)
                answer = await drs.describe_jobs(filters={"jobIDs": [server.job_id]})
                found = answer.get("items") or []
                lookup = parse_job(found[0]) if found else JOB_NOT_FOUND
                jobs[server.job_id] = lookup
                if not isinstance(lookup, JobView):
                    continue
                participant = lookup.servers.get(server.source_server_id)
                if participant is None:
                    continue
                recovery_id = participant.recovery_instance_id
                if (
                    participant.launch_status is LaunchStatus.LAUNCHED
                    and recovery_id
                    and "RecoveryInstanceId" not in server.raw
                ):
                    described = await drs.describe_recovery_instances(
                        filters={"recoveryInstanceIDs": [recovery_id]}
                    )
                    for instance in described.get("items") or []:
                        instances[recovery_id] = InstanceDetails(
                            recovery_instance_id=recovery_id,
                            ec2_instance_id=instance.get("ec2InstanceID"),
                        )
                if participant.launch_status is LaunchStatus.FAILED:
                    log = await drs.describe_job_log_items(jobID=server.job_id)
                    for event in log.get("items") or []:
                        data = event.get("eventData") or {}
                        if event.get("event") == "LAUNCH_FAILED" and data.get("rawError"):
                            reasons[(server.job_id, server.source_server_id)] = data["rawError"]
        decision = decide(
            execution,
            jobs=jobs,
            instances=instances,
            now=started,
            policy=self.policy,
            reasons=reasons,
        )
        await self.write(item, decision.updates)

    async def write(self, item: dict[str, Any], updates: Any) -> None:
        names = {"#status": "Status"}
        values: dict[str, Any] = {":polling": {"S": "POLLING"}}
        assignments = []
        for position, (name, value) in enumerate(updates.items()):
            names[f"#a{position}"] = name
            values[f":v{position}"] = to_wire(with_decimals(value))
            assignments.append(f"#a{position} = :v{position}")
        with contextlib.suppress(self.dynamodb.exceptions.ConditionalCheckFailedException):
            await self.dynamodb.update_item(
                TableName=self.table,
                Key={"ExecutionId": {"S": item["ExecutionId"]}, "PlanId": {"S": item["PlanId"]}},
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression="#status = :polling",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

    def summary(self) -> dict[str, Any]:
        return {
            "finder_invocations": len(self.finder_durations),
            "finder_seconds": sum(self.finder_durations),
            "poller_invocations": len(self.poller_durations),
            "poller_seconds": sum(self.poller_durations),
            "poller_errors": self.poller_errors,
            "poller_duration_p50": _quantile(self.poller_durations, 0.5),
            "poller_duration_p99": _quantile(self.poller_durations, 0.99),
            "peak_concurrency": self.peak_concurrency,
            "invocations_over_concurrency": self.throttled_invocations,
            "overlapping_invocations": self.overlapping_invocations,
        }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _main(args: argparse.Namespace) -> None:
    baseline = Baseline(args=args)
    await baseline.open()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, baseline.stopping.set)
    print(json.dumps({"event": "baseline started"}), flush=True)  # noqa: T201
    await baseline.run()
    with open(args.summary, "w", encoding="utf-8") as out:  # noqa: ASYNC230, PTH123
        json.dump(baseline.summary(), out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True)
    parser.add_argument("--index", default="StatusIndex")
    parser.add_argument("--dynamodb-url", required=True)
    parser.add_argument("--drs-url", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--summary", required=True)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
