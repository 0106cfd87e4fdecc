"""Full and lean discovery passes (``FULL_DISCOVERY_INTERVAL``), against moto's StatusIndex,
on each projection the daemon works with: ALL (the seeds' table), KEYS_ONLY (what
init-table and the stack create) and INCLUDE (``PollerRevision``).

A lean pass reads the index for keys (and ``PollerRevision`` and the first wave's
``Region`` where the index projects them), and reads whole (BatchGetItem) only new
executions, those a peer wrote, and those waiting for another writer. A full pass reads
whole items from the Query on ALL, and by key with BatchGetItem on a lean index. moto
5.1.22 honours KEYS_ONLY and INCLUDE in a Query on a GSI (it projects each entry), so
an attribute outside the projection is simply absent here, as on DynamoDB: these tests
would see the daemon rely on one. Each test records which kind of pass ran and which
keys were read whole.
"""

from __future__ import annotations

from typing import Any

import pytest
from faultproxy import FaultProxy, rewrite_json
from harness import REGION, ServerSnapshot, metric, server_id, servers_of

from drs_poller.clients.calling import AwsCallError
from drs_poller.core.backoff import ErrorKind
from drs_poller.engine.daemon import StartupError
from drs_poller.engine.discovery import BACKGROUND_FETCH_CONCURRENCY, FETCH_CONCURRENCY
from drs_poller.engine.tracking import queue_name
from drs_poller.local.items import ServerSpec
from drs_poller.local.table import index_projection_definition

S1, S2, S3 = server_id(1), server_id(2), server_id(3)
LONG_RUNNING: list[Any] = [(0, "STARTED", {})]  # never finishes
EVERY_PROJECTION = pytest.mark.parametrize("projection", ["ALL", "KEYS_ONLY", "INCLUDE"])


def record_fetches(daemon: Any) -> list[tuple[str, bool]]:
    """Every item read whole by key: (execution id, consistent read)."""
    fetched: list[tuple[str, bool]] = []
    get_many = daemon.store.get_many

    async def spy(keys: Any, *, consistent: bool = True) -> Any:
        fetched.extend((key[0], consistent) for key in keys)
        return await get_many(keys, consistent=consistent)

    daemon.store.get_many = spy
    return fetched


def ids(fetched: list[tuple[str, bool]]) -> list[str]:
    return sorted(execution_id for execution_id, _ in fetched)


def record_passes(daemon: Any) -> list[str]:
    """Which kind of StatusIndex query each discovery made: ``full`` or ``lean``."""
    passes: list[str] = []
    query = daemon.store.query_polling

    def spy(*, lean: bool = False) -> Any:
        passes.append("lean" if lean else "full")
        return query(lean=lean)

    daemon.store.query_polling = spy
    return passes


def tracked_item(daemon: Any, execution_id: str) -> dict[str, Any]:
    return daemon.state.tracked[queue_name(execution_id, "plan-local")].item


async def put_running(world: Any, execution_id: str, *, servers: int = 1) -> str:
    job = world.job([server_id(n) for n in range(1, servers + 1)], LONG_RUNNING)
    spec = world.spec(
        execution_id, [(REGION, [ServerSpec(server_id(n), job) for n in range(1, servers + 1)])]
    )
    await world.put_spec(spec)
    return job


KEYS = {"ExecutionId": "ex", "PlanId": "plan-local", "Status": "POLLING"}


@pytest.mark.parametrize(
    ("projection", "expected"),
    [
        ("ALL", {**KEYS, "PollerRevision": 1, "Waves": [{"Region": REGION}]}),
        ("INCLUDE", {**KEYS, "PollerRevision": 1}),
        ("KEYS_ONLY", KEYS),
    ],
)
async def test_the_lean_query_asks_only_for_what_the_index_projects(world, projection, expected):
    await put_running(world, "ex")
    daemon = await world.daemon()
    assert daemon.store.projection.kind == projection  # read once, at start-up
    describes = {
        "service": "dynamodb",
        "operation": "DescribeTable",
        "account": "self",
        "region": REGION,
    }
    assert metric(daemon, "drs_poller_aws_calls_total", {**describes, "outcome": "success"}) == 1
    await world.step(daemon)
    # Nothing changes: the first write is the heartbeat, 900 s after StartTime
    # (PollerRevision 1).
    await world.step(daemon, 900)
    lean = [page async for page in daemon.store.query_polling(lean=True)]
    assert lean == [[expected]]
    # On a lean index, a "full" Query asks for the same: nothing outside the projection.
    full = [page async for page in daemon.store.query_polling(lean=False)]
    assert full == ([[await world.get("ex")]] if projection == "ALL" else lean)


@EVERY_PROJECTION
async def test_lean_passes_read_whole_only_new_and_waiting_executions(world, projection):
    await put_running(world, "running")
    wave1 = world.job([S2], LONG_RUNNING)
    await world.put_spec(
        world.spec(
            "waiting",  # wave 2 has no job yet: the initiator will write it
            [(REGION, [ServerSpec(S2, wave1)]), (REGION, [ServerSpec(S3, None)])],
        )
    )
    daemon = await world.daemon(full_discovery_interval=300, discovery_interval=30)
    passes, fetched = record_passes(daemon), record_fetches(daemon)
    await world.step(daemon)
    # A full pass: from the Query on ALL; by key, eventually consistent, on a lean index.
    assert passes == ["full"]
    assert fetched == ([] if projection == "ALL" else [("running", False), ("waiting", False)])
    fetched.clear()

    await world.step(daemon, 30)
    assert passes[-1] == "lean"
    assert fetched == [("waiting", True)]  # not "running"; a consistent read

    await put_running(world, "new")
    assert await daemon.discover_once() == 3
    assert passes[-1] == "lean"
    assert ids(fetched) == ["new", "waiting", "waiting"]
    assert queue_name("new", "plan-local") in daemon.state.tracked
    fetched.clear()

    await world.step(daemon, 300)  # FULL_DISCOVERY_INTERVAL is up
    assert passes[-1] == "full"
    assert ids(fetched) == ([] if projection == "ALL" else ["new", "running", "waiting"])


@EVERY_PROJECTION
async def test_a_later_waves_job_ids_are_seen_by_the_next_lean_pass(world, projection):
    wave1 = world.job([S1], [(0, "COMPLETED", {S1: ServerSnapshot("LAUNCHED")})])
    await world.put_spec(
        world.spec("ex", [(REGION, [ServerSpec(S1, wave1)]), (REGION, [ServerSpec(S2, None)])])
    )
    daemon = await world.daemon(full_discovery_interval=3600, discovery_interval=30)
    passes = record_passes(daemon)
    await world.step(daemon)
    wave2 = world.job([S2], [(0, "COMPLETED", {S2: ServerSnapshot("LAUNCHED")})])
    await world.update(
        "ex", "SET Waves[1].Servers[0].RecoveryJobId = :j", {":j": wave2}, names=None
    )
    await world.step(daemon, 30)
    assert passes == ["full", "lean"]
    assert servers_of(tracked_item(daemon, "ex"), 1)[0]["RecoveryJobId"] == wave2
    item = await world.run_until_final(daemon, "ex", step=30)
    assert item["Status"] == "COMPLETED"
    assert "full" not in passes[1:]


async def peer_writes(world: Any) -> None:
    await world.update(
        "ex",
        "SET PollerRevision = :r, Waves[0].Servers[0].#s = :s",
        {":r": 7, ":s": "IN_PROGRESS"},
        names={"#s": "Status"},
    )


@pytest.mark.parametrize("projection", ["ALL", "INCLUDE"])
async def test_a_peers_write_is_noticed_through_the_index_and_read_whole(world, projection):
    await put_running(world, "ex")
    daemon = await world.daemon(full_discovery_interval=3600)
    passes, fetched = record_passes(daemon), record_fetches(daemon)
    await world.step(daemon)
    fetched.clear()
    await peer_writes(world)
    await daemon.discover_once()
    assert passes == ["full", "lean"]
    assert fetched == [("ex", True)]
    item = tracked_item(daemon, "ex")
    assert (item["PollerRevision"], servers_of(item)[0]["Status"]) == (7, "IN_PROGRESS")


@pytest.mark.parametrize("projection", ["KEYS_ONLY"])
async def test_without_the_revision_in_the_index_a_peers_write_waits_for_the_full_pass(
    world, projection
):
    await put_running(world, "ex")
    daemon = await world.daemon(full_discovery_interval=300, discovery_interval=30)
    passes = record_passes(daemon)
    await world.step(daemon)
    await peer_writes(world)
    world.clock.advance(30)
    await daemon.discover_once()  # no poll: a poll's write would find it (and fail)
    assert passes[-1] == "lean"
    assert tracked_item(daemon, "ex").get("PollerRevision") != 7
    world.clock.advance(270)
    await daemon.discover_once()
    assert passes[-1] == "full"
    assert tracked_item(daemon, "ex")["PollerRevision"] == 7


@EVERY_PROJECTION
async def test_other_changes_reach_the_cache_at_the_next_full_pass(world, projection):
    await put_running(world, "ex")
    daemon = await world.daemon(full_discovery_interval=300, discovery_interval=30)
    passes = record_passes(daemon)
    await world.step(daemon)
    # A change that bumps no revision and starts no wave: a lean pass does not see it.
    await world.update("ex", "SET OperatorNote = :n", {":n": "checked"})
    await world.step(daemon, 30, discover=True)
    assert "OperatorNote" not in tracked_item(daemon, "ex")
    await world.step(daemon, 270)
    assert passes == ["full", "lean", "full"]
    assert tracked_item(daemon, "ex")["OperatorNote"] == "checked"


@EVERY_PROJECTION
async def test_a_lean_pass_forgets_an_execution_that_left_polling(world, projection):
    await put_running(world, "ex")
    daemon = await world.daemon(full_discovery_interval=3600)
    passes = record_passes(daemon)
    await world.step(daemon)
    await world.update("ex", "SET #s = :c", {":c": "CANCELLED"}, names={"#s": "Status"})
    assert await daemon.discover_once() == 0
    assert passes == ["full", "lean"]
    assert daemon.state.tracked == {}


@EVERY_PROJECTION
async def test_many_new_executions_turn_a_lean_pass_into_a_full_one_on_all_only(world, projection):
    daemon = await world.daemon(full_discovery_interval=3600)
    daemon.discoverer.lean_fetch_floor = 2
    passes, fetched = record_passes(daemon), record_fetches(daemon)
    await world.step(daemon)
    for n in range(3):
        await put_running(world, f"ex{n}")
    assert await daemon.discover_once() == 3
    if projection == "ALL":
        # Reading them from the Query costs less than by key.
        assert (passes, fetched) == (["full", "lean", "full"], [])
    else:
        # A full pass would read them by key too, and every other item with them.
        assert passes == ["full", "lean"]
        assert fetched == [("ex0", True), ("ex1", True), ("ex2", True)]
    assert len(daemon.state.tracked) == 3


def throttled() -> AwsCallError:
    return AwsCallError(
        service="dynamodb",
        operation="BatchGetItem",
        kind=ErrorKind.THROTTLED,
        code="ProvisionedThroughputExceededException",
        message="retries exhausted",
    )


@EVERY_PROJECTION
async def test_an_item_that_cannot_be_read_is_read_by_the_next_pass(world, projection):
    await put_running(world, "first")
    daemon = await world.daemon(full_discovery_interval=3600)
    await world.step(daemon)
    await put_running(world, "later")
    get_many = daemon.store.get_many
    failures = [1]

    async def flaky(keys: Any, *, consistent: bool = True) -> Any:
        if failures:
            failures.pop()
            raise throttled()
        return await get_many(keys, consistent=consistent)

    daemon.store.get_many = flaky
    assert await daemon.discover_once() == 1  # "later" is not seen yet; "first" stays
    assert set(daemon.state.tracked) == {queue_name("first", "plan-local")}
    assert await daemon.discover_once() == 2
    assert queue_name("later", "plan-local") in daemon.state.tracked


@pytest.mark.parametrize("projection", ["KEYS_ONLY", "INCLUDE"])
async def test_a_full_pass_on_a_lean_index_that_cannot_read_fails_and_forgets_nothing(
    world, projection
):
    await put_running(world, "ex")
    daemon = await world.daemon(full_discovery_interval=0)
    await world.step(daemon)

    async def failing(keys: Any, *, consistent: bool = True) -> Any:
        raise throttled()

    daemon.store.get_many = failing
    await daemon.discoverer.tick()
    assert metric(daemon, "drs_poller_discoveries_total", {"outcome": "error"}) == 1
    assert set(daemon.state.tracked) == {queue_name("ex", "plan-local")}


@EVERY_PROJECTION
async def test_a_full_discovery_interval_of_zero_reads_whole_items_every_pass(world, projection):
    await put_running(world, "ex")
    daemon = await world.daemon(full_discovery_interval=0)
    passes, fetched = record_passes(daemon), record_fetches(daemon)
    for _ in range(3):
        await world.step(daemon, 30)
    assert passes == ["full", "full", "full"]
    assert len(fetched) == (0 if projection == "ALL" else 3)


async def test_a_lean_pass_offers_no_stale_copy_to_a_poll_in_flight(world):
    # Were the held copy offered, a poll that reloads the item after a lost write would
    # be handed the older copy back when it ends.
    await put_running(world, "ex")
    daemon = await world.daemon(full_discovery_interval=3600)
    await world.step(daemon)
    tracked = daemon.state.tracked[queue_name("ex", "plan-local")]
    tracked.in_flight = True
    assert await daemon.discover_once() == 1
    assert tracked.newer_item is None


def leave_unprocessed(table: str, *, keep: int) -> Any:
    """A BatchGetItem answer that returns ``keep`` items and hands the others back as
    ``UnprocessedKeys``, as DynamoDB does under load."""

    def transform(body: dict[str, Any]) -> dict[str, Any]:
        items = body["Responses"][table]
        body["Responses"][table] = items[:keep]
        keys = [{"ExecutionId": i["ExecutionId"], "PlanId": i["PlanId"]} for i in items[keep:]]
        body["UnprocessedKeys"] = {table: {"Keys": keys, "ConsistentRead": True}}
        return body

    return rewrite_json(transform)


def record_sleeps(daemon: Any) -> list[float]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    daemon.store._caller.sleep = sleep
    return sleeps


def batch_sizes(proxy: FaultProxy, table: str) -> list[int]:
    return [
        len(r.request.json["RequestItems"][table]["Keys"])
        for r in proxy.select("BatchGetItem")
        if r.request is not None
    ]


@EVERY_PROJECTION
async def test_unprocessed_keys_are_asked_for_again_after_a_jittered_backoff(world, projection):
    async with FaultProxy(world.stack.moto_url, seed=3, keep_requests=True) as proxy:
        daemon = await world.daemon(
            dynamodb_endpoint_url=proxy.url, full_discovery_interval=3600, max_attempts=5
        )
        sleeps = record_sleeps(daemon)
        await world.step(daemon)
        for n in range(3):
            await put_running(world, f"ex{n}")
        proxy.add(leave_unprocessed(world.table, keep=1), operation="BatchGetItem", times=1)
        assert await daemon.discover_once() == 3  # a lean pass: three new executions
        assert batch_sizes(proxy, world.table) == [3, 2]  # the two left over, asked again
        assert len(daemon.state.tracked) == 3
        assert len(sleeps) == 1
        assert 0 <= sleeps[0] <= 0.001  # full jitter under BACKOFF_BASE (0.001 here)
        retries = {"service": "dynamodb", "operation": "BatchGetItem"}
        assert metric(daemon, "drs_poller_aws_retries_total", retries) == 1


@EVERY_PROJECTION
async def test_keys_left_unprocessed_for_good_are_read_by_a_later_pass(world, projection):
    async with FaultProxy(world.stack.moto_url, seed=3, keep_requests=True) as proxy:
        daemon = await world.daemon(
            dynamodb_endpoint_url=proxy.url, full_discovery_interval=3600, max_attempts=3
        )
        sleeps = record_sleeps(daemon)
        await world.step(daemon)
        await put_running(world, "ex")
        rule = proxy.add(leave_unprocessed(world.table, keep=0), operation="BatchGetItem")
        assert await daemon.discover_once() == 0  # given up after MAX_ATTEMPTS requests
        assert batch_sizes(proxy, world.table) == [1, 1, 1]
        assert len(sleeps) == 2
        assert daemon.state.tracked == {}
        proxy.remove(rule)
        assert await daemon.discover_once() == 1
        assert queue_name("ex", "plan-local") in daemon.state.tracked


@pytest.mark.parametrize(
    ("projection", "switch_to"),
    [("ALL", "KEYS_ONLY"), ("ALL", "INCLUDE"), ("KEYS_ONLY", "ALL")],
)
async def test_a_projection_switch_between_two_runs(world, projection, switch_to):
    """docs/operations.md's move: a new index with the other projection next to the old
    one, then the daemon restarted on it (DRS_POLLER_STATUS_INDEX)."""
    job = world.job(
        [S1, S2],
        [
            (0, "STARTED", {S1: ServerSnapshot("IN_PROGRESS"), S2: ServerSnapshot("IN_PROGRESS")}),
            (120, "COMPLETED", {S1: ServerSnapshot("LAUNCHED"), S2: ServerSnapshot("LAUNCHED")}),
        ],
    )
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(S1, job), ServerSpec(S2, job)])]))
    first = await world.daemon()
    await world.step(first)
    await world.step(first, 45)
    before = await world.get("ex")
    assert servers_of(before)[0]["Status"] == "IN_PROGRESS"

    await world.ddb.update_table(
        TableName=world.table,
        AttributeDefinitions=[
            {"AttributeName": "Status", "AttributeType": "S"},
            {"AttributeName": "StartTime", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexUpdates=[
            {
                "Create": {
                    "IndexName": "StatusIndexNext",
                    "KeySchema": [
                        {"AttributeName": "Status", "KeyType": "HASH"},
                        {"AttributeName": "StartTime", "KeyType": "RANGE"},
                    ],
                    "Projection": index_projection_definition(switch_to),
                }
            }
        ],
    )
    second = await world.daemon(status_index="StatusIndexNext")
    assert second.store.projection.kind == switch_to
    item = await world.run_until_final(second, "ex", step=30)
    assert item["Status"] == "COMPLETED"
    for server in servers_of(item):
        statuses = [entry["status"] for entry in server["TransitionHistory"]]
        assert statuses == ["IN_PROGRESS", "LAUNCHED"]  # nothing lost or repeated


async def test_a_missing_status_index_stops_start_up_naming_it(world):
    with pytest.raises(StartupError, match="no global secondary index Nope"):
        await world.daemon(status_index="Nope")


async def test_batch_get_items_read_as_botocore_parses_them_binary_included(world):
    """BatchGetItem's ``Responses`` are handed over as ``json.loads`` made them
    (clients/aws.py, ``_FAST_MEMBERS``): every attribute kind reads as botocore's own
    parse of the same item does, and an answer with a binary attribute goes through
    botocore (its base64 decoding) as before."""
    typed = {
        "ExecutionId": {"S": "ex-kinds"},
        "PlanId": {"S": "plan-local"},
        "Status": {"S": "COMPLETED"},
        "Count": {"N": "12.50"},
        "Flag": {"BOOL": True},
        "Nothing": {"NULL": True},
        "List": {"L": [{"S": "a"}, {"N": "1"}, {"M": {"k": {"SS": ["x", "y"]}}}]},
        "Numbers": {"NS": ["1", "2"]},
        "Map": {"M": {"nested": {"L": []}, "empty": {"S": ""}}},
    }
    binary = {**typed, "ExecutionId": {"S": "ex-binary"}, "Blob": {"B": b"\x00\xffdata"}}
    for item in (typed, binary):
        await world.ddb.put_item(TableName=world.table, Item=item)
    daemon = await world.daemon()
    found = await daemon.store.get_many([("ex-kinds", "plan-local"), ("ex-binary", "plan-local")])
    for execution_id in ("ex-kinds", "ex-binary"):
        expected = await world.get(execution_id)  # GetItem through boto3's own parser
        assert found[(execution_id, "plan-local")] == expected
    assert found[("ex-binary", "plan-local")]["Blob"] == b"\x00\xffdata"


@pytest.mark.parametrize("projection", ["KEYS_ONLY"])
async def test_a_full_pass_reads_one_request_at_a_time_once_executions_are_polled(
    world, projection, monkeypatch
):
    """At start-up a full pass reads with FETCH_CONCURRENCY requests in flight; once
    executions are polled, a full pass is background work and reads one at a time, so
    that decoding its answers does not take the event loop from the polls."""
    monkeypatch.setattr("drs_poller.engine.discovery.BATCH_GET_LIMIT", 2)
    for n in range(8):
        await put_running(world, f"ex{n}")
    daemon = await world.daemon(full_discovery_interval=300, discovery_interval=30)
    get_many = daemon.store.get_many
    in_flight = peak = 0

    async def counting(keys: Any, *, consistent: bool = True) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await get_many(keys, consistent=consistent)
        finally:
            in_flight -= 1

    daemon.store.get_many = counting
    assert await daemon.discover_once() == 8  # start-up: 4 requests of 2 items
    assert peak == FETCH_CONCURRENCY
    peak = 0
    await world.step(daemon, 300)  # the next full pass, with 8 executions tracked
    assert peak == BACKGROUND_FETCH_CONCURRENCY == 1
    assert len(daemon.state.tracked) == 8
