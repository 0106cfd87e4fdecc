"""The keeper of leases: renews this replica's lease, reads the group's, and rebalances.

Every tick it bumps its own counter, then reads every entry of the group and hands
:class:`~drs_poller.core.ownership.Membership` what it saw. The members that come out
decide, by rendezvous hashing, which work shards (a region's executions, split only
past ``SHARD_JOBS`` jobs) this replica polls (:meth:`EngineState.rebalance`). A
peer that crashed is dropped once its counter stood still for ``lease_time`` on our
clock; one that shut down released its entry and is dropped at the next read.
Take-over needs no write: the executions' items are already in memory from the last
discovery.

Reads come right after each renewal (every third of the lease time, or half a
discovery interval if that is shorter), so a crash is taken over within the lease
time plus two ticks (at most one discovery interval), and a release within one tick.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import structlog

from drs_poller.clients.calling import AwsCallError
from drs_poller.clock import ticks
from drs_poller.core.ownership import Membership

if TYPE_CHECKING:
    from drs_poller.clients.leases import LeaseTable
    from drs_poller.clock import Clock
    from drs_poller.engine.state import EngineState
    from drs_poller.observability.metrics import Metrics

log = structlog.get_logger("drs_poller.leases")

# Entries of replicas long gone are collected by the table's TTL this long after
# their last renewal or release (wall clock; never used to decide anything).
ENTRY_RETENTION = 86_400.0


def default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class LeaseKeeper:
    def __init__(
        self,
        *,
        table: LeaseTable,
        state: EngineState,
        metrics: Metrics,
        clock: Clock,
        replica_id: str,
        lease_time: float,
        discovery_interval: float,
    ) -> None:
        self.table = table
        self.state = state
        self.metrics = metrics
        self.clock = clock
        self.replica_id = replica_id
        self.lease_time = lease_time
        # A tick renews and reads. A third of the lease leaves two renewals of slack
        # before our own lease lapses; at most half a discovery interval keeps a crash's
        # take-over (a lease time plus two ticks) within a lease time plus one interval.
        self.renew_interval = min(lease_time / 3, discovery_interval / 2)
        self.membership = Membership(me=replica_id, lease_time=lease_time)
        self._info = f"host={socket.gethostname()} pid={os.getpid()}"
        self._released = False

    def may_poll(self) -> bool:
        return not self._released and self.membership.valid(now=self.clock.monotonic())

    async def tick(self) -> AwsCallError | None:
        """Renew, read the group, rebalance. Each step's failure is logged, not raised;
        the renewal's error is returned (start-up treats a permanent one as fatal)."""
        if self._released:
            return None
        renewal_error: AwsCallError | None = None
        sent_at = self.clock.monotonic()
        try:
            await self.table.renew(
                self.replica_id, expires_at=self.clock.time() + ENTRY_RETENTION, info=self._info
            )
        except AwsCallError as error:
            renewal_error = error
            self.metrics.lease_renewals.labels("error").inc()
            log.warning("lease renewal failed", error=str(error), replica_id=self.replica_id)
        else:
            self.membership.renewed(sent_at=sent_at)
            self.metrics.lease_renewals.labels("success").inc()
        try:
            entries = await self.table.entries()
        except AwsCallError as error:
            log.warning("reading the lease table failed", error=str(error))
        else:
            self.membership.observe(entries, now=self.clock.monotonic())
        self.rebalance()
        return renewal_error

    def rebalance(self) -> None:
        now = self.clock.monotonic()
        members = self.membership.live(now=now)
        before = self.state.members
        taken, handed = self.state.rebalance(members, now=now)
        self.metrics.replicas.set(len(members))
        if before != members:
            log.info(
                "replicas changed",
                replica_id=self.replica_id,
                members=list(members),
                gone=list(self.membership.dead(now=now)),
                taken_over=taken,
                handed_over=handed,
                tracked=len(self.state.tracked),
            )
            self.metrics.ownership_changes.labels("taken").inc(taken)
            self.metrics.ownership_changes.labels("handed").inc(handed)

    async def run(self) -> None:
        """Tick every renew interval, drift-corrected, until cancelled."""
        async for _ in ticks(self.clock, self.renew_interval):
            try:
                await self.tick()
            except Exception:
                log.exception("lease keeping failed unexpectedly")

    async def release(self) -> None:
        """Give up our executions: peers take them over at their next read."""
        if self._released:
            return
        self._released = True
        self.membership.released()
        self.state.rebalance((), now=self.clock.monotonic())
        try:
            await self.table.release(
                self.replica_id, expires_at=self.clock.time() + ENTRY_RETENTION
            )
        except AwsCallError as error:
            log.warning(
                "releasing the lease failed; peers take over after the lease time",
                error=str(error),
            )
        else:
            self.metrics.lease_renewals.labels("released").inc()
            log.info("lease released", replica_id=self.replica_id)
