"""The daemon's root loops as ``startup()`` runs them (the discoverer, the dispatcher,
the keeper of leases), on virtual time: the world's clock moves from one deadline of
the loops to the next, and the tests assert when things happened on it."""

from __future__ import annotations

from harness import REGION, ServerSnapshot, metric, server_id

from drs_poller.local.items import ServerSpec

S1, S2 = server_id(1), server_id(2)


def _describe_times(world, start: float) -> list[float]:
    """Seconds after ``start`` (wall) of every DescribeJobs the simulator answered."""
    return [
        round(call.at - start, 3) for call in world.drs.calls if call.operation == "DescribeJobs"
    ]


async def _pending(world, execution_id: str, sid: str) -> None:
    job = world.job([sid], [(0, "PENDING", {})])  # PENDING for good: polled every 45 s
    await world.put_spec(world.spec(execution_id, [(REGION, [ServerSpec(sid, job)])]))


async def test_a_poll_comes_at_its_due_time_not_at_the_next_tick(world):
    await _pending(world, "ex", S1)
    daemon = await world.daemon(discovery_interval=60, interval_pending=45)
    start = world.clock.time()
    await world.start(daemon)
    await world.run_for(140)
    # Discovery ticks at 0, 60, 120; the polls keep their own 45 s, to the millisecond.
    assert _describe_times(world, start) == [0.0, 45.0, 90.0, 135.0]
    assert world.clock.time() == start + 140


async def test_the_dispatcher_sleeps_until_the_next_due_poll(world):
    await _pending(world, "ex", S1)
    daemon = await world.daemon(discovery_interval=600, interval_pending=45)
    start = world.clock.time()
    await world.start(daemon)
    await world.run_for(44.999)
    assert _describe_times(world, start) == [0.0]
    await world.run_for(0.001)
    assert _describe_times(world, start) == [0.0, 45.0]


async def test_discovery_runs_every_interval_and_a_new_execution_waits_for_it(world):
    daemon = await world.daemon(discovery_interval=30)
    start = world.clock.time()
    await world.start(daemon)
    await world.run_for(40)
    await _pending(world, "late", S2)  # written at t=40: the next discovery is at t=60
    await world.run_for(19.9)
    assert not daemon.state.tracked
    assert _describe_times(world, start) == []
    await world.run_for(0.1)
    assert [t.execution_id for t in daemon.state.tracked.values()] == ["late"]
    assert _describe_times(world, start) == [60.0]  # polled as soon as discovered
    assert metric(daemon, "drs_poller_discoveries_total", {"outcome": "success"}) == 3
    assert metric(daemon, "drs_poller_last_discovery_timestamp_seconds") == start + 60


async def test_the_keeper_renews_every_third_of_the_lease(world):
    table = await world.lease_table()
    daemon = await world.daemon(
        lease_table_name=table, replica_id="a", lease_time=30, discovery_interval=60
    )
    renewals = {"outcome": "success"}
    await world.start(daemon)
    assert metric(daemon, "drs_poller_lease_renewals_total", renewals) == 1  # at t=0
    await world.run_for(9.999)
    assert metric(daemon, "drs_poller_lease_renewals_total", renewals) == 1
    await world.run_for(0.001)
    assert metric(daemon, "drs_poller_lease_renewals_total", renewals) == 2  # t=10
    await world.run_for(20)
    assert metric(daemon, "drs_poller_lease_renewals_total", renewals) == 4  # 20, 30
    assert daemon.may_poll()


async def test_a_replica_that_releases_is_taken_over_at_the_peers_next_renewal(world):
    for n in range(6):
        await _pending(world, f"ex-{n}", server_id(100 + n))
    table = await world.lease_table()
    settings = {"lease_table_name": table, "lease_time": 30, "shard_jobs": 1}
    a = await world.daemon(replica_id="a", **settings)
    b = await world.daemon(replica_id="b", **settings)
    await world.start(a)
    await world.start(b)
    await world.run_for(30)  # both have seen each other, and split the work
    assert a.state.tracked
    assert b.state.tracked
    await b.leases.release()
    await world.run_for(9.999)  # a's renewals are every 10 s (a third of the lease)
    assert len(a.state.tracked) < 6
    await world.run_for(0.001)
    assert len(a.state.tracked) == 6
    assert not b.state.tracked


async def test_step_still_discovers_then_polls_what_is_due(world):
    job = world.job([S1], [(0, "STARTED", {S1: ServerSnapshot("IN_PROGRESS")})])
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(S1, job)])]))
    daemon = await world.daemon()
    assert await world.step(daemon) == 1
    assert await world.step(daemon, 29) == 0  # IN_PROGRESS: every 30 s
    assert await world.step(daemon, 1) == 1
