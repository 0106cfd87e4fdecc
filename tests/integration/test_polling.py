"""Polling DRS: batched per region, paged, bounded, and resilient to throttling."""

from __future__ import annotations

import random

import pytest
from harness import OTHER_REGION, REGION, ServerSnapshot, launched, metric, server_id, servers_of

from drs_poller.clients.aws import ClientPool
from drs_poller.clients.calling import AwsCallError, Caller
from drs_poller.clients.drs import DrsAdapter
from drs_poller.clients.dynamodb import ExecutionStore
from drs_poller.clock import ManualClock
from drs_poller.core.backoff import BackoffPolicy, ErrorKind
from drs_poller.core.models import JOB_NOT_FOUND, JobView
from drs_poller.core.places import Place
from drs_poller.local.items import ServerSpec
from drs_poller.observability.metrics import Metrics
from drs_poller.settings import load_settings


def _progress(sid: str) -> list[tuple[float, str, dict[str, ServerSnapshot]]]:
    return [
        (0, "STARTED", {sid: ServerSnapshot("IN_PROGRESS")}),
        (120, "COMPLETED", {sid: launched()}),
    ]


async def test_one_describe_jobs_call_per_region_per_batch(world):
    # 6 executions, 2 regions, 12 servers; two executions share one job.
    shared = world.job(
        [server_id(90), server_id(91)],
        [
            *_progress(server_id(90))[:1],
            (120, "COMPLETED", {server_id(90): launched(), server_id(91): launched()}),
        ],
    )
    for n in range(6):
        region = REGION if n % 2 else OTHER_REGION
        servers = []
        for k in range(2):
            sid = server_id(10 * n + k)
            servers.append(ServerSpec(sid, world.job([sid], _progress(sid), region=region)))
        await world.put_spec(world.spec(f"ex-{n}", [(region, servers)]))
    await world.put_spec(world.spec("share-a", [(REGION, [ServerSpec(server_id(90), shared)])]))
    await world.put_spec(world.spec("share-b", [(REGION, [ServerSpec(server_id(91), shared)])]))
    daemon = await world.daemon()

    polled = await world.step(daemon)
    assert polled == 8
    assert world.drs.count("DescribeJobs", REGION) == 1
    assert world.drs.count("DescribeJobs", OTHER_REGION) == 1
    requested = [c.ids_count for c in world.drs.calls if c.operation == "DescribeJobs"]
    assert sorted(requested) == [6, 7]  # the shared job is asked for once
    # The daemon's own account of it: one batch, two places.
    assert metric(daemon, "drs_poller_batch_places_count") == 1
    assert metric(daemon, "drs_poller_batch_places_sum") == 2
    world.drs.reset_calls()

    for _ in range(12):
        await world.step(daemon, 15)
    batches = metric(daemon, "drs_poller_dispatch_batch_size_count")
    calls = world.drs.count("DescribeJobs")
    assert calls <= 2 * (batches - 1)
    # Every place a batch asked is one DescribeJobs on the wire (no pages, no retries).
    assert calls == metric(daemon, "drs_poller_batch_places_sum") - 2
    for n in range(6):
        assert (await world.get(f"ex-{n}"))["Status"] == "COMPLETED"
    assert (await world.get("share-a"))["Status"] == "COMPLETED"


async def test_executions_due_at_once_are_split_into_batches_of_the_maximum(world):
    # A start (or a failover) finds every execution due at once: MAX_BATCH_EXECUTIONS
    # bounds each batch, so the DRS answers held at once stay bounded too.
    for n in range(7):
        sid = server_id(n)
        await world.put_spec(
            world.spec(f"ex-{n}", [(REGION, [ServerSpec(sid, world.job([sid], _progress(sid)))])])
        )
    daemon = await world.daemon(max_batch_executions=3)

    polled = await world.step(daemon)

    assert polled == 7
    assert metric(daemon, "drs_poller_dispatch_batch_size_count") == 3  # 3, 3 and 1
    assert metric(daemon, "drs_poller_dispatch_batch_size_sum") == 7
    asked = sorted(c.ids_count for c in world.drs.calls if c.operation == "DescribeJobs")
    assert asked == [1, 3, 3]


async def test_describe_jobs_pages_through_next_token(world):
    world.drs.page_size = 2
    servers = [server_id(n) for n in range(5)]
    specs = [
        ServerSpec(sid, world.job([sid], [(0, "COMPLETED", {sid: launched()})])) for sid in servers
    ]
    await world.put_spec(world.spec("ex", [(REGION, specs)]))
    daemon = await world.daemon()
    await world.step(daemon)
    assert world.drs.count("DescribeJobs") == 3  # 5 jobs, 2 a page
    assert (await world.get("ex"))["Status"] == "COMPLETED"


async def test_a_throttling_storm_is_ridden_out_and_nothing_is_written_from_a_failed_poll(world):
    sid = server_id(1)
    job = world.job(
        [sid],
        [
            (0, "STARTED", {sid: ServerSnapshot("IN_PROGRESS")}),
            (100, "COMPLETED", {sid: launched()}),
        ],
    )
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(sid, job)])]))
    daemon = await world.daemon(max_attempts=4)
    await world.step(daemon)
    before = await world.get("ex")

    # A storm: every DRS call throttled. Each poll makes at most max_attempts calls.
    world.drs.faults.throttle_rate = 1.0
    world.drs.faults.retry_after_seconds = 2
    world.drs.reset_calls()
    for _ in range(3):
        await world.step(daemon, 45)
    assert world.drs.count("DescribeJobs") == 3 * 4
    assert await world.get("ex") == before  # nothing concluded, nothing written
    assert (
        metric(
            daemon,
            "drs_poller_throttles_total",
            {"service": "drs", "operation": "DescribeJobs", "account": "self", "region": REGION},
        )
        == 12
    )

    # The storm passes: the next poll catches up.
    world.drs.faults.throttle_rate = 0.0
    item = await world.run_until_final(daemon, "ex", step=30)
    assert item["Status"] == "COMPLETED"
    assert servers_of(item)[0]["Status"] == "LAUNCHED"


async def test_transient_errors_are_retried_within_one_poll(world):
    sid = server_id(1)
    job = world.job([sid], [(0, "COMPLETED", {sid: launched()})])
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(sid, job)])]))
    daemon = await world.daemon(max_attempts=5)
    world.drs.faults.error_next = 2
    world.drs.faults.throttle_next = 1
    await world.step(daemon)
    assert (await world.get("ex"))["Status"] == "COMPLETED"  # within the first poll
    assert world.drs.count("DescribeJobs") == 4
    assert (
        metric(
            daemon, "drs_poller_aws_retries_total", {"service": "drs", "operation": "DescribeJobs"}
        )
        == 3
    )


HERE = Place(None, REGION)


async def _adapter(world, *, sleeps, max_attempts=5, max_retry_after=60.0):
    settings = load_settings(table_name="unused", drs_endpoint_url=world.stack.drs_url)
    pool = ClientPool(
        session=world.stack.session(), settings=settings, endpoints={"drs": world.stack.drs_url}
    )

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    caller = Caller(
        metrics=Metrics(),
        clock=ManualClock(),
        policy=BackoffPolicy(
            base=0.5, cap=20, max_attempts=max_attempts, max_retry_after=max_retry_after
        ),
        max_concurrent=4,
        max_per_region=2,
        rng=random.Random(1),
        sleep=record,
    )
    return pool, DrsAdapter(clients=pool, caller=caller)


async def test_retry_after_is_honoured_and_backoff_is_jittered(world):
    sid = server_id(1)
    job = world.job([sid], [(0, "PENDING", {})])
    sleeps: list[float] = []
    pool, drs = await _adapter(world, sleeps=sleeps)
    try:
        world.drs.faults.throttle_next = 2
        world.drs.faults.retry_after_seconds = 7
        batch = await drs.describe_jobs(HERE, [job])
        assert isinstance(batch.lookups[job], JobView)
        assert len(sleeps) == 2
        assert all(7 <= s <= 7.5 for s in sleeps)  # Retry-After is a floor (+ a little jitter)

        sleeps.clear()
        world.drs.faults.retry_after_seconds = None
        world.drs.faults.error_next = 4
        await drs.describe_jobs(HERE, [job])
        ceilings = [0.5, 1.0, 2.0, 4.0]
        assert len(sleeps) == 4
        assert all(0 <= s <= c for s, c in zip(sleeps, ceilings, strict=True))
        assert len(set(sleeps)) == 4  # full jitter, not a fixed ladder
    finally:
        await pool.aclose()


async def test_retries_are_bounded_and_permanent_errors_are_not_retried(world):
    sleeps: list[float] = []
    pool, drs = await _adapter(world, sleeps=sleeps, max_attempts=3)
    try:
        world.drs.faults.throttle_rate = 1.0
        with pytest.raises(AwsCallError) as storm:
            await drs.describe_jobs(HERE, ["drsjob-00000000000000001"])
        assert storm.value.kind is ErrorKind.THROTTLED
        assert world.drs.count("DescribeJobs") == 3
        world.drs.faults.throttle_rate = 0.0
        world.drs.reset_calls()
        # An invalid job id is a ValidationException: permanent, one attempt.
        with pytest.raises(AwsCallError) as invalid:
            await drs.describe_jobs(HERE, ["badjob-00000000000000001"])  # bad pattern
        assert invalid.value.kind is ErrorKind.PERMANENT
        assert invalid.value.code == "ValidationException"
        assert world.drs.count("DescribeJobs") == 1
    finally:
        await pool.aclose()


async def test_unknown_jobs_are_reported_as_not_found_and_chunks_stay_within_limits(world):
    sleeps: list[float] = []
    pool, drs = await _adapter(world, sleeps=sleeps)
    try:
        known = [world.job([server_id(n)], [(0, "PENDING", {})]) for n in range(3)]
        unknown = [f"drsjob-{n:017d}" for n in range(900_000, 901_200)]
        batch = await drs.describe_jobs(HERE, known + unknown)
        assert all(isinstance(batch.lookups[j], JobView) for j in known)
        assert all(batch.lookups[j] is JOB_NOT_FOUND for j in unknown)
        sizes = [c.ids_count for c in world.drs.calls if c.operation == "DescribeJobs"]
        assert sizes == [1000, 203]  # 1203 ids: two calls, none over DRS's 1000
    finally:
        await pool.aclose()


async def test_a_recovery_instance_without_an_ec2_id_is_not_described_every_poll(world):
    s1, s2 = server_id(1), server_id(2)
    job = world.job(
        [s1, s2],
        [(0, "STARTED", {s1: launched(), s2: ServerSnapshot("IN_PROGRESS")})],
        recovery_ids={s1: "i-0000000000000aaaa"},  # DRS reports no ec2InstanceID for it
    )
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(s1, job), ServerSpec(s2, job)])]))
    daemon = await world.daemon()
    for _ in range(6):
        await world.step(daemon, 30)
    item = await world.get("ex")
    assert item["Status"] == "POLLING"  # s2 keeps the execution polling
    assert servers_of(item)[0]["RecoveryInstanceId"] == "i-0000000000000aaaa"
    assert world.drs.count("DescribeRecoveryInstances") == 1


async def test_discovery_pages_through_the_status_index(world):
    for n in range(5):
        sid = server_id(n)
        job = world.job([sid], [(0, "PENDING", {})])
        await world.put_spec(world.spec(f"ex-{n}", [(REGION, [ServerSpec(sid, job)])]))
    await world.put_spec(world.spec("done", [(REGION, [])]))
    await world.update("done", "SET #s = :c", {":c": "COMPLETED"}, names={"#s": "Status"})
    daemon = await world.daemon()
    store = ExecutionStore(
        clients=daemon.clients,
        caller=daemon.store._caller,
        region=REGION,
        table=world.table,
        index="StatusIndex",
        page_size=2,
    )
    pages = [page async for page in store.query_polling()]
    assert [len(p) for p in pages][:3] == [2, 2, 1]
    assert sorted(i["ExecutionId"] for p in pages for i in p) == [f"ex-{n}" for n in range(5)]
    operations = {
        dict(s.labels)["operation"]
        for f in daemon.metrics.registry.collect()
        if f.name == "drs_poller_aws_calls"
        for s in f.samples
    }
    # Found through the index (never a Scan); DescribeTable once, at start-up.
    assert operations == {"DescribeTable", "Query"}
