"""Which replica polls which execution: membership from lease counters, and rendezvous hashing.

Every replica keeps one entry in the lease table and bumps its counter every third
of the lease time. A peer never compares its wall clock with anybody's: it notes, on
its own monotonic clock, when it first saw each counter value, and holds a replica
dead once that value has stood still for a whole lease time (the Kinesis Client
Library's rule). A replica that released its entry on shutdown is gone at once.

Ownership is computed, never claimed, and it is by *work shard*, not by execution.
One DescribeJobs call serves every due job of a place (an account and region, up to
1000 ids), so splitting a place's executions over replicas would split that call:
three replicas would make three calls where one replica makes one. A place's
executions (by their first wave's place) therefore form one shard, or, once they hold
more jobs than one call takes, as many shards as calls are needed (a power of two, so
that the count changes rarely). Shards are named ``<place>#<slot>``: ``us-east-1#0``
for the daemon's own account (the names of a single-account deployment, unchanged),
``222233334444/us-east-1#0`` for a member account.
Each shard belongs to the live replica with the highest rendezvous score for it.
Replicas that see the same members and shards agree without writing anything; when
a member joins or dies, only the shards it wins or held move. Views differ for at
most one lease read or discovery, which costs duplicated or delayed polls, never a
wrong status: correctness comes from conditional writes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drs_poller.core.places import ACCOUNT_ID, Place

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

# A replica stops polling once this share of the lease time has passed since it
# sent its last successful renewal: peers cannot have taken over before a whole
# lease time, measured from no earlier than that send.
SELF_VALIDITY = 0.8


@dataclass(frozen=True, slots=True)
class LeaseEntry:
    replica_id: str
    counter: int
    released: bool = False


@dataclass(slots=True)
class _Observed:
    counter: int
    since: float  # our monotonic time when we first saw this counter value
    released: bool


def rendezvous_score(replica_id: str, name: str) -> int:
    digest = hashlib.blake2b(f"{replica_id}\x1f{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner_of(name: str, members: Iterable[str]) -> str | None:
    """The member that owns ``name``: the highest score (ties, never seen, go by id)."""
    best: tuple[int, str] | None = None
    for member in members:
        candidate = (rendezvous_score(member, name), member)
        if best is None or candidate > best:
            best = candidate
    return None if best is None else best[1]


def home_place(item: Mapping[str, Any]) -> str:
    """The place of an item's first wave as a shard group name (:attr:`Place.key`): its
    Region for the daemon's own account (no AccountId: a single-account deployment keeps
    its shard names, so a rolling deploy moves nothing), ``<AccountId>/<Region>``
    otherwise; "" when it has no Region. An AccountId that is not 12 digits is ignored
    here (the item is malformed, and polls nothing)."""
    waves = item.get("Waves")
    if isinstance(waves, list) and waves and isinstance(waves[0], dict):
        region = waves[0].get("Region")
        if isinstance(region, str):
            account = waves[0].get("AccountId")
            valid = isinstance(account, str) and ACCOUNT_ID.match(account)
            return Place(account if valid else None, region).key
    return ""


def job_count(item: Mapping[str, Any]) -> int:
    """Distinct DRS jobs an item refers to (what its polls put in DescribeJobs)."""
    jobs: set[str] = set()
    for wave in item.get("Waves") or ():
        for server in (wave.get("Servers") or ()) if isinstance(wave, dict) else ():
            job = server.get("RecoveryJobId") if isinstance(server, dict) else None
            if isinstance(job, str):
                jobs.add(job)
    return len(jobs)


def shard_counts(jobs_per_place: Mapping[str, int], *, jobs_per_shard: int) -> dict[str, int]:
    """Shards per place (:func:`home_place`): enough for each to fit ``jobs_per_shard``
    jobs, rounded up to a power of two. Places with one shard are left out (one is the
    default)."""
    counts = {}
    for place, jobs in jobs_per_place.items():
        needed = -(-jobs // jobs_per_shard)
        if needed > 1:
            counts[place] = 1 << (needed - 1).bit_length()
    return counts


def work_shard(name: str, place: str, shards: Mapping[str, int]) -> str:
    """The shard an execution belongs to: its place (:func:`home_place`), and a slot
    within it by hash: ``us-east-1#0``, ``222233334444/us-east-1#1``."""
    count = shards.get(place, 1)
    slot = rendezvous_score("shard", name) % count if count > 1 else 0
    return f"{place}#{slot}"


class Membership:
    """What this replica has observed of its group's lease counters, on its own monotonic clock."""

    def __init__(self, *, me: str, lease_time: float) -> None:
        self.me = me
        self.lease_time = lease_time
        self._observed: dict[str, _Observed] = {}
        self._renewal_sent: float | None = None

    # --- this replica ------------------------------------------------------------

    def renewed(self, *, sent_at: float) -> None:
        """Our renewal sent at monotonic ``sent_at`` succeeded."""
        if self._renewal_sent is None or sent_at > self._renewal_sent:
            self._renewal_sent = sent_at

    def released(self) -> None:
        self._renewal_sent = None

    def valid(self, *, now: float) -> bool:
        """Whether we may still poll: our lease cannot have expired in any peer's eyes."""
        return (
            self._renewal_sent is not None
            and now - self._renewal_sent < SELF_VALIDITY * self.lease_time
        )

    # --- the group -----------------------------------------------------------------

    def observe(self, entries: Iterable[LeaseEntry], *, now: float) -> None:
        """Take one full read of the group's entries, made at monotonic ``now``."""
        current: dict[str, _Observed] = {}
        for entry in entries:
            before = self._observed.get(entry.replica_id)
            if before is not None and before.counter == entry.counter:
                current[entry.replica_id] = _Observed(entry.counter, before.since, entry.released)
            else:
                current[entry.replica_id] = _Observed(entry.counter, now, entry.released)
        self._observed = current

    def live(self, *, now: float) -> tuple[str, ...]:
        """The replicas that share the work now, sorted. We are in it only while valid."""
        members = {
            replica
            for replica, seen in self._observed.items()
            if replica != self.me and not seen.released and now - seen.since < self.lease_time
        }
        if self.valid(now=now):
            members.add(self.me)
        return tuple(sorted(members))

    def dead(self, *, now: float) -> tuple[str, ...]:
        """Replicas in the table whose counter stood still for a lease time, or released."""
        return tuple(
            sorted(
                replica
                for replica, seen in self._observed.items()
                if replica != self.me and (seen.released or now - seen.since >= self.lease_time)
            )
        )
