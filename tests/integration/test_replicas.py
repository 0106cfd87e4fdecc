"""Several replicas on one table (issue: leases, fenced writes): each execution has one
poller in steady state, a peer takes over after a crash or a release, a replica that
cannot renew stops polling, and wall clocks play no part. Real daemons, one moto
server and the DRS simulator, on clocks the test moves."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from harness import OTHER_REGION, REGION, ServerSnapshot, launched, metric, server_id, servers_of
from harness import owned_executions as _owned
from harness import replica_turn as _turn

from drs_poller.local.items import ServerSpec

# The guarantees hold on the seeds' index (ALL) and on the lean one init-table creates.
pytestmark = pytest.mark.parametrize("projection", ["ALL", "KEYS_ONLY"])

LEASE = 30.0
RENEW = LEASE / 3


@dataclass
class SkewedClock:
    """Another host's clock: its own wall time (skewed, and it can jump) and its own
    monotonic origin, both moving with the world's clock."""

    base: object
    wall_offset: float = 0.0
    mono_offset: float = 0.0

    def time(self) -> float:
        return self.base.time() + self.wall_offset

    def monotonic(self) -> float:
        return self.base.monotonic() + self.mono_offset

    async def sleep(self, seconds: float) -> None:
        await self.base.sleep(seconds)

    async def wait(self, event, at_most: float) -> bool:
        return await self.base.wait(event, at_most)


async def _executions(world, count: int, *, seconds: float = 3600.0) -> list[str]:
    """``count`` drills of one server each, PENDING for ``seconds`` then launched."""
    names = []
    for n in range(count):
        sid = server_id(1000 + n)
        job = world.job([sid], [(0, "PENDING", {}), (seconds, "COMPLETED", {sid: launched()})])
        await world.put_spec(world.spec(f"ex-{n:03d}", [(REGION, [ServerSpec(sid, job)])]))
        names.append(f"ex-{n:03d}")
    return names


async def _replica(world, lease_table: str, name: str, **overrides):
    """A replica sharing work by execution: one job per shard, as in a region with far
    more jobs than one DescribeJobs call takes (tests below use the default too)."""
    return await world.daemon(
        lease_table_name=lease_table,
        replica_id=name,
        lease_time=LEASE,
        **{"shard_jobs": 1, **overrides},
    )


async def test_two_replicas_split_the_work_with_one_poller_per_execution(world):
    names = await _executions(world, 40)
    table = await world.lease_table()
    a = await _replica(world, table, "replica-a")
    b = await _replica(world, table, "replica-b")
    await _turn(world, a, b)
    await _turn(world, a, b, seconds=RENEW)  # a saw b register after its own first read
    assert _owned(a).isdisjoint(_owned(b))
    assert _owned(a) | _owned(b) == set(names)
    assert 10 <= len(_owned(a)) <= 30, (len(_owned(a)), len(_owned(b)))
    assert metric(a, "drs_poller_replicas") == metric(b, "drs_poller_replicas") == 2

    # Steady state: every DescribeJobs call asks for the jobs of one replica only.
    world.drs.reset_calls()

    def unchanged() -> float:
        return sum(metric(r, "drs_poller_polls_total", {"outcome": "unchanged"}) for r in (a, b))

    before = unchanged()
    for _ in range(6):
        await _turn(world, a, b, seconds=RENEW)
    polls = unchanged() - before
    # 60 s at a 45 s PENDING interval: each execution polled once or twice, by one replica.
    assert 40 <= polls <= 80


async def test_by_default_a_regions_executions_stay_together_so_no_call_is_split(world):
    # Two regions, each with far fewer jobs than one DescribeJobs call takes: each region
    # is one shard, polled by one replica, so two replicas make the calls of one.
    names = []
    for n in range(20):
        sid = server_id(2000 + n)
        region = REGION if n % 2 else OTHER_REGION
        job = world.job([sid], [(0, "PENDING", {})], region=region)
        await world.put_spec(world.spec(f"ex-{n:03d}", [(region, [ServerSpec(sid, job)])]))
        names.append(f"ex-{n:03d}")
    solo = await world.daemon()
    await _turn(world, solo)
    world.drs.reset_calls()
    for _ in range(4):
        await _turn(world, solo, seconds=45)
    solo_calls = world.drs.count("DescribeJobs")

    table = await world.lease_table()
    a = await _replica(world, table, "replica-a", shard_jobs=1000)
    b = await _replica(world, table, "replica-b", shard_jobs=1000)
    await _turn(world, a, b)
    await _turn(world, a, b, seconds=RENEW)
    by_region = {
        region: {
            daemon.settings.replica_id
            for daemon in (a, b)
            for tracked in daemon.state.tracked.values()
            if tracked.execution.waves[0].region == region
        }
        for region in (REGION, OTHER_REGION)
    }
    assert all(len(owners) == 1 for owners in by_region.values()), by_region
    assert _owned(a) | _owned(b) == set(names)
    assert _owned(a).isdisjoint(_owned(b))
    world.drs.reset_calls()
    for _ in range(4):
        await _turn(world, a, b, seconds=45)
    assert world.drs.count("DescribeJobs") == solo_calls


async def test_a_replica_without_a_lease_table_polls_everything(world):
    names = await _executions(world, 5)
    solo = await world.daemon()
    await _turn(world, solo)
    assert _owned(solo) == set(names)
    assert solo.state.members is None


async def test_a_crashed_replica_is_taken_over_after_the_lease_time_never_before(world):
    names = await _executions(world, 30)
    table = await world.lease_table()
    a = await _replica(world, table, "replica-a")
    b = await _replica(world, table, "replica-b")
    await _turn(world, a, b)
    await _turn(world, a, b, seconds=RENEW)
    orphans = _owned(a)
    assert orphans
    crashed_at = world.clock.monotonic()  # a stops: no renewal, no poll, ever again
    taken_over_at = None
    for _ in range(12):
        world.drs.reset_calls()
        await _turn(world, b, seconds=RENEW / 2)
        if _owned(b) == set(names):
            taken_over_at = world.clock.monotonic()
            # b polls them in the same turn: their items were in memory since discovery.
            assert world.drs.count("DescribeJobs") == 1
            break
        assert _owned(b).isdisjoint(orphans)  # a's share is not touched before that
    assert taken_over_at is not None
    elapsed = taken_over_at - crashed_at
    # Not before a whole lease time without movement; within it plus two renewals.
    assert LEASE <= elapsed <= LEASE + 2 * RENEW, elapsed
    assert metric(b, "drs_poller_ownership_changes_total", {"direction": "taken"}) == len(orphans)


async def test_a_released_lease_is_taken_over_at_the_peers_next_read(world):
    names = await _executions(world, 20)
    table = await world.lease_table()
    a = await _replica(world, table, "replica-a")
    b = await _replica(world, table, "replica-b")
    await _turn(world, a, b)
    await _turn(world, a, b, seconds=RENEW)
    assert _owned(a)
    await a.leases.release()  # what shutdown does once its polls in flight are done
    assert _owned(a) == set()
    assert not a.may_poll()
    await _turn(world, b, seconds=1.0)
    assert _owned(b) == set(names)


async def test_a_replica_that_cannot_renew_stops_polling_what_it_no_longer_owns(world):
    await _executions(world, 10)
    table = await world.lease_table()
    a = await _replica(world, table, "replica-a")
    await _turn(world, a)
    assert a.may_poll()
    assert _owned(a)
    # No renewal for 80 % of the lease time (a stalled keeper, an unreachable table):
    world.clock.advance(0.8 * LEASE)
    assert not a.may_poll()
    # Its executions fall due (PENDING: 45 s), and still nothing is polled.
    world.clock.advance(46 - 0.8 * LEASE)
    world.drs.reset_calls()
    assert await world.dispatch(a) == 0
    assert world.drs.count("DescribeJobs") == 0
    # Renewed again: it polls what is due.
    await _turn(world, a)
    assert a.may_poll()
    assert world.drs.count("DescribeJobs") == 1


async def test_a_new_replica_takes_its_share_and_the_old_one_hands_it_over(world):
    names = await _executions(world, 30)
    table = await world.lease_table()
    a = await _replica(world, table, "replica-a")
    await _turn(world, a)
    assert _owned(a) == set(names)
    b = await _replica(world, table, "replica-b")
    await _turn(world, a, b, seconds=RENEW)
    # a read the table before b registered: for one renew interval both poll b's share
    # (fenced writes make that harmless); a hands it over at its next read.
    await _turn(world, a, b, seconds=RENEW)
    assert _owned(a).isdisjoint(_owned(b))
    assert _owned(a) | _owned(b) == set(names)
    handed = metric(a, "drs_poller_ownership_changes_total", {"direction": "handed"})
    assert handed == len(_owned(b)) > 0


@pytest.mark.parametrize(
    ("wall_a", "wall_b", "jump_b"),
    [
        (0.0, 0.0, 0.0),
        (600.0, -600.0, 0.0),  # wall clocks 20 minutes apart
        (-600.0, 600.0, 3600.0),  # and the survivor's wall clock steps an hour ahead
        (0.0, 0.0, -3600.0),  # or an hour back
    ],
)
async def test_wall_clocks_apart_or_jumping_do_not_change_the_take_over(
    world, wall_a, wall_b, jump_b
):
    names = await _executions(world, 12)
    table = await world.lease_table()
    clock_a = SkewedClock(world.clock, wall_offset=wall_a, mono_offset=5.0)
    clock_b = SkewedClock(world.clock, wall_offset=wall_b, mono_offset=123_456.0)
    a = await _replica(world, table, "replica-a", clock=clock_a)
    b = await _replica(world, table, "replica-b", clock=clock_b)
    await _turn(world, a, b)
    await _turn(world, a, b, seconds=RENEW)
    crashed_at = world.clock.monotonic()
    clock_b.wall_offset += jump_b
    steps = 0
    while _owned(b) != set(names):
        await _turn(world, b, seconds=1.0)
        steps += 1
        assert steps < 100
    # Measured on b's own monotonic clock: the same in every case.
    assert world.clock.monotonic() - crashed_at == pytest.approx(LEASE + 1.0, abs=RENEW)


async def test_shared_work_still_reaches_the_right_final_status(world):
    # Two replicas, a mix of outcomes: the results are those of one daemon.
    s = [server_id(n) for n in range(1, 7)]
    job1 = world.job(
        s[:3],
        [
            (0, "STARTED", {x: ServerSnapshot("IN_PROGRESS") for x in s[:3]}),
            (
                200,
                "COMPLETED",
                {s[0]: launched(), s[1]: launched(), s[2]: ServerSnapshot("FAILED")},
            ),
        ],
    )
    job2 = world.job(
        s[3:], [(0, "STARTED", {}), (150, "COMPLETED", {x: launched() for x in s[3:]})]
    )
    await world.put_spec(world.spec("mixed", [(REGION, [ServerSpec(x, job1) for x in s[:3]])]))
    await world.put_spec(world.spec("clean", [(REGION, [ServerSpec(x, job2) for x in s[3:]])]))
    table = await world.lease_table()
    a = await _replica(world, table, "replica-a")
    b = await _replica(world, table, "replica-b")
    for _ in range(40):
        await _turn(world, a, b, seconds=RENEW)
        if (await world.get("mixed"))["Status"] != "POLLING" and (await world.get("clean"))[
            "Status"
        ] != "POLLING":
            break
    assert (await world.get("mixed"))["Status"] == "PARTIAL"
    assert (await world.get("clean"))["Status"] == "COMPLETED"
    for name in ("mixed", "clean"):
        for server in servers_of(await world.get(name)):
            statuses = [entry["status"] for entry in server["TransitionHistory"]]
            assert len(statuses) == len(set(statuses)), statuses
