"""contract §3: the daemon changes an item only while it is POLLING, never overwrites a
change it has not read, never moves a terminal status; several daemons agree."""

from __future__ import annotations

import asyncio

import pytest
from harness import REGION, ServerSnapshot, launched, metric, server_id, servers_of

from drs_poller.local.items import ServerSpec

# The guarantees hold on the seeds' index (ALL) and on the lean one init-table creates.
pytestmark = pytest.mark.parametrize("projection", ["ALL", "KEYS_ONLY"])

S1, S2, S3 = server_id(1), server_id(2), server_id(3)


async def test_unstarted_later_wave_blocks_and_initiator_write_is_not_lost(world):
    wave1 = world.job(
        [S1],
        [(0, "STARTED", {S1: ServerSnapshot("IN_PROGRESS")}), (60, "COMPLETED", {S1: launched()})],
    )
    await world.put_spec(
        world.spec(
            "ex",
            [
                (REGION, [ServerSpec(S1, wave1)]),
                (REGION, [ServerSpec(S2, None), ServerSpec(S3, None)]),
            ],
        )
    )
    # A heartbeat on every poll: the poll from the stale cache below really writes.
    daemon = await world.daemon(heartbeat_interval=1)
    await world.step(daemon)
    for _ in range(6):
        await world.step(daemon, 45)
    item = await world.get("ex")
    assert item["Waves"][0]["Status"] == "COMPLETED"
    assert item["Status"] == "POLLING"  # wave 2 has not started: not finished
    assert item["Phase"] == "PENDING"  # waiting for the next wave at the slow pace

    # The initiator starts wave 2 with a path-level write the daemon has not read yet.
    wave2 = world.job(
        [S2, S3], [(0, "STARTED", {}), (60, "COMPLETED", {S2: launched(), S3: launched()})]
    )
    await world.update(
        "ex",
        "SET Waves[1].Servers[0].RecoveryJobId = :j, "
        "Waves[1].Servers[1].RecoveryJobId = :j, Waves[1].#s = :ip",
        {":j": wave2, ":ip": "IN_PROGRESS"},
        names={"#s": "Status"},
    )
    # Poll from the stale cache first (no discovery): the write must not clobber it.
    await world.step(daemon, 45, discover=False)
    item = await world.get("ex")
    assert [s["RecoveryJobId"] for s in servers_of(item, 1)] == [wave2, wave2]
    assert metric(daemon, "drs_poller_conditional_write_conflicts_total") >= 1

    item = await world.run_until_final(daemon, "ex", step=45)
    assert item["Status"] == "COMPLETED"
    assert [s["Status"] for s in servers_of(item, 1)] == ["LAUNCHED", "LAUNCHED"]


async def test_cancelled_by_another_writer_stays_cancelled(world):
    job = world.job(
        [S1],
        [(0, "STARTED", {S1: ServerSnapshot("IN_PROGRESS")}), (100, "COMPLETED", {S1: launched()})],
    )
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(S1, job)])]))
    daemon = await world.daemon()
    await world.step(daemon)
    await world.update("ex", "SET #s = :c", {":c": "CANCELLED"}, names={"#s": "Status"})
    before = await world.get("ex")
    # DRS moves on; the daemon's cache still says POLLING.
    for _ in range(5):
        await world.step(daemon, 45, discover=False)
    item = await world.get("ex")
    assert item["Status"] == "CANCELLED"
    assert item == before  # nothing at all was written after the cancel
    assert metric(daemon, "drs_poller_polls_total", {"outcome": "gone"}) == 1


async def test_terminal_status_never_moves(world):
    job = world.job([S1], [(0, "COMPLETED", {S1: ServerSnapshot("FAILED")})])
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(S1, job)])]))
    daemon = await world.daemon()
    await world.daemon()  # a second replica exists too
    await daemon.discover_once()
    # Someone else finalizes it first, as COMPLETED (say, a manual override).
    await world.update("ex", "SET #s = :c", {":c": "COMPLETED"}, names={"#s": "Status"})
    await world.dispatch(daemon)
    item = await world.get("ex")
    assert item["Status"] == "COMPLETED"
    assert "EndTime" not in item


async def test_two_daemons_reach_the_same_result_as_one(world):
    jobs = [
        world.job(
            [server_id(10 + i)],
            [
                (0, "STARTED", {}),
                (
                    200 + 40 * i,
                    "COMPLETED",
                    {server_id(10 + i): launched() if i % 3 else ServerSnapshot("FAILED")},
                ),
            ],
        )
        for i in range(6)
    ]
    for i in range(3):
        await world.put_spec(
            world.spec(
                f"ex-{i}",
                [
                    (
                        REGION,
                        [
                            ServerSpec(server_id(10 + 2 * i), jobs[2 * i]),
                            ServerSpec(server_id(11 + 2 * i), jobs[2 * i + 1]),
                        ],
                    )
                ],
            )
        )
    first, second = await world.daemon(), await world.daemon()
    for _ in range(40):  # 600 s: past the last job's end at 400 s
        world.clock.advance(15)
        for daemon in (first, second):  # both poll everything: they race on every write
            await daemon.discover_once()
            await world.dispatch(daemon)
    statuses = [(await world.get(f"ex-{i}"))["Status"] for i in range(3)]
    assert statuses == ["PARTIAL", "PARTIAL", "COMPLETED"]  # jobs 0 and 3 fail
    for i in range(3):
        for server in servers_of(await world.get(f"ex-{i}")):
            history = [h["status"] for h in server["TransitionHistory"]]
            assert len(history) == len(set(history)), history  # no duplicated transition


async def test_malformed_items_are_reported_and_the_rest_keep_going(world):
    job = world.job([S1], [(0, "COMPLETED", {S1: launched()})])
    await world.put_spec(world.spec("good", [(REGION, [ServerSpec(S1, job)])]))
    await world.put(
        {
            "ExecutionId": "no-waves",
            "PlanId": "plan-local",
            "Status": "POLLING",
            "StartTime": world.clock.time(),
        }
    )
    await world.put(
        {
            "ExecutionId": "bad-server",
            "PlanId": "plan-local",
            "Status": "POLLING",
            "StartTime": world.clock.time(),
            "Waves": [{"WaveName": "w", "Region": REGION, "Servers": [{"Status": 3}]}],
        }
    )
    await world.put(
        {
            "ExecutionId": "bad-type",
            "PlanId": "plan-local",
            "Status": "POLLING",
            "StartTime": world.clock.time(),
            "ExecutionType": "FIRE_DRILL",
            "Waves": [],
        }
    )
    daemon = await world.daemon(max_execution_age=7200)
    item = await world.run_until_final(daemon, "good")
    assert item["Status"] == "COMPLETED"
    assert metric(daemon, "drs_poller_malformed_items_total") == 3
    untouched = await world.get("bad-server")
    assert untouched["Status"] == "POLLING"
    assert "LastPolledTime" not in untouched  # never written while malformed
    # Past the maximum age a malformed item is ended, saying why, not left POLLING forever.
    for _ in range(3):
        await world.step(daemon, 3600)
    ended = await world.get("bad-server")
    assert ended["Status"] == "FAILED"
    assert "Waves[0].Servers[0].SourceServerId" in ended["ErrorMessage"]
    assert (await world.get("bad-type"))["Status"] == "FAILED"
    assert "ExecutionType" in (await world.get("bad-type"))["ErrorMessage"]


async def test_an_unchanged_poll_writes_nothing_until_the_heartbeat(world):
    job = world.job([S1], [(0, "PENDING", {})])
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(S1, job)])]))
    daemon = await world.daemon(heartbeat_interval=300, interval_pending=45)
    await world.step(daemon)
    seeded = await world.get("ex")
    # Nothing changed at first sight, and the execution started now: not written (the
    # heartbeat counts from StartTime until the first write).
    assert "LastPolledTime" not in seeded
    for _ in range(5):  # 225 s of nothing new
        await world.step(daemon, 45)
    assert await world.get("ex") == seeded
    assert metric(daemon, "drs_poller_polls_total", {"outcome": "unchanged"}) == 6
    await world.step(daemon, 90)  # 315 s after StartTime: past the heartbeat interval
    item = await world.get("ex")
    assert item["LastPolledTime"] == world.clock.time()
    assert servers_of(item)[0]["PollAttempts"] == 7  # 1 + 5 + 1 polls, written late
    assert metric(daemon, "drs_poller_dynamodb_writes_total", {"kind": "heartbeat"}) == 1
    assert metric(daemon, "drs_poller_dynamodb_writes_total", {"kind": "state"}) == 0
    for _ in range(6):  # then 270 s after that write: not due again
        await world.step(daemon, 45)
    assert await world.get("ex") == item
    await world.step(daemon, 45)  # 315 s after it
    assert metric(daemon, "drs_poller_dynamodb_writes_total", {"kind": "heartbeat"}) == 2


async def test_a_bad_job_id_fails_its_server_and_does_not_blind_the_region(world):
    good = world.job([S1], [(0, "COMPLETED", {S1: launched()})])
    other = world.job([S3], [(0, "COMPLETED", {S3: launched()})])
    await world.put_spec(world.spec("good", [(REGION, [ServerSpec(S1, good)])]))
    await world.put_spec(
        world.spec("bad", [(REGION, [ServerSpec(S2, "job-123"), ServerSpec(S3, other)])])
    )
    daemon = await world.daemon()
    await world.step(daemon)  # one batch, one DescribeJobs for the region
    assert (await world.get("good"))["Status"] == "COMPLETED"
    bad = await world.get("bad")
    assert bad["Status"] == "PARTIAL"
    assert "'job-123' is not a DRS job id" in servers_of(bad)[0]["Error"]
    assert [c.status for c in world.drs.calls if c.operation == "DescribeJobs"] == [200]


async def test_a_phase_change_alone_is_not_written_and_the_schedule_still_follows_it(world):
    """Issue 18: a write for a phase change alone cost the whole item and told a reader
    nothing the next write does not; the schedule keeps the decided phase in memory."""
    job = world.job([S1], [(0, "PENDING", {}), (30, "STARTED", {})])
    # Started 900 s ago: the first poll writes the heartbeat (and the first Phase).
    await world.put_spec(
        world.spec("ex", [(REGION, [ServerSpec(S1, job)])], start_time=world.clock.time() - 900)
    )
    daemon = await world.daemon(heartbeat_interval=900, interval_pending=45, interval_started=15)
    assert await world.step(daemon) == 1
    first = await world.get("ex")
    assert first["Phase"] == "PENDING"
    assert await world.step(daemon, 45) == 1  # the job has STARTED; its server is PENDING
    assert await world.get("ex") == first  # nothing written for the phase alone
    assert await world.step(daemon, 14) == 0
    assert await world.step(daemon, 1) == 1  # polled at the STARTED pace all the same


async def test_an_execution_is_released_for_its_next_poll_when_its_own_write_lands(world):
    """A batch's executions are released one by one, as each one's own write lands: one
    slow write (or thousands queued behind a slow table, a restart's first poll at
    W10k-accounts) does not hold back the next poll of an execution already written."""
    fast_job = world.job([S1], [(0, "STARTED", {S1: ServerSnapshot("IN_PROGRESS")})])
    slow_job = world.job([S2], [(0, "STARTED", {S2: ServerSnapshot("IN_PROGRESS")})])
    await world.put_spec(world.spec("fast", [(REGION, [ServerSpec(S1, fast_job)])]))
    await world.put_spec(world.spec("slow", [(REGION, [ServerSpec(S2, slow_job)])]))
    daemon = await world.daemon(interval_in_progress=30)
    components = daemon.components
    assert components is not None
    poller, state = components.poller, components.state
    gate, holding = asyncio.Event(), asyncio.Event()
    write_back = poller._write_back

    async def held(tracked, **kwargs):
        if tracked.execution_id == "slow":
            holding.set()
            await gate.wait()
        await write_back(tracked, **kwargs)

    poller._write_back = held
    await daemon.discover_once()
    started = world.clock.monotonic()
    batch = state.queue.pop_due(started)
    assert len(batch) == 2  # one batch: one DescribeJobs for both
    polling = asyncio.create_task(poller.poll_batch(batch))
    fast = next(t for t in state.tracked.values() if t.execution_id == "fast")
    slow = next(t for t in state.tracked.values() if t.execution_id == "slow")
    async with asyncio.timeout(30):  # real I/O against moto: the fast write lands
        await holding.wait()
        while fast.in_flight:  # each release wakes the dispatcher
            await state.wakeup.wait()
            state.wakeup.clear()
    assert servers_of(await world.get("fast"))[0]["Status"] == "IN_PROGRESS"
    assert state.queue.due_at(fast.name) == started + 30  # due again, at the IN_PROGRESS pace
    assert slow.in_flight
    assert slow.name not in state.queue
    gate.set()
    await polling
    assert not slow.in_flight
    assert state.queue.due_at(slow.name) == started + 30
    assert servers_of(await world.get("slow"))[0]["Status"] == "IN_PROGRESS"
