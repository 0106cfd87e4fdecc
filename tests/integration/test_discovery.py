"""Full and lean discovery passes (``FULL_DISCOVERY_INTERVAL``), against moto's StatusIndex.

A lean pass projects the index to keys, ``PollerRevision`` and the first wave's
``Region``, and reads whole (GetItem) only new executions, those a peer wrote, and
those waiting for another writer. Each test records which kind of pass ran and counts
the GetItems from the daemon's own call metric.
"""

from __future__ import annotations

from typing import Any

from harness import REGION, ServerSnapshot, metric, server_id, servers_of

from drs_poller.clients.calling import AwsCallError
from drs_poller.core.backoff import ErrorKind
from drs_poller.engine.tracking import queue_name
from drs_poller.local.items import ServerSpec

S1, S2, S3 = server_id(1), server_id(2), server_id(3)
LONG_RUNNING: list[Any] = [(0, "STARTED", {})]  # never finishes


def get_items(daemon: Any) -> float:
    return metric(
        daemon,
        "drs_poller_aws_calls_total",
        {"service": "dynamodb", "operation": "GetItem", "region": REGION, "outcome": "success"},
    )


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


async def test_the_lean_projection_carries_the_key_revision_and_home_region(world):
    await put_running(world, "ex")
    daemon = await world.daemon()
    await world.step(daemon)
    await world.step(daemon, 45)  # a poll that writes: PollerRevision 1
    pages = [page async for page in daemon.store.query_polling(lean=True)]
    assert pages == [
        [
            {
                "ExecutionId": "ex",
                "PlanId": "plan-local",
                "Status": "POLLING",
                "PollerRevision": 1,
                "Waves": [{"Region": REGION}],
            }
        ]
    ]


async def test_lean_passes_read_whole_only_new_and_waiting_executions(world):
    await put_running(world, "running")
    wave1 = world.job([S2], LONG_RUNNING)
    await world.put_spec(
        world.spec(
            "waiting",  # wave 2 has no job yet: the initiator will write it
            [(REGION, [ServerSpec(S2, wave1)]), (REGION, [ServerSpec(S3, None)])],
        )
    )
    daemon = await world.daemon(full_discovery_interval=300, discovery_interval=30)
    passes = record_passes(daemon)
    await world.step(daemon)
    assert (passes, get_items(daemon)) == (["full"], 0)

    await world.step(daemon, 30)
    assert passes[-1] == "lean"
    assert get_items(daemon) == 1  # "waiting", not "running"

    await put_running(world, "new")
    assert await daemon.discover_once() == 3
    assert passes[-1] == "lean"
    assert get_items(daemon) == 3  # "waiting" again, and "new"
    assert queue_name("new", "plan-local") in daemon.state.tracked

    await world.step(daemon, 300)  # FULL_DISCOVERY_INTERVAL is up
    assert passes[-1] == "full"
    assert get_items(daemon) == 3


async def test_a_later_waves_job_ids_are_seen_by_the_next_lean_pass(world):
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


async def test_an_item_a_peer_wrote_is_read_whole_by_a_lean_pass(world):
    await put_running(world, "ex")
    daemon = await world.daemon(full_discovery_interval=3600)
    passes = record_passes(daemon)
    await world.step(daemon)
    await world.update(
        "ex",
        "SET PollerRevision = :r, Waves[0].Servers[0].#s = :s",
        {":r": 7, ":s": "IN_PROGRESS"},
        names={"#s": "Status"},
    )
    await daemon.discover_once()
    assert passes == ["full", "lean"]
    assert get_items(daemon) == 1
    item = tracked_item(daemon, "ex")
    assert (item["PollerRevision"], servers_of(item)[0]["Status"]) == (7, "IN_PROGRESS")


async def test_other_changes_reach_the_cache_at_the_next_full_pass(world):
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


async def test_a_lean_pass_forgets_an_execution_that_left_polling(world):
    await put_running(world, "ex")
    daemon = await world.daemon(full_discovery_interval=3600)
    passes = record_passes(daemon)
    await world.step(daemon)
    await world.update("ex", "SET #s = :c", {":c": "CANCELLED"}, names={"#s": "Status"})
    assert await daemon.discover_once() == 0
    assert passes == ["full", "lean"]
    assert daemon.state.tracked == {}


async def test_many_new_executions_turn_a_lean_pass_into_a_full_one(world):
    daemon = await world.daemon(full_discovery_interval=3600)
    daemon.discoverer.lean_fetch_floor = 2
    passes = record_passes(daemon)
    await world.step(daemon)
    for n in range(3):
        await put_running(world, f"ex{n}")
    assert await daemon.discover_once() == 3
    assert passes == ["full", "lean", "full"]
    assert get_items(daemon) == 0
    assert len(daemon.state.tracked) == 3


async def test_an_item_that_cannot_be_read_is_read_by_the_next_pass(world):
    await put_running(world, "first")
    daemon = await world.daemon(full_discovery_interval=3600)
    await world.step(daemon)
    await put_running(world, "later")
    get = daemon.store.get
    failures = [1]

    async def flaky_get(key: tuple[str, str]) -> dict[str, Any] | None:
        if failures:
            failures.pop()
            raise AwsCallError(
                service="dynamodb",
                operation="GetItem",
                kind=ErrorKind.THROTTLED,
                code="ProvisionedThroughputExceededException",
                message="retries exhausted",
            )
        return await get(key)

    daemon.store.get = flaky_get
    assert await daemon.discover_once() == 1  # "later" is not seen yet; "first" stays
    assert set(daemon.state.tracked) == {queue_name("first", "plan-local")}
    assert await daemon.discover_once() == 2
    assert queue_name("later", "plan-local") in daemon.state.tracked


async def test_a_full_discovery_interval_of_zero_reads_whole_items_every_pass(world):
    await put_running(world, "ex")
    daemon = await world.daemon(full_discovery_interval=0)
    passes = record_passes(daemon)
    for _ in range(3):
        await world.step(daemon, 30)
    assert passes == ["full", "full", "full"]


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
