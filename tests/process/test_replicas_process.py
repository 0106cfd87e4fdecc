"""Replicas as real processes sharing one table through leases: a stalled replica (its
whole process stopped with SIGSTOP for twice the lease time) is taken over in time,
and once woken it cannot move anything back."""

from __future__ import annotations

import asyncio
import signal
import time

from fleet import compressed_settings, history_problems, seed_fleet, wait_for_all
from harness import DaemonProcess, daemon_env

SPEED = 60.0
LEASE = 3.0  # the smallest lease time the settings allow; renewed every second


def replica_env(world, lease_table: str, name: str, **settings) -> dict[str, str]:
    return daemon_env(
        stack=world.stack,
        table=world.table,
        lease_table_name=lease_table,
        replica_id=name,
        lease_time=LEASE,
        **{**compressed_settings(SPEED), **settings},
    )


async def wait_until(predicate, *, within: float, step: float = 0.05) -> float:
    """Wait (real time) until ``predicate()`` holds; return how long it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(step)
    return time.monotonic() - started


def members_seen(daemon: DaemonProcess) -> list[list[str]]:
    return [line["members"] for line in daemon.events("replicas changed")]


async def test_a_stalled_replica_is_taken_over_and_cannot_regress_anything(live_world):
    world = live_world
    lease_table = await world.lease_table()
    fleet = seed_fleet(world, executions=24, servers=2, speed=SPEED)
    await fleet.write_all(world)
    a = DaemonProcess(replica_env(world, lease_table, "replica-a"))
    b = DaemonProcess(replica_env(world, lease_table, "replica-b"))
    await a.start()
    await b.start()
    try:
        both = ["replica-a", "replica-b"]
        await wait_until(lambda: both in members_seen(a) and both in members_seen(b), within=15)
        a.proc.send_signal(signal.SIGSTOP)  # the whole process stalls: loop, timers, sockets
        stalled_at = len(b.events("replicas changed"))
        took = await wait_until(
            lambda: ["replica-b"] in members_seen(b)[stalled_at:], within=4 * LEASE
        )
        # Not before a lease time; within it plus two renew intervals (and a poll of slack).
        assert LEASE - 0.5 <= took <= LEASE + 2 * LEASE / 3 + 1.0, took
        await asyncio.sleep(max(0.0, 2 * LEASE - took))
        a.proc.send_signal(signal.SIGCONT)
        finals = await wait_for_all(world, fleet.expected, deadline=world.clock.time() + 120)
        assert await a.stop(signal.SIGTERM) == 0
        assert await b.stop(signal.SIGTERM) == 0
    finally:
        for daemon in (a, b):
            if daemon.proc is not None and daemon.proc.returncode is None:
                daemon.proc.send_signal(signal.SIGCONT)
            await daemon.kill()
    wrong = {e: finals[e]["Status"] for e, s in fleet.expected.items() if finals[e]["Status"] != s}
    assert not wrong, wrong
    assert not history_problems(finals)
    # The woken replica came back into the group, and the work was shared again.
    assert both in members_seen(a)[1:] or both in members_seen(b)[stalled_at:]
    for daemon in (a, b):
        assert not daemon.events("poll failed unexpectedly; retried on the next poll")
