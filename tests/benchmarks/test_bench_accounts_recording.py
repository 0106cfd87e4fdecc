"""What the benchmark records of W10k-accounts, against moto server: the account of each
DRS call, the daemon's AssumeRole calls through the STS pass-through, and the later
waves the benchmark starts as the initiator."""

from __future__ import annotations

import time
from collections import Counter

import aioboto3

from benchmarks.recording import (
    DrsRecorder,
    DynamoRecorder,
    IndexedDrsSimulator,
    IndexShape,
    serve_counting_proxy,
    serve_recorded_drs,
)
from benchmarks.run import WaveStarts, start_waves
from benchmarks.workloads import WORKLOADS, WaveStart, seed_workload
from drs_poller.clients.dynamodb import item_key, to_python, to_wire
from drs_poller.clock import SystemClock
from drs_poller.local.table import create_table
from drs_poller.simulator.accounts import StsAccounts
from drs_poller.simulator.timelines import DEFAULT_ACCOUNT_ID

FAKE = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "eu-west-1"


async def test_drs_calls_record_their_account_and_assume_role_calls_are_counted(moto_url):
    simulator = IndexedDrsSimulator(clock=SystemClock(), accounts=StsAccounts(moto_url))
    recorder = DrsRecorder()
    sts_requests: Counter[str] = Counter()
    sts_log: list[tuple[float, str]] = []
    session = aioboto3.Session(**FAKE, region_name="us-east-1")
    async with (
        serve_recorded_drs(simulator, recorder) as drs_url,
        serve_counting_proxy(moto_url, sts_requests, log=sts_log) as sts_url,
        session.client("sts", endpoint_url=sts_url) as sts,
    ):
        answer = await sts.assume_role(
            RoleArn="arn:aws:iam::210000000007:role/drs-poller-member",
            RoleSessionName="drs-poller",
        )
        raw = answer["Credentials"]
        member = aioboto3.Session(
            aws_access_key_id=raw["AccessKeyId"],
            aws_secret_access_key=raw["SecretAccessKey"],
            aws_session_token=raw["SessionToken"],
            region_name=REGION,
        )
        async with member.client("drs", endpoint_url=drs_url) as drs:
            await drs.describe_jobs(filters={"jobIDs": ["drsjob-00000000100000000"]})
        async with session.client("drs", endpoint_url=drs_url, region_name=REGION) as drs:
            await drs.describe_jobs()
    assert sts_requests == Counter({"AssumeRole": 1})
    assert [action for _, action in sts_log] == ["AssumeRole"]
    assert [(c.operation, c.region, c.account) for c in recorder.calls] == [
        ("DescribeJobs", REGION, "210000000007"),
        ("DescribeJobs", REGION, DEFAULT_ACCOUNT_ID),
    ]


async def test_the_benchmark_starts_later_waves_as_the_initiator_does(moto_url):
    projection = "KEYS_ONLY"
    seeded = seed_workload(WORKLOADS["W10k-accounts"], speed=1.0, start=time.time(), seed=7)
    first = seeded.wave_starts[0]
    item = next(i for i in seeded.items if i["ExecutionId"] == first.execution_id)
    left = next(
        i
        for i in seeded.items
        if i["ExecutionId"] != first.execution_id
        and any("RecoveryJobId" not in s for w in i["Waves"] for s in w["Servers"])
    )
    left = {**left, "Status": "CANCELLED"}
    left_start = next(s for s in seeded.wave_starts if s.execution_id == left["ExecutionId"])
    table = f"bench-accounts-{time.time_ns()}"
    session = aioboto3.Session(**FAKE, region_name="us-east-1")
    recorder = DynamoRecorder(index=IndexShape(projection, frozenset()))
    counts = WaveStarts()
    async with session.client("dynamodb", endpoint_url=moto_url) as ddb:
        await create_table(ddb, table, projection=projection)
        for put in (item, left):
            await ddb.put_item(TableName=table, Item={k: to_wire(v) for k, v in put.items()})
        due = time.time()
        starts = [
            WaveStart(due, first.execution_id, first.wave, first.job_id, first.servers),
            WaveStart(due, left_start.execution_id, left_start.wave, left_start.job_id, 5),
        ]
        await start_waves(ddb, table, starts, recorder=recorder, counts=counts)
        written = await ddb.get_item(
            TableName=table, Key=item_key((first.execution_id, "plan-bench")), ConsistentRead=True
        )
    wave = to_python(written["Item"])["Waves"][first.wave]
    assert wave["Status"] == "IN_PROGRESS"
    assert {server["RecoveryJobId"] for server in wave["Servers"]} == {first.job_id}
    assert all("LaunchTime" in server for server in wave["Servers"])
    assert (counts.written, counts.refused) == (1, 1)
    assert recorder.key_of(written["Item"]) in recorder._items  # priced from the new item
