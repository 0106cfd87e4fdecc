"""W10k-accounts (benchmarks/workloads.py): 10,000 executions x 10 servers over 50 accounts x
4 regions, each account-region within DRS's quotas at every moment of the workload's whole
timeline, and the items written as an initiator would (METHOD.md, "W10k-accounts")."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from benchmarks.analysis import describe_jobs_per_place
from benchmarks.recording import DrsCall
from benchmarks.run import batch_counts, batch_figures
from benchmarks.workloads import (
    ACCOUNT_REGIONS,
    QUOTAS,
    WORKLOADS,
    Seeded,
    completed_at,
    seed_workload,
)
from drs_poller.observability.metrics import Metrics

if TYPE_CHECKING:
    from drs_poller.simulator.timelines import JobScript

START = 1_800_000_000.0
WORKLOAD = WORKLOADS["W10k-accounts"]


@pytest.fixture(scope="module", params=[1.0, 8.0], ids=["speed-1", "speed-8"])
def seeded(request: pytest.FixtureRequest) -> Seeded:
    return seed_workload(WORKLOAD, speed=request.param, start=START, seed=7)


def quota_breaches(scripts: list[JobScript]) -> list[str]:
    """Every moment one account-region breaks a DRS quota: more than 20 active jobs, 100
    servers in a job, 500 servers in active jobs, or a source server in two active jobs.
    A job is active from its creation until it is COMPLETED (what DRS's quotas count)."""
    breaches = []
    by_place: dict[tuple[str, str], list[JobScript]] = defaultdict(list)
    for script in scripts:
        by_place[(script.account_id, script.region)].append(script)
        if len(script.servers) > QUOTAS.max_servers_per_job:
            breaches.append(f"{script.job_id}: {len(script.servers)} servers")
    for place, jobs in by_place.items():
        # At equal times a job that completes frees its slot before one created starts.
        events = sorted(
            [(completed_at(job), 0, job) for job in jobs]
            + [(job.created_at, 1, job) for job in jobs],
            key=lambda event: (event[0], event[1]),
        )
        active: set[str] = set()
        servers = 0
        busy: Counter[str] = Counter()
        for at, kind, job in events:
            ids = [server.source_server_id for server in job.servers]
            if kind == 0:
                active.discard(job.job_id)
                servers -= len(ids)
                busy.subtract(ids)
                continue
            active.add(job.job_id)
            servers += len(ids)
            busy.update(ids)
            if len(active) > QUOTAS.max_concurrent_jobs:
                breaches.append(f"{place} at {at}: {len(active)} active jobs")
            if servers > QUOTAS.max_servers_in_active_jobs:
                breaches.append(f"{place} at {at}: {servers} servers in active jobs")
            breaches += [
                f"{place} at {at}: {sid} in two active jobs" for sid in ids if busy[sid] > 1
            ]
    return breaches


def test_every_account_region_stays_within_drs_quotas_over_the_whole_timeline(seeded):
    assert quota_breaches(seeded.scripts) == []


def test_the_quota_check_finds_a_breach(seeded):
    """The check can fail: the same jobs, all created at once, break the quotas."""
    place = (seeded.scripts[0].account_id, seeded.scripts[0].region)
    crowded = [
        replace(job, created_at=START)
        for job in seeded.scripts
        if (job.account_id, job.region) == place
    ]
    assert any("active jobs" in breach for breach in quota_breaches(crowded))


def test_the_shape_is_10k_executions_of_10_servers_over_50_accounts_and_4_regions(seeded):
    assert len(seeded.items) == 10_000
    assert all(len(servers) == 10 for _, servers in seeded.executions.values())
    places = Counter((script.account_id, script.region) for script in seeded.scripts)
    assert len({account for account, _ in places}) == 50
    assert {region for _, region in places} == set(ACCOUNT_REGIONS)
    assert set(places.values()) == {100}  # 50 executions x 2 waves in each of 200 places
    assert "123456789012" not in {account for account, _ in places}  # moto's own account


def test_every_execution_is_in_flight_and_its_waves_carry_their_account(seeded):
    scripts = {script.job_id: script for script in seeded.scripts}
    later = {(start.execution_id, start.wave): start for start in seeded.wave_starts}
    waiting = 0
    for item in seeded.items:
        assert item["Status"] == "POLLING"
        execution_id = item["ExecutionId"]
        first_wave_started = False
        for index, wave in enumerate(item["Waves"]):
            job_ids = {server.get("RecoveryJobId") for server in wave["Servers"]}
            assert len(job_ids) == 1  # a wave is one job
            (job_id,) = job_ids
            if job_id is None:  # started later, by the benchmark as the initiator
                start = later[(execution_id, index)]
                script = scripts[start.job_id]
                assert start.at == script.created_at > START
                assert start.servers == len(wave["Servers"])
            else:
                script = scripts[job_id]
                assert script.created_at <= START
                assert (execution_id, index) not in later
                first_wave_started |= index == 0
            assert wave["AccountId"] == script.account_id
            assert wave["Region"] == script.region
        waiting += not first_wave_started
    # Quotas allow 20 jobs in each of 200 places: most executions wait for their lane.
    assert 5_000 <= waiting <= 7_000
    assert [start.at for start in seeded.wave_starts] == sorted(
        start.at for start in seeded.wave_starts
    )


def test_a_lane_starts_its_next_job_only_after_the_one_before_completed(seeded):
    by_execution = defaultdict(list)
    for script in seeded.scripts:
        by_execution[script.job_id[:16]].append(script)
    for first, second in (sorted(jobs, key=lambda s: s.job_id) for jobs in by_execution.values()):
        assert second.created_at > completed_at(first)


def test_describe_jobs_per_place_groups_the_calls_of_one_batch():
    def call(at: float, account: str, region: str = "us-east-1") -> DrsCall:
        return DrsCall(at, "DescribeJobs", region, ("drsjob-1",), account=account)

    calls = [
        call(10.0, "210000000000"),
        call(10.01, "210000000001"),
        call(10.02, "210000000000", "eu-west-1"),
        call(20.0, "210000000000"),
        call(20.01, "210000000000"),  # twice in one batch
        DrsCall(20.02, "DescribeRecoveryInstances", "us-east-1", (), account="210000000000"),
    ]
    figures = describe_jobs_per_place(calls, window=None)
    assert figures["batches"] == 2
    assert figures["per_batch"]["max"] == 2
    assert figures["per_batch"]["mean"] == pytest.approx(5 / 4)  # pairs 1, 1, 1 and 2
    assert figures["places"] == 3
    assert figures["more_than_one"] == 1


def test_describe_jobs_per_place_per_batch_is_the_wire_over_the_daemons_own_count():
    """The exact figure: the daemon's /metrics says how many places its batches asked
    (drs_poller_batch_places); the simulator saw the calls."""
    metrics = Metrics()
    for places in (200, 150, 3):
        metrics.batch_places.observe(places)
    metrics.aws_calls.labels("drs", "DescribeJobs", "self", "us-east-1", "success").inc(350)
    metrics.aws_calls.labels("drs", "DescribeJobs", "self", "eu-west-1", "throttled").inc(4)
    metrics.aws_calls.labels("drs", "DescribeJobLogItems", "self", "us-east-1", "success").inc(9)
    body, _ = metrics.render()
    start = batch_counts(body.decode())
    assert start == {"batches": 3.0, "places": 353.0, "describe_jobs": 354.0}
    metrics.batch_places.observe(200)
    end = batch_counts(metrics.render()[0].decode())
    figures = batch_figures(start, end, wire_calls=201)
    assert figures == {
        "batches": 1,
        "places_asked": 200,
        "daemon_describe_jobs": 0,
        "wire_describe_jobs": 201,
        "per_place_per_batch": 1.005,
    }
    assert batch_figures(None, end, wire_calls=201) is None  # unread: left out, not guessed
