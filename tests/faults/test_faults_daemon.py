"""Fault injection against the daemon itself: real daemons on a clock the test moves,
with the fault proxy between them and moto server / the DRS simulator. Each test names
the fault, and asserts what must hold through it: no lost or repeated transition, no
terminal status that moves, nothing written from a failed poll, and a loop that ends."""

from __future__ import annotations

import pytest
from faultproxy import (
    FaultProxy,
    Outcome,
    drs_throttle,
    dynamodb_error,
    repeat_next_token,
    reset_after_forward,
    rewrite_json,
    truncate,
)
from harness import REGION, ServerSnapshot, launched, metric, server_id, servers_of
from structlog.testing import capture_logs

from drs_poller.local.items import ServerSpec

# The guarantees hold on the seeds' index (ALL) and on the lean one init-table creates.
pytestmark = pytest.mark.parametrize("projection", ["ALL", "KEYS_ONLY"])

S1, S2 = server_id(1), server_id(2)


@pytest.fixture
async def ddb_proxy(world):
    async with FaultProxy(world.stack.moto_url, seed=3, keep_requests=True) as proxy:
        yield proxy


@pytest.fixture
async def drs_proxy(world):
    async with FaultProxy(world.stack.drs_url, seed=3) as proxy:
        yield proxy


def _writes_to(proxy: FaultProxy, table: str) -> list:
    """UpdateItems on the execution table that the upstream applied (answered 200)."""
    return [
        r
        for r in proxy.select("UpdateItem")
        if r.upstream_status == 200
        and r.request is not None
        and r.request.json["TableName"] == table
    ]


async def _one_execution(world, *, execution_type: str = "DRILL") -> str:
    job = world.job(
        [S1, S2],
        [
            (0, "STARTED", {S1: ServerSnapshot("IN_PROGRESS"), S2: ServerSnapshot("IN_PROGRESS")}),
            (60, "COMPLETED", {S1: launched(), S2: launched()}),
        ],
        is_drill=execution_type == "DRILL",
    )
    await world.put_spec(
        world.spec(
            "ex",
            [(REGION, [ServerSpec(S1, job), ServerSpec(S2, job)])],
            execution_type=execution_type,
        )
    )
    return job


# 1 -----------------------------------------------------------------------------------


async def test_a_stale_replicas_write_after_a_peers_terminal_write_is_dropped_and_counted(world):
    await _one_execution(world)
    stale = await world.daemon()
    fresh = await world.daemon()
    await world.step(stale)  # the stale replica read the item while it was POLLING
    final = await world.run_until_final(fresh, "ex", step=15)
    assert final["Status"] == "COMPLETED"
    # The stale replica wakes with its old copy, sees DRS COMPLETED, and tries to finalize.
    await world.step(stale, 30, discover=False)
    assert await world.get("ex") == final  # the terminal write stands, untouched
    assert metric(stale, "drs_poller_conditional_write_conflicts_total") == 1
    assert metric(stale, "drs_poller_polls_total", {"outcome": "gone"}) == 1
    assert metric(stale, "drs_poller_dynamodb_writes_total", {"kind": "finalize"}) == 0
    assert not stale.state.tracked  # let go of


# 2 -----------------------------------------------------------------------------------


async def test_a_write_whose_response_is_lost_counts_once_and_repeats_nothing(world, ddb_proxy):
    await _one_execution(world)
    daemon = await world.daemon(dynamodb_endpoint_url=ddb_proxy.url)
    lost = ddb_proxy.add(
        reset_after_forward(),
        operation="UpdateItem",
        when=lambda request: request.json.get("TableName") == world.table,
        times=1,
    )
    await world.step(daemon)  # PENDING -> IN_PROGRESS: the write lands, its answer is lost
    assert ddb_proxy.count("UpdateItem", rule=lost, outcome=Outcome.RESET) == 1
    assert metric(daemon, "drs_poller_polls_total", {"outcome": "updated"}) == 1
    assert metric(daemon, "drs_poller_conditional_write_conflicts_total") == 0
    assert metric(daemon, "drs_poller_dynamodb_writes_landed_on_retry_total") == 1
    item = await world.get("ex")
    assert item["PollerRevision"] == 1  # applied once: the retry found its own write id
    for server in servers_of(item):
        assert [e["status"] for e in server["TransitionHistory"]] == ["IN_PROGRESS"]
    final = await world.run_until_final(daemon, "ex", step=15)
    assert final["Status"] == "COMPLETED"
    for server in servers_of(final):
        assert [e["status"] for e in server["TransitionHistory"]] == ["IN_PROGRESS", "LAUNCHED"]


# 6 -----------------------------------------------------------------------------------


async def test_a_throttling_storm_is_ridden_out_with_bounded_jittered_retries(
    world, ddb_proxy, drs_proxy
):
    await _one_execution(world)
    daemon = await world.daemon(
        dynamodb_endpoint_url=ddb_proxy.url,
        drs_endpoint_url=drs_proxy.url,
        max_attempts=4,
        backoff_base=0.01,
        backoff_cap=0.05,
    )
    await world.step(daemon)  # discovered and first written before the storm
    before = len(_writes_to(ddb_proxy, world.table))
    storm = [
        drs_proxy.add(drs_throttle(), operation="DescribeJobs"),
        ddb_proxy.add(dynamodb_error("ThrottlingException"), operation="Query"),
        ddb_proxy.add(
            dynamodb_error("ProvisionedThroughputExceededException"), operation="UpdateItem"
        ),
    ]
    with capture_logs() as logs:
        for _ in range(3):  # three discoveries and polls inside the storm
            world.clock.advance(60)
            await daemon.discoverer.tick()
            await world.dispatch(daemon)
    # Attempts are bounded: 4 per call, one DescribeJobs call per poll.
    assert drs_proxy.count("DescribeJobs", outcome=Outcome.INJECTED) == 3 * 4
    assert ddb_proxy.count("Query", outcome=Outcome.INJECTED) == 3 * 4
    # Nothing was written from a poll that saw no DRS answer.
    assert ddb_proxy.count("UpdateItem", outcome=Outcome.INJECTED) == 0
    assert len(_writes_to(ddb_proxy, world.table)) == before
    assert (await world.get("ex"))["Status"] == "POLLING"
    # Sleeps are full-jitter draws under the cap, not a fixed ladder.
    delays = [line["delay"] for line in logs if line["event"] == "aws call retry"]
    assert len(delays) >= 12
    assert all(0 <= d <= 0.05 for d in delays)
    assert len(set(delays)) > len(delays) // 2
    assert (
        metric(
            daemon,
            "drs_poller_unobserved_calls_total",
            {"operation": "DescribeJobs", "kind": "throttled"},
        )
        == 3
    )
    # The storm passes: it finishes as if nothing happened.
    for rule in storm:
        (drs_proxy if rule.operation == "DescribeJobs" else ddb_proxy).remove(rule)
    final = await world.run_until_final(daemon, "ex", step=15)
    assert final["Status"] == "COMPLETED"


# 8 -----------------------------------------------------------------------------------


def _unknown_status(page):
    for job in page.get("items", []):
        job["status"] = "PAUSED"
    return page


def _missing_field(page):
    for job in page.get("items", []):
        for server in job.get("participatingServers", []):
            server.pop("sourceServerID", None)
    return page


@pytest.mark.parametrize(
    ("fault", "error_metric"),
    [
        (
            lambda: rewrite_json(_missing_field),
            ("drs_poller_execution_errors_total", {"kind": "invalid_drs_data"}),
        ),
        (
            lambda: truncate(0.6),
            (
                "drs_poller_unobserved_calls_total",
                {"operation": "DescribeJobs", "kind": "transient"},
            ),
        ),
        (
            repeat_next_token,
            (
                "drs_poller_unobserved_calls_total",
                {"operation": "DescribeJobs", "kind": "invalid_drs_data"},
            ),
        ),
    ],
    ids=["missing-field", "truncated-json", "next-token-forever"],
)
async def test_bad_drs_data_writes_nothing_and_is_counted(
    world, ddb_proxy, drs_proxy, fault, error_metric
):
    # One job per server, and pages of one job: DescribeJobs for this execution pages.
    world.drs.page_size = 1
    jobs = [
        world.job(
            [sid],
            [
                (0, "STARTED", {sid: ServerSnapshot("IN_PROGRESS")}),
                (60, "COMPLETED", {sid: launched()}),
            ],
        )
        for sid in (S1, S2)
    ]
    await world.put_spec(
        world.spec("ex", [(REGION, [ServerSpec(S1, jobs[0]), ServerSpec(S2, jobs[1])])])
    )
    daemon = await world.daemon(
        dynamodb_endpoint_url=ddb_proxy.url, drs_endpoint_url=drs_proxy.url, max_attempts=2
    )
    await world.step(daemon)
    before = await world.get("ex")
    writes = len(_writes_to(ddb_proxy, world.table))
    drs_proxy.add(fault(), operation="DescribeJobs")
    await world.step(daemon, 60)  # DRS now says COMPLETED/LAUNCHED, through bad data
    assert len(_writes_to(ddb_proxy, world.table)) == writes
    assert await world.get("ex") == before
    name, labels = error_metric
    assert metric(daemon, name, labels) >= 1
    # The loop ended: the poll returned, and the daemon polls on once the data is good.
    drs_proxy.clear_rules()
    final = await world.run_until_final(daemon, "ex", step=15)
    assert final["Status"] == "COMPLETED"


async def test_an_unknown_job_status_degrades_that_field_only(world, drs_proxy):
    """A job status outside the model (AWS adds values) reads as STARTED: the servers'
    own launchStatus still decides, the value is counted, nothing is set aside
    (contract §2; before issue 11 the whole job was)."""
    jobs = [
        world.job(
            [sid],
            [
                (0, "STARTED", {sid: ServerSnapshot("IN_PROGRESS")}),
                (60, "COMPLETED", {sid: launched()}),
            ],
        )
        for sid in (S1, S2)
    ]
    await world.put_spec(
        world.spec("ex", [(REGION, [ServerSpec(S1, jobs[0]), ServerSpec(S2, jobs[1])])])
    )
    daemon = await world.daemon(drs_endpoint_url=drs_proxy.url)
    drs_proxy.add(rewrite_json(_unknown_status), operation="DescribeJobs")
    final = await world.run_until_final(daemon, "ex", step=15)
    assert final["Status"] == "COMPLETED"
    assert (
        metric(daemon, "drs_poller_unknown_values_total", {"field": "status", "value": "PAUSED"})
        == 1
    )
    assert metric(daemon, "drs_poller_execution_errors_total", {"kind": "invalid_drs_data"}) == 0


# 9 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("terminal", ["COMPLETED", "CANCELLED"])
async def test_an_item_already_terminal_is_never_written_while_drs_still_runs(
    world, ddb_proxy, terminal
):
    world.job([S1], [(0, "STARTED", {S1: ServerSnapshot("IN_PROGRESS")})])  # never ends
    job = world.job([S2], [(0, "STARTED", {S2: ServerSnapshot("IN_PROGRESS")})])
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(S2, job)])]))
    # A heartbeat on every poll: the daemon would write even when nothing changed.
    daemon = await world.daemon(dynamodb_endpoint_url=ddb_proxy.url, heartbeat_interval=1)
    await world.step(daemon)
    # Another writer ends it (an operator, the API); the daemon's copy still says POLLING.
    await world.update("ex", "SET #s = :s", names={"#s": "Status"}, values={":s": terminal})
    ended = await world.get("ex")
    applied_before = len(_writes_to(ddb_proxy, world.table))
    assert await world.step(daemon, 31, discover=False) == 1  # due again (IN_PROGRESS: 30 s)
    assert await world.get("ex") == ended
    assert len(_writes_to(ddb_proxy, world.table)) == applied_before
    assert metric(daemon, "drs_poller_polls_total", {"outcome": "gone"}) == 1
    assert not daemon.state.tracked
    world.clock.advance(60)
    assert await world.dispatch(daemon) == 0  # and it stays let go of
