"""Run one workload against drs-poller and the baseline, one after the other, and write
``benchmarks/results/<workload>.json``.

This process hosts the DRS simulator and the DynamoDB recording proxy; moto server runs
in its own process, and each tracker in its own subprocess, so that the tracker's CPU
time and peak RSS (read from /proc) are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import pickle
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aioboto3
import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import profiles
from benchmarks.analysis import (
    describe_jobs_per_place,
    detection,
    latencies_ms,
    percentiles,
    poll_shares,
    poll_times,
    quantiles,
)
from benchmarks.events import (
    EVENT_VARIANTS,
    EventCounts,
    create_events_queue,
    delete_events_queue,
    plan_events,
    publish_events,
)
from benchmarks.local_dynamodb import DESCRIPTIONS, dynalite_process
from benchmarks.recording import (
    WRITES,
    DrsCall,
    DrsRecorder,
    DynamoRecorder,
    IndexedDrsSimulator,
    IndexShape,
    serve_counting_proxy,
    serve_dynamodb_proxy,
    serve_recorded_drs,
)
from benchmarks.sizes import item_size
from benchmarks.workloads import PLAN_ID, REGIONS, WORKLOADS, WaveStart, Workload, seed_workload
from drs_poller.clients.dynamodb import item_key, to_python, to_wire
from drs_poller.clock import SystemClock
from drs_poller.local.stack import compressed_durations
from drs_poller.local.table import (
    DEFAULT_PROJECTION,
    INCLUDED_ATTRIBUTES,
    create_table,
)
from drs_poller.simulator.accounts import StsAccounts
from drs_poller.simulator.timelines import DEFAULT_ACCOUNT_ID

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
TRACKERS = ("drs-poller", "drs-poller-all", "baseline", *EVENT_VARIANTS)
# drs-poller with every feature that puts something somewhere switched on: DRS events in
# (EVENT_VARIANTS), drill reports (S3) and finalization events (EventBridge) out.
FULL = frozenset({"drs-poller-full"})
# What each tracker's table projects in its StatusIndex: drs-poller on the projection
# init-table and the stack create (KEYS_ONLY), drs-poller-all (the same daemon) and the
# baseline on the seeds' projection ALL, so the index's effect and the daemon's can be
# told apart.
PROJECTIONS = {
    "drs-poller": DEFAULT_PROJECTION,
    "drs-poller-all": "ALL",
    "baseline": "ALL",
    # drs-poller as shipped, with DRS events in through SQS (benchmarks/events.py).
    **dict.fromkeys(EVENT_VARIANTS, DEFAULT_PROJECTION),
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
# A run is marked as on a loaded machine when processes other than the tracker and the
# benchmark's own (moto server, dynalite, the events queue's moto server, and this
# process: the DRS simulator and the proxies) used at least this much CPU, in % of one
# core, over the measured period. py-spy (--profile) counts among the others.
LOADED_OTHERS_PERCENT = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


async def scrape_batches(port: int | None) -> dict[str, float] | None:
    """The daemon's own account of its batches, from its /metrics: batches that asked
    DRS, (batch, place) pairs asked, and its DescribeJobs calls. Set against the calls
    the simulator saw, it gives DescribeJobs per place per batch exactly, where the
    wire alone cannot tell two overlapping batches apart (analysis.py). None when the
    endpoint cannot be read (the figure is then left out, never guessed)."""
    if port is None:
        return None
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.get(f"http://{LOOPBACK}:{port}/metrics") as answer,
        ):
            text = await answer.text()
    except (aiohttp.ClientError, TimeoutError):
        return None
    return batch_counts(text)


def batch_counts(text: str) -> dict[str, float]:
    """The batch figures of one /metrics page (Prometheus text format)."""
    found = {"batches": 0.0, "places": 0.0, "describe_jobs": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "drs_poller_batch_places_count":
                found["batches"] += sample.value
            elif sample.name == "drs_poller_batch_places_sum":
                found["places"] += sample.value
            elif (
                sample.name == "drs_poller_aws_calls_total"
                and sample.labels.get("operation") == "DescribeJobs"
            ):
                found["describe_jobs"] += sample.value
    return found


def batch_figures(
    start: dict[str, float] | None, end: dict[str, float] | None, *, wire_calls: int
) -> dict[str, Any] | None:
    """DescribeJobs per (batch, place) over the measured period: the calls the
    simulator saw, over the places the daemon's batches asked."""
    if start is None or end is None:
        return None
    places = end["places"] - start["places"]
    return {
        "batches": int(end["batches"] - start["batches"]),
        "places_asked": int(places),
        "daemon_describe_jobs": int(end["describe_jobs"] - start["describe_jobs"]),
        "wire_describe_jobs": wire_calls,
        "per_place_per_batch": round(wire_calls / places, 4) if places else None,
    }


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        for line in subprocess.check_output(["lscpu"], text=True).splitlines():  # noqa: S607
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    memory_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot, over all cores (/proc/stat:
    user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass
class CpuMeter:
    """CPU over the measured period: the tracker's, the benchmark's own helpers' (its
    local servers and this process), and the rest of the machine's (``others``), each in
    % of one core. ``others`` tells a run on a loaded machine."""

    tracker: Proc
    helpers: dict[str, Proc]
    clock: Callable[[], float] = time.time
    machine_busy: Callable[[], float] = machine_busy_seconds
    at: float = 0.0
    start: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, float]:
        read = {"tracker": self.tracker.cpu_seconds(), "machine": self.machine_busy()}
        for name, proc in self.helpers.items():
            with contextlib.suppress(OSError):  # a helper gone: left out
                read[name] = proc.cpu_seconds()
        return read

    def begin(self) -> None:
        self.at, self.start = self.clock(), self._read()

    def figures(self) -> dict[str, Any]:
        seconds = max(self.clock() - self.at, 1e-9)
        end = self._read()
        used = {
            name: end[name] - self.start[name]
            for name in end
            if name in self.start and name != "machine"
        }
        others = end["machine"] - self.start["machine"] - sum(used.values())
        percent = {name: round(100 * value / seconds, 1) for name, value in used.items()}
        percent["others"] = round(max(0.0, 100 * others / seconds), 1)
        return {
            "percent_of_core": percent,
            "load_average_at_end": os.getloadavg(),
            "loaded": percent["others"] >= LOADED_OTHERS_PERCENT,
            "loaded_from_percent": LOADED_OTHERS_PERCENT,
        }


class Proc:
    """CPU seconds and peak RSS of a process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def memory_mb(self, field: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return 0.0


@contextlib.asynccontextmanager
async def moto_process() -> Any:
    port = _free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220, S603 - our own interpreter, started before measuring
        [sys.executable, "-m", "benchmarks.moto_server", "-H", LOOPBACK, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://{LOOPBACK}:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
                break
            await asyncio.sleep(0.05)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()  # moto server holding gigabytes of table history can be slow to go
            proc.wait(10)


def tracker_command(
    tracker: str,
    *,
    table: str,
    dynamodb_url: str,
    drs_url: str,
    speed: float,
    summary: Path,
    events_queue_url: str | None = None,
    sqs_url: str | None = None,
    sts_url: str | None = None,
    metrics_port: int = 0,
    outputs_url: str | None = None,
    outputs_name: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        "AWS_REGION": REGIONS[0],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if tracker == "baseline":
        command = [
            sys.executable,
            "-m",
            "benchmarks.baseline",
            f"--table={table}",
            f"--dynamodb-url={dynamodb_url}",
            f"--drs-url={drs_url}",
            f"--speed={speed}",
            f"--summary={summary}",
        ]
        return command, env
    # drs-poller as shipped: its defaults, with every interval compressed by the speed
    # factor (as the fleet test does).
    settings = {
        "table_name": table,
        "dynamodb_endpoint_url": dynamodb_url,
        "drs_endpoint_url": drs_url,
        "ec2_endpoint_url": dynamodb_url,  # never called: the scripts give no EC2 ids
        "metrics_host": LOOPBACK,
        "metrics_port": metrics_port,
        "log_format": "json",
        "log_level": "WARNING",
        **compressed_durations(speed),
    }
    if events_queue_url is not None:
        settings["events_queue_url"] = events_queue_url
        settings["sqs_endpoint_url"] = sqs_url or dynamodb_url
    if sts_url is not None:
        # Member accounts (W10k-accounts): roles assumed through moto's STS, counted on
        # the way; the role name is the default (drs-poller-member), which moto does
        # not require to exist.
        settings["sts_endpoint_url"] = sts_url
    if outputs_url is not None and outputs_name is not None:
        # drs-poller-full: each finished execution's drill report into a bucket, and its
        # finalization events onto a bus, both named for the run, through a counting
        # proxy in front of moto.
        settings.update(
            report_bucket=outputs_name,
            s3_endpoint_url=outputs_url,
            event_bus=outputs_name,
            events_endpoint_url=outputs_url,
        )
    env.update({f"DRS_POLLER_{k.upper()}": str(v) for k, v in settings.items()})
    return [sys.executable, "-m", "drs_poller", "run"], env


async def _create_outputs(session: Any, moto_url: str, name: str) -> None:
    """drs-poller-full's report bucket and event bus, named ``name``."""
    async with session.client("s3", endpoint_url=moto_url) as s3:
        await s3.create_bucket(Bucket=name)
    async with session.client("events", endpoint_url=moto_url) as events:
        await events.create_event_bus(Name=name)


async def _count_reports(session: Any, moto_url: str, name: str) -> int:
    """The report objects in the bucket (an HTML and a JSON per finished execution)."""
    found = 0
    async with session.client("s3", endpoint_url=moto_url) as s3:
        async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            found += len(page.get("Contents") or ())
    return found


async def _seed_table(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    wires = [{k: to_wire(v) for k, v in item.items()} for item in items]
    for start in range(0, len(wires), 25):
        requests = [{"PutRequest": {"Item": w}} for w in wires[start : start + 25]]
        pending: dict[str, Any] = {table: requests}
        while pending:
            result = await ddb.batch_write_item(RequestItems=pending)
            pending = result.get("UnprocessedItems") or {}


@dataclass
class WaveStarts:
    """What the benchmark, as the initiator, wrote for waves started during the run."""

    written: int = 0
    refused: int = 0  # the item left POLLING first (its condition failed)
    max_lag_s: float = 0.0  # wall-clock seconds after the job's creation, at most


async def start_waves(
    ddb: Any,
    table: str,
    starts: list[WaveStart],
    *,
    recorder: DynamoRecorder,
    counts: WaveStarts,
) -> None:
    """At each wave's start, write its job id into its servers as the initiator does
    (``drs_poller.local.initiate``: a path-level conditional UpdateItem, only while
    POLLING, only once), straight to moto: these are not the daemon's requests. The
    recorder learns the new item, so that the daemon's next write is priced from it."""
    for start in starts:
        await asyncio.sleep(max(0.0, start.at - time.time()))
        assignments = [f"Waves[{start.wave}].#status = :in_progress"]
        assignments += [f"Waves[{start.wave}].StartTime = :at"]
        for position in range(start.servers):
            server = f"Waves[{start.wave}].Servers[{position}]"
            assignments += [f"{server}.RecoveryJobId = :job", f"{server}.LaunchTime = :at"]
        try:
            written = await ddb.update_item(
                TableName=table,
                Key=item_key((start.execution_id, PLAN_ID)),
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression=(
                    f"#status = :polling AND attribute_not_exists(Waves[{start.wave}]"
                    ".Servers[0].RecoveryJobId)"
                ),
                ExpressionAttributeNames={"#status": "Status"},
                ExpressionAttributeValues={
                    ":polling": {"S": "POLLING"},
                    ":in_progress": {"S": "IN_PROGRESS"},
                    ":at": {"N": f"{start.at:.3f}"},
                    ":job": {"S": start.job_id},
                },
                ReturnValues="ALL_NEW",
            )
        except ddb.exceptions.ConditionalCheckFailedException:
            counts.refused += 1
            continue
        recorder.know(written["Attributes"])
        counts.written += 1
        counts.max_lag_s = max(counts.max_lag_s, time.time() - start.at)


async def _count_polling(ddb: Any, table: str) -> int:
    total, request = (
        0,
        {
            "TableName": table,
            "IndexName": "StatusIndex",
            "Select": "COUNT",
            "KeyConditionExpression": "#s = :p",
            "ExpressionAttributeNames": {"#s": "Status"},
            "ExpressionAttributeValues": {":p": {"S": "POLLING"}},
        },
    )
    while True:
        page = await ddb.query(**request)
        total += int(page["Count"])
        if "LastEvaluatedKey" not in page:
            return total
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def _final_items(ddb: Any, table: str) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    request: dict[str, Any] = {"TableName": table}
    while True:
        page = await ddb.scan(**request)
        for wire in page.get("Items") or []:
            item = to_python(wire)
            items[item["ExecutionId"]] = item
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _per_minute(times: list[float], *, start: float, speed: float) -> list[int]:
    """Counts per real-scale minute since start."""
    counts: list[int] = []
    for at in times:
        minute = int((at - start) * speed / 60)
        if minute < 0:
            continue
        while len(counts) <= minute:
            counts.append(0)
        counts[minute] += 1
    return counts


async def run_tracker(  # noqa: C901, PLR0912, PLR0915 - one run, start to figures, in order
    tracker: str,
    *,
    workload: Workload,
    speed: float,
    seed: int,
    moto_url: str,
    sqs_moto_url: str,
    warmup: float | None,
    window: float | None,
    scratch: Path,
    log: Any,
    moto_pid: int | None = None,
    profile: Path | None = None,
    dynamodb: str = "moto",
    dynamodb_url: str | None = None,
    dynamodb_pid: int | None = None,
    sqs_moto_pid: int | None = None,
) -> dict[str, Any]:
    """One run of ``tracker``. DynamoDB is ``dynamodb_url`` when given (dynalite, with
    ``dynamodb_pid``), moto server's otherwise; STS, SQS and EC2 are moto's."""
    session = aioboto3.Session(**CREDENTIALS, region_name=REGIONS[0])
    table_url = dynamodb_url or moto_url
    # Member accounts: a call is in the account moto's STS says its access key is in.
    simulator = IndexedDrsSimulator(
        clock=SystemClock(), accounts=StsAccounts(moto_url) if workload.accounts else None
    )
    projection = PROJECTIONS[tracker]
    shape = IndexShape(
        projection,
        frozenset(INCLUDED_ATTRIBUTES) if projection == "INCLUDE" else frozenset(),
    )
    drs_recorder, dynamo_recorder = DrsRecorder(), DynamoRecorder(index=shape)
    sqs_requests: Counter[str] = Counter()  # the daemon's, by operation
    sts_requests: Counter[str] = Counter()  # the daemon's, by operation
    sts_log: list[tuple[float, str]] = []
    outputs: Counter[str] = Counter()  # drs-poller-full's S3 and EventBridge requests
    wave_counts = WaveStarts()
    table = f"bench-{workload.name.lower()}-{tracker}-{uuid.uuid4().hex[:8]}"
    summary_path = scratch / f"{table}-summary.json"
    async with (
        session.client("dynamodb", endpoint_url=table_url) as ddb,
        serve_recorded_drs(simulator, drs_recorder) as drs_url,
        serve_dynamodb_proxy(table_url, dynamo_recorder) as proxy_url,
        serve_counting_proxy(sqs_moto_url, sqs_requests) as sqs_url,
        serve_counting_proxy(moto_url, sts_requests, log=sts_log) as sts_url,
        serve_counting_proxy(moto_url, outputs) as outputs_url,
    ):
        await create_table(ddb, table, projection=projection)
        if tracker in FULL:
            await _create_outputs(session, moto_url, table)
        log(f"[{tracker}] seeding {workload.executions} executions into {table}")
        seeded = seed_workload(workload, speed=speed, start=time.time(), seed=seed)
        await _seed_table(ddb, table, seeded.items)
        # The scripts start now, after seeding, so both trackers see the same timeline.
        start = time.time()
        seeded = seed_workload(workload, speed=speed, start=start, seed=seed)
        for script in seeded.scripts:
            simulator.add_job(script)
        for source_server_id, actions in seeded.launch_actions().items():
            simulator.set_launch_actions(source_server_id, actions)
        for item in seeded.items:
            dynamo_recorder.know({k: to_wire(v) for k, v in item.items()})
        events_queue_url: str | None = None
        event_counts: EventCounts | None = None
        publisher: asyncio.Task[None] | None = None
        starter: asyncio.Task[None] | None = None
        if seeded.wave_starts:
            starter = asyncio.create_task(
                start_waves(
                    ddb,
                    table,
                    seeded.wave_starts,
                    recorder=dynamo_recorder,
                    counts=wave_counts,
                ),
                name="later waves",
            )
        if tracker in EVENT_VARIANTS:
            events_queue_url = await create_events_queue(
                session, endpoint_url=sqs_moto_url, region=REGIONS[0], name=table
            )
            planned, dropped, before = plan_events(
                seeded, EVENT_VARIANTS[tracker], seed=seed, since=start
            )
            event_counts = EventCounts(
                planned=len(planned) + dropped, dropped=dropped, before_start=before
            )
            publisher = asyncio.create_task(
                publish_events(
                    session,
                    endpoint_url=sqs_moto_url,
                    queue_url=events_queue_url,
                    region=REGIONS[0],
                    events=planned,
                    counts=event_counts,
                ),
                name="DRS events",
            )
        # The daemon's /metrics, read at the measured period's start and end.
        metrics_port = None if tracker == "baseline" else _free_port()
        scraped: list[dict[str, float] | None] = [None, None]
        command, env = tracker_command(
            tracker,
            table=table,
            dynamodb_url=proxy_url,
            drs_url=drs_url,
            speed=speed,
            summary=summary_path,
            events_queue_url=events_queue_url,
            sqs_url=sqs_url,
            sts_url=sts_url if workload.accounts else None,
            metrics_port=metrics_port or 0,
            outputs_url=outputs_url if tracker in FULL else None,
            outputs_name=table,
        )
        log_path = scratch / f"{table}.log"
        with log_path.open("w") as out:
            proc = await asyncio.create_subprocess_exec(
                *command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        probe = Proc(proc.pid)
        helpers = {"bench": Proc(os.getpid())}
        if moto_pid is not None:
            helpers["moto"] = Proc(moto_pid)
        if dynamodb_pid is not None:
            helpers[dynamodb] = Proc(dynamodb_pid)
        if sqs_moto_pid is not None:  # the events queue's own moto server
            helpers["moto-sqs"] = Proc(sqs_moto_pid)
        meter = CpuMeter(probe, helpers)
        meter.begin()
        longest = (45 * 60 * 1.2 + 1200) / speed + 120
        deadline = start + (warmup + window if window is not None and warmup else longest)
        samples: list[tuple[float, float, float]] = []  # (time, cpu s, rss MB)
        window_bounds: tuple[float, float] | None = None
        window_cpu: float | None = None
        remaining = workload.executions
        spies: dict[str, Any] = {}

        def spy() -> None:
            if profile is None:
                return
            seconds = window if window is not None else longest
            pids = {"tracker": proc.pid, "moto": moto_pid, "bench": os.getpid()}
            for role, pid in pids.items():
                if pid is not None:
                    path = profile / f"{workload.name}-{tracker}-{role}.txt"
                    spies[role] = profiles.start(pid=pid, path=path, seconds=seconds)

        if window is None:
            spy()
        try:
            while time.time() < deadline and proc.returncode is None:
                await asyncio.sleep(1.0)
                now = time.time()
                samples.append((now - start, probe.cpu_seconds(), probe.memory_mb("VmRSS")))
                if window is not None and warmup is not None:
                    if window_bounds is None and now - start >= warmup:
                        window_bounds = (now, now + window)
                        window_cpu = probe.cpu_seconds()
                        meter.begin()
                        scraped[0] = await scrape_batches(metrics_port)
                        spy()
                        log(f"[{tracker}] steady-state window starts ({window:.0f} s)")
                    continue
                if int(now - start) % 3 == 0:
                    remaining = await _count_polling(ddb, table)
                    if remaining == 0:
                        break
            if proc.returncode is not None:
                raise RuntimeError(f"{tracker} exited early; see {log_path}")
            ended = time.time()
            cpu = probe.cpu_seconds()
            peak_rss = probe.memory_mb("VmHWM")
            machine_cpu = meter.figures()
            if window is None:  # the whole run is measured: from nothing
                scraped[0] = {"batches": 0.0, "places": 0.0, "describe_jobs": 0.0}
            scraped[1] = await scrape_batches(metrics_port)
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
        finally:
            for task in (publisher, starter):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            for running in spies.values():
                if running is not None and running.poll() is None:
                    running.send_signal(signal.SIGINT)
            for running in spies.values():
                if running is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        running.wait(30)
        finals = await _final_items(ddb, table)
        reports = await _count_reports(session, moto_url, table) if tracker in FULL else None
        await ddb.delete_table(TableName=table)
        if events_queue_url is not None:
            await delete_events_queue(
                session, endpoint_url=sqs_moto_url, region=REGIONS[0], url=events_queue_url
            )

    elapsed = ended - start
    # The raw records, to re-analyse a run without rerunning it (git ignores logs/).
    with (scratch / f"{table}-records.pickle").open("wb") as raw:
        pickle.dump(
            {
                "workload": workload.name,
                "speed": speed,
                "seed": seed,
                "start": start,
                "ended": ended,
                "drs_calls": drs_recorder.calls,
                "dynamodb_calls": dynamo_recorder.calls,
                "writes": dynamo_recorder.writes,
                "final_items": finals,
            },
            raw,
        )
    measured = window_bounds or (start, ended)
    measured_seconds = measured[1] - measured[0] if window_bounds else elapsed
    if window_bounds is not None and window_cpu is not None:
        cpu_measured = cpu - window_cpu
        window_bounds = (window_bounds[0], min(window_bounds[1], ended))
    else:
        cpu_measured = cpu

    def in_measured(at: float) -> bool:
        return window_bounds is None or window_bounds[0] <= at <= window_bounds[1]

    drs_calls = [c for c in drs_recorder.calls if in_measured(c.at)]
    dynamo_calls = [c for c in dynamo_recorder.calls if in_measured(c.started)]
    real_hours = measured_seconds * speed / 3600
    wrong = {
        execution_id: {
            "expected": status,
            "got": finals.get(execution_id, {}).get("Status"),
            "error": finals.get(execution_id, {}).get("ErrorMessage"),
        }
        for execution_id, status in seeded.expected.items()
        if finals.get(execution_id, {}).get("Status") not in (status, "POLLING")
        or (window_bounds is None and finals.get(execution_id, {}).get("Status") != status)
    }
    finished = sum(
        1 for e in seeded.expected if finals.get(e, {}).get("Status") not in (None, "POLLING")
    )
    polls = poll_times(seeded, drs_recorder.calls)
    shares = poll_shares(seeded, polls, dynamo_recorder.writes, speed=speed, window=window_bounds)
    late = [share.lateness for share in shares]
    ops: dict[str, int] = {}
    for call in drs_calls:
        ops[call.operation] = ops.get(call.operation, 0) + 1
    dynamo_ops: dict[str, int] = {}
    for dcall in dynamo_calls:
        dynamo_ops[dcall.operation] = dynamo_ops.get(dcall.operation, 0) + 1
    by_kind: dict[str, dict[str, int]] = {}
    for dcall in dynamo_calls:
        if dcall.kind:
            entry = by_kind.setdefault(dcall.kind, {"writes": 0, "table": 0, "index": 0})
            entry["writes"] += 1
            entry["table"] += dcall.table_write_units
            entry["index"] += dcall.index_write_units
    sizes = sorted(item_size({k: to_wire(v) for k, v in item.items()}) for item in finals.values())
    read_units = sum(c.read_units for c in dynamo_calls)
    table_writes = sum(c.table_write_units for c in dynamo_calls)
    index_writes = sum(c.index_write_units for c in dynamo_calls)
    landed = [c for c in dynamo_calls if c.landed]
    landed_in_index = [c for c in landed if c.in_index]
    not_landed = [c for c in dynamo_calls if c.operation in WRITES and not c.landed]
    figures: dict[str, Any] = {
        "tracker": tracker,
        "index_projection": projection,
        "local_dynamodb": DESCRIPTIONS[dynamodb],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        "load_average_at_start": os.getloadavg(),
        "executions": workload.executions,
        "servers": workload.executions * workload.servers,
        "elapsed_wall_s": round(elapsed, 2),
        "measured_wall_s": round(measured_seconds, 2),
        "measured_real_scale_h": round(real_hours, 4),
        "window": None if window_bounds is None else {"warmup_s": warmup, "window_s": window},
        "finished_executions": finished,
        "wrong_final_statuses": wrong,
        "void": bool(wrong),
        "drs_calls": {
            "describe_jobs": ops.get("DescribeJobs", 0),
            "all": len(drs_calls),
            "by_operation": ops,
            # Exact: the simulator's count over the places the daemon's batches asked.
            "per_batch": batch_figures(
                scraped[0], scraped[1], wire_calls=ops.get("DescribeJobs", 0)
            ),
            "latency_ms": latencies_ms([(c.operation, c.at, c.answered) for c in drs_calls]),
        },
        "dynamodb": {
            "requests": dynamo_ops,
            "read_units": read_units,
            "table_write_units": table_writes,
            "index_write_units": index_writes,
            "write_units": table_writes + index_writes,
            "write_units_by_kind": by_kind,
            "final_item_bytes": {
                "mean": round(sum(sizes) / len(sizes)) if sizes else 0,
                "p50": sizes[(len(sizes) - 1) // 2] if sizes else 0,
                "p95": sizes[(len(sizes) - 1) * 95 // 100] if sizes else 0,
                "max": sizes[-1] if sizes else 0,
            },
            # Writes that landed, and writes that did not (a failed condition: a lost
            # race, or the retry of a write that had landed and timed out): under load
            # the second kind grows and costs table units only.
            "landed_writes": {
                "count": len(landed),
                "table_write_units": sum(c.table_write_units for c in landed),
                "index_write_units": sum(c.index_write_units for c in landed),
                "in_index": len(landed_in_index),
                "in_index_table_write_units": sum(c.table_write_units for c in landed_in_index),
            },
            "failed_writes": {
                "count": len(not_landed),
                "table_write_units": sum(c.table_write_units for c in not_landed),
                "index_write_units": sum(c.index_write_units for c in not_landed),
            },
            "unpriced_operations": dict(dynamo_recorder.unpriced),
            # The local DynamoDB's request latencies (wall clock), as the proxy saw them.
            "latency_ms": latencies_ms([(c.operation, c.started, c.ended) for c in dynamo_calls]),
        },
        "per_real_hour": {
            "describe_jobs": ops.get("DescribeJobs", 0) / real_hours,
            "drs_calls": len(drs_calls) / real_hours,
            "read_units": read_units / real_hours,
            "write_units": (table_writes + index_writes) / real_hours,
        },
        "lateness_real_s": {**quantiles(late), "percentiles": percentiles(late)},
        # Each poll's lateness in its parts (analysis.PollShares): the daemon's own, and
        # the wait for the previous write, of which the part at the local DynamoDB.
        "lateness_shares_real_s": {
            "own": quantiles([share.own for share in shares]),
            "write_wait": quantiles([share.write_wait for share in shares]),
            "at_table": quantiles([share.at_table for share in shares]),
            "polls_waiting_on_a_write": sum(1 for share in shares if share.write_wait > 0),
        },
        "detection_real_s": detection(
            seeded,
            dynamo_recorder.writes,
            polls,
            speed=speed,
            window=window_bounds,
            calls=drs_recorder.calls,
        ),
        "polls": sum(len(times) for times in polls.values()),
        "cpu_seconds": round(cpu_measured, 2),
        "cpu_percent_of_core": round(100 * cpu_measured / measured_seconds, 1),
        "peak_rss_mb": round(peak_rss, 1),
        "machine_cpu": machine_cpu,
        "series": {
            "describe_jobs_per_real_minute": _per_minute(
                [c.at for c in drs_recorder.calls if c.operation == "DescribeJobs"],
                start=start,
                speed=speed,
            ),
            "drs_calls_per_real_minute": _per_minute(
                [c.at for c in drs_recorder.calls], start=start, speed=speed
            ),
            "resources": [(round(t, 1), round(c, 2), round(r, 1)) for t, c, r in samples[::5]],
        },
        "log": str(log_path),
    }
    if profile is not None:
        figures["profiles"] = {
            role: profiles.summarise(profile / f"{workload.name}-{tracker}-{role}.txt")
            for role in spies
            if (profile / f"{workload.name}-{tracker}-{role}.txt").exists()
        }
    if reports is not None:
        figures["outputs"] = {
            "report_objects": reports,
            # S3's REST requests carry no operation name: counted as "unknown" (PUTs).
            "requests": dict(sorted(outputs.items())),
        }
    if event_counts is not None:
        figures["events"] = {
            **event_counts.figures(),
            "daemon_sqs_requests": dict(sorted(sqs_requests.items())),
        }
    if workload.accounts:
        figures["accounts"] = _account_figures(
            workload,
            drs_recorder.calls,
            sts_log,
            window=window_bounds,
            real_hours=real_hours,
            wave_starts=wave_counts,
        )
    if tracker == "baseline" and summary_path.exists():
        figures["lambda"] = json.loads(summary_path.read_text())
    log(
        f"[{tracker}] done in {elapsed:.0f} s: DescribeJobs {ops.get('DescribeJobs', 0)}, "
        f"write units {table_writes + index_writes}, "
        f"lateness p99 {figures['lateness_real_s']['p99']}, wrong {len(wrong)}"
    )
    return figures


def _account_figures(
    workload: Workload,
    calls: list[DrsCall],
    sts_log: list[tuple[float, str]],
    *,
    window: tuple[float, float] | None,
    real_hours: float,
    wave_starts: WaveStarts,
) -> dict[str, Any]:
    """W10k-accounts: DescribeJobs per (account, region) per batch, the daemon's AssumeRole
    calls (over the run and in the measured period), and the calls DRS could not place."""
    assumed = [at for at, action in sts_log if action == "AssumeRole"]
    in_window = [at for at in assumed if window is None or window[0] <= at <= window[1]]
    return {
        "accounts": workload.accounts,
        "places": len(workload.places),
        "describe_jobs": describe_jobs_per_place(calls, window=window),
        "assume_role": {
            "calls": len(assumed),
            "per_account": len(assumed) / workload.accounts,
            "in_measured_period": len(in_window),
            "per_real_hour": len(in_window) / real_hours if real_hours else None,
            "sts_requests": dict(Counter(action for _, action in sts_log)),
        },
        # Calls signed in the daemon's own account, or in none the simulator could tell:
        # with every wave in a member account, both should be 0.
        "drs_calls_in_own_account": sum(1 for c in calls if c.account == DEFAULT_ACCOUNT_ID),
        "drs_calls_unplaced": sum(1 for c in calls if c.account is None),
        "wave_starts": {
            "written": wave_starts.written,
            "refused": wave_starts.refused,
            "max_lag_s": round(wave_starts.max_lag_s, 2),
        },
    }


def _kept_trackers(
    path: Path, *, speed: float, seed: int, rerun: tuple[str, ...]
) -> dict[str, Any]:
    """The figures of the trackers not rerun now, from an earlier result file of the same
    workload, speed and seed (each tracker's figures say when they were measured): one
    tracker can be rerun without the others."""
    if not path.exists():
        return {}
    try:
        earlier = json.loads(path.read_text())
    except ValueError:
        return {}
    if earlier.get("speed") != speed or earlier.get("seed") != seed:
        return {}
    return {
        tracker: figures
        for tracker, figures in (earlier.get("trackers") or {}).items()
        if tracker not in rerun and tracker in TRACKERS
    }


# Figures of each repeated run that the report does not need: the series and the CDF
# points are the median run's alone.
_NOT_KEPT_PER_RUN = ("series", "log")


def _own_p99(figures: dict[str, Any]) -> float:
    shares = figures.get("lateness_shares_real_s") or {}
    value = (shares.get("own") or {}).get("p99")
    if value is None:
        value = figures["lateness_real_s"]["p99"]
    return -math.inf if value is None else float(value)


def combine_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One tracker's figures over repeated runs: the median run's figures in full (the run
    whose own lateness p99 is the median), with every run's under ``runs`` (without the
    series and CDF points) for the report's medians and ranges. One run is returned as
    it is."""
    if len(runs) == 1:
        return runs[0]
    order = sorted(range(len(runs)), key=lambda i: _own_p99(runs[i]))
    median = order[(len(order) - 1) // 2]
    kept = []
    for figures in runs:
        each = {k: v for k, v in figures.items() if k not in _NOT_KEPT_PER_RUN}
        each["lateness_real_s"] = {
            k: v for k, v in figures["lateness_real_s"].items() if k != "percentiles"
        }
        kept.append(each)
    return {**runs[median], "runs": kept, "median_run": median}


async def run_workload(
    name: str,
    *,
    speed: float,
    seed: int,
    trackers: tuple[str, ...],
    out: Path,
    warmup: float | None = None,
    window: float | None = None,
    command: str = "",
    log: Any = print,
    profile: bool = False,
    repeat: int = 1,
    dynamodb: str = "moto",
) -> dict[str, Any]:
    """Run each tracker ``repeat`` times on the workload, each run on a moto server (and a
    dynalite, with ``dynamodb="dynalite"``) of its own, and write ``<out>/<name>.json``
    after each tracker."""
    workload = WORKLOADS[name]
    scratch = out / "logs"
    scratch.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "workload": name,
        "shape": {
            "executions": workload.executions,
            "waves": workload.waves,
            "servers_per_wave": workload.servers_per_wave,
            # One job per wave with accounts, one per server otherwise.
            "jobs": workload.executions
            * (workload.waves if workload.accounts else workload.servers),
            "started_over_real_s": workload.started_over,
            "accounts": workload.accounts,
            "account_regions": len(workload.places),
        },
        "speed": speed,
        "seed": seed,
        "command": command,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "trackers": {},
    }
    path = out / f"{name}.json"
    kept = _kept_trackers(path, speed=speed, seed=seed, rerun=trackers)
    for tracker in trackers:
        runs = []
        for attempt in range(1, repeat + 1):
            if repeat > 1:
                log(f"[{tracker}] run {attempt} of {repeat}")
            runs.append(
                await _one_run(
                    tracker,
                    workload=workload,
                    speed=speed,
                    seed=seed,
                    warmup=warmup,
                    window=window,
                    scratch=scratch,
                    log=log,
                    profile=out / "profiles" if profile else None,
                    dynamodb=dynamodb,
                )
            )
        kept[tracker] = combine_runs(runs)
        kept[tracker]["command"] = command
        result["trackers"] = {t: kept[t] for t in TRACKERS if t in kept}
        path.write_text(json.dumps(result, indent=1))  # each tracker's figures, at once
    log(f"wrote {path}")
    return result


async def _one_run(
    tracker: str,
    *,
    workload: Workload,
    speed: float,
    seed: int,
    warmup: float | None,
    window: float | None,
    scratch: Path,
    log: Any,
    profile: Path | None,
    dynamodb: str,
) -> dict[str, Any]:
    """One run of one tracker, on a moto server of its own (and a second for the events
    queue: moto's SQS walks the whole queue for each message it receives, and in the
    moto process that serves DynamoDB at W1k the queue fell behind and took DynamoDB
    with it; METHOD.md, "Events in"), and a dynalite of its own for DynamoDB if asked."""
    async with moto_process() as (moto_url, moto), contextlib.AsyncExitStack() as more:
        sqs_moto_url, sqs_moto_pid = moto_url, None
        if tracker in EVENT_VARIANTS:
            sqs_moto_url, sqs_moto = await more.enter_async_context(moto_process())
            sqs_moto_pid = sqs_moto.pid
        table_url, table_pid = None, None
        if dynamodb == "dynalite":
            table_url, table = await more.enter_async_context(dynalite_process(log))
            table_pid = table.pid
        return await run_tracker(
            tracker,
            workload=workload,
            speed=speed,
            seed=seed,
            moto_url=moto_url,
            sqs_moto_url=sqs_moto_url,
            warmup=warmup,
            window=window,
            scratch=scratch,
            log=log,
            moto_pid=moto.pid,
            profile=profile,
            dynamodb=dynamodb,
            dynamodb_url=table_url,
            dynamodb_pid=table_pid,
            sqs_moto_pid=sqs_moto_pid,
        )
