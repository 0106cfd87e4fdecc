"""Membership from lease counters observed on our own monotonic clock, and rendezvous ownership."""

from __future__ import annotations

from collections import Counter

import pytest

from drs_poller.core.ownership import (
    SELF_VALIDITY,
    LeaseEntry,
    Membership,
    home_place,
    job_count,
    owner_of,
    shard_counts,
    work_shard,
)

LEASE = 30.0


def membership(**seen: int) -> Membership:
    view = Membership(me="me", lease_time=LEASE)
    view.renewed(sent_at=0.0)
    view.observe([LeaseEntry(r, c) for r, c in seen.items()], now=0.0)
    return view


@pytest.mark.parametrize(
    ("reads", "at", "live"),
    [
        # (monotonic time of a read, {replica: counter}) ..., then asked at `at`
        ([(0, {"a": 1})], 29.9, ("a", "me")),
        ([(0, {"a": 1})], 30.0, ("me",)),  # stood still a whole lease time: dead
        ([(0, {"a": 1}), (20, {"a": 2})], 49.9, ("a", "me")),  # moved: counted from 20
        ([(0, {"a": 1}), (20, {"a": 2})], 50.0, ("me",)),
        ([(0, {"a": 1}), (20, {"a": 1})], 30.0, ("me",)),  # re-read, same value: still 0
        ([(0, {"a": 7}), (10, {})], 10.0, ("me",)),  # gone from the table
        ([(0, {"a": 3}), (10, {"a": 9})], 39.9, ("a", "me")),  # any change counts, even +6
    ],
)
def test_a_peer_is_live_until_its_counter_stands_still_for_a_lease_time(reads, at, live):
    view = Membership(me="me", lease_time=LEASE)
    view.renewed(sent_at=at - 1)
    for now, counters in reads:
        view.observe([LeaseEntry(r, c) for r, c in counters.items()], now=now)
    assert view.live(now=at) == live


def test_a_released_peer_is_gone_at_once():
    view = membership(a=4)
    view.observe([LeaseEntry("a", 4, released=True)], now=1.0)
    assert view.live(now=1.0) == ("me",)
    assert view.dead(now=1.0) == ("a",)


@pytest.mark.parametrize(
    ("sent_at", "now", "valid"),
    [
        (0.0, 0.0, True),
        (0.0, SELF_VALIDITY * LEASE - 0.01, True),
        (0.0, SELF_VALIDITY * LEASE, False),  # peers may take over from LEASE on: stop first
        (100.0, 101.0, True),
    ],
)
def test_we_poll_only_while_our_last_renewal_is_recent(sent_at, now, valid):
    view = Membership(me="me", lease_time=LEASE)
    assert not view.valid(now=now)  # nothing renewed yet
    view.renewed(sent_at=sent_at)
    assert view.valid(now=now) is valid
    assert ("me" in view.live(now=now)) is valid


def test_a_late_answer_of_an_older_renewal_does_not_extend_the_lease():
    view = Membership(me="me", lease_time=LEASE)
    view.renewed(sent_at=10.0)
    view.renewed(sent_at=5.0)
    assert not view.valid(now=10.0 + SELF_VALIDITY * LEASE)


def test_released_means_no_longer_valid():
    view = membership()
    view.released()
    assert not view.valid(now=0.0)
    assert view.live(now=0.0) == ()


def test_membership_reads_only_the_monotonic_times_it_is_given():
    # The same reads at the same monotonic times give the same answer whatever the
    # peers' wall clocks say: nothing but counters and our own times goes in.
    a = Membership(me="me", lease_time=LEASE)
    b = Membership(me="me", lease_time=LEASE)
    for view, base in ((a, 0.0), (b, 1e9)):
        view.renewed(sent_at=base + 25)
        view.observe([LeaseEntry("x", 1)], now=base)
        view.observe([LeaseEntry("x", 1)], now=base + 15)
    assert a.live(now=29.9) == b.live(now=1e9 + 29.9) == ("me", "x")
    assert a.live(now=30.0) == b.live(now=1e9 + 30.0) == ("me",)


NAMES = [f"execution-{n}\x1fplan" for n in range(3000)]


def test_rendezvous_spreads_executions_evenly():
    shares = Counter(owner_of(name, ("r1", "r2", "r3")) for name in NAMES)
    assert set(shares) == {"r1", "r2", "r3"}
    assert all(900 <= share <= 1100 for share in shares.values()), shares


def test_a_joining_replica_takes_only_its_share_and_nothing_else_moves():
    before = {name: owner_of(name, ("r1", "r2")) for name in NAMES}
    after = {name: owner_of(name, ("r1", "r2", "r3")) for name in NAMES}
    moved = [name for name in NAMES if before[name] != after[name]]
    assert all(after[name] == "r3" for name in moved)
    assert 900 <= len(moved) <= 1100


def test_a_dead_replicas_executions_are_spread_over_the_others():
    before = {name: owner_of(name, ("r1", "r2", "r3")) for name in NAMES}
    after = {name: owner_of(name, ("r1", "r2")) for name in NAMES}
    for name in NAMES:
        if before[name] != "r3":
            assert after[name] == before[name]  # a survivor keeps what it had
    orphans = Counter(after[name] for name in NAMES if before[name] == "r3")
    assert min(orphans.values()) > 0.4 * sum(orphans.values())


def test_everyone_agrees_without_talking():
    members = ("b", "a", "c")
    assert [owner_of(n, members) for n in NAMES] == [owner_of(n, sorted(members)) for n in NAMES]
    assert owner_of("x", ()) is None


@pytest.mark.parametrize(
    ("jobs", "per_shard", "expected"),
    [
        ({"us-east-1": 0}, 1000, {}),
        ({"us-east-1": 1000}, 1000, {}),  # one call's worth: one shard (the default)
        ({"us-east-1": 1001}, 1000, {"us-east-1": 2}),
        ({"us-east-1": 2500}, 1000, {"us-east-1": 4}),  # 3 calls: rounded up to a power of 2
        ({"us-east-1": 100_000}, 1000, {"us-east-1": 128}),
        ({"us-east-1": 40, "eu-west-1": 3}, 1, {"us-east-1": 64, "eu-west-1": 4}),
    ],
)
def test_a_region_gets_as_many_shards_as_describe_jobs_calls_it_needs(jobs, per_shard, expected):
    assert shard_counts(jobs, jobs_per_shard=per_shard) == expected


def test_a_regions_executions_share_a_shard_until_it_needs_more():
    one = {work_shard(name, "us-east-1", {}) for name in NAMES}
    assert one == {"us-east-1#0"}
    four = Counter(work_shard(name, "us-east-1", {"us-east-1": 4}) for name in NAMES)
    assert set(four) == {f"us-east-1#{n}" for n in range(4)}
    assert min(four.values()) > 600
    # Doubling the shards moves each execution to its own slot or the one 'count' above.
    for name in NAMES[:200]:
        before = int(work_shard(name, "r", {"r": 4}).split("#")[1])
        after = int(work_shard(name, "r", {"r": 8}).split("#")[1])
        assert after in {before, before + 4}


@pytest.mark.parametrize(
    ("item", "region", "jobs"),
    [
        ({}, "", 0),
        ({"Waves": []}, "", 0),
        ({"Waves": "garbage"}, "", 0),
        (
            {
                "Waves": [
                    {
                        "Region": "eu-west-1",
                        "Servers": [
                            {"RecoveryJobId": "drsjob-1"},
                            {"RecoveryJobId": "drsjob-1"},  # a job shared by two servers
                            {"SourceServerId": "s-2"},  # not started yet
                        ],
                    },
                    {"Region": "us-east-1", "Servers": [{"RecoveryJobId": "drsjob-2"}]},
                ]
            },
            "eu-west-1",
            2,
        ),
    ],
)
def test_an_items_home_place_and_jobs_are_read_safely(item, region, jobs):
    assert home_place(item) == region
    assert job_count(item) == jobs
