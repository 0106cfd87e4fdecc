"""The evidence of issue 13 end to end: real aiobotocore clients, moto server and the DRS
simulator, on a manual clock (nothing sleeps). Timeline, measured RTO/RPO per server, wave
and execution; a missed RTO target; a stalled conversion marked, counted, and still ended
by DRS's result; the job-log read budget."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from harness import REGION, ServerSnapshot, launched, metric, server_id, servers_of

from drs_poller.local.items import ServerSpec
from drs_poller.simulator.timelines import iso8601

S1, S2 = server_id(1), server_id(2)
# A two-server job: PENDING, STARTED at 300 s, both converting from 330 s, S1 launched at
# 600 s, both at 900 s.
TWO_SERVERS_LAUNCH = [
    (0, "PENDING", {}),
    (300, "STARTED", {}),
    (330, "STARTED", {S1: ServerSnapshot("IN_PROGRESS"), S2: ServerSnapshot("IN_PROGRESS")}),
    (600, "STARTED", {S1: launched(), S2: ServerSnapshot("IN_PROGRESS")}),
    (900, "COMPLETED", {S1: launched(), S2: launched()}),
]


async def test_a_drill_writes_its_timeline_and_measured_rto_and_rpo(world):
    instances = await world.ec2_instances(2)
    ec2 = {S1: instances[0]["InstanceId"], S2: instances[1]["InstanceId"]}
    start = world.clock.time()
    job = world.job(
        [S1, S2],
        TWO_SERVERS_LAUNCH,
        ec2_ids=ec2,
    )
    spec = world.spec("ex", [(REGION, [ServerSpec(S1, job), ServerSpec(S2, job)])])
    await world.put_spec(replace(spec, extra={"RpoTargetSeconds": Decimal(60)}))
    daemon = await world.daemon()

    item = await world.run_until_final(daemon, "ex", step=15)

    assert item["Status"] == "COMPLETED"
    created = int(start)
    data_time = int(start - 2)  # the simulator's replication lag (JobScript.data_age)
    for server in servers_of(item):
        timeline = server["Timeline"]
        assert set(timeline) == {
            "JobStart",
            "SnapshotStart",
            "SnapshotEnd",
            "ConversionStart",
            "ConversionEnd",
            "LaunchStart",
            "Launched",
        }
        assert all(
            isinstance(value, Decimal) and value == int(value) for value in timeline.values()
        )
        assert timeline["JobStart"] == created  # the job's creationDateTime
        # Each event at the time DRS logged it: SNAPSHOT_START when the job left PENDING.
        assert timeline["SnapshotStart"] == int(start + 300)
        assert timeline["ConversionStart"] == int(start + 330)
        assert server["RecoveryTimeSeconds"] == timeline["Launched"] - int(start)
        assert server["RecoveryPointTime"] == data_time
        assert server["RecoveryPointSeconds"] == created - data_time
        assert "Stalled" not in server
    first, second = servers_of(item)
    # Launched is the poll that first saw LAUNCHED (DRS logs no launch end).
    assert int(start + 600) <= first["Timeline"]["Launched"] < int(start + 600 + 30)
    assert second["Timeline"]["Launched"] >= int(start + 900)
    wave = item["Waves"][0]
    assert wave["RecoveryTimeSeconds"] == second["RecoveryTimeSeconds"]  # the slowest
    assert wave["RecoveryPointSeconds"] == 2
    assert item["RecoveryTimeSeconds"] == second["RecoveryTimeSeconds"]
    assert item["RecoveryPointSeconds"] == 2
    assert item["RpoTargetMet"] is True
    assert "RpoTargetNote" not in item
    labels = {"execution_type": "DRILL", "account": "self", "region": REGION}
    assert metric(daemon, "drs_poller_recovery_time_seconds_count", labels) == 2
    assert metric(daemon, "drs_poller_recovery_point_seconds_count", labels) == 2
    assert metric(daemon, "drs_poller_recovery_point_seconds_sum", labels) == 4
    missed = {"target": "rpo", "execution_type": "DRILL"}
    assert metric(daemon, "drs_poller_recovery_targets_missed_total", missed) == 0


async def test_an_execution_slower_than_its_rto_target_misses_it(world):
    job = world.job(
        [S1],
        [
            (0, "STARTED", {S1: ServerSnapshot("IN_PROGRESS")}),
            (1200, "COMPLETED", {S1: launched()}),
        ],
    )
    spec = world.spec("ex", [(REGION, [ServerSpec(S1, job)])])
    await world.put_spec(replace(spec, extra={"RtoTargetSeconds": Decimal(600)}))
    # A wave target too, which the same recovery meets.
    await world.update("ex", "SET Waves[0].RtoTargetSeconds = :t", {":t": Decimal(3600)})
    daemon = await world.daemon()

    item = await world.run_until_final(daemon, "ex", step=30)

    assert item["Status"] == "COMPLETED"  # a missed target changes no status
    assert item["RecoveryTimeSeconds"] >= 1200
    assert item["RtoTargetMet"] is False
    assert item["RtoTargetNote"] == (
        f"slowest {S1}: {item['RecoveryTimeSeconds']} s > target 600 s"
    )
    assert item["Waves"][0]["RtoTargetMet"] is True
    rto = {"target": "rto", "execution_type": "DRILL"}
    assert metric(daemon, "drs_poller_recovery_targets_missed_total", rto) == 1

    # Another replica (or this one after a restart) polling the finished item again would
    # find nothing new to count; here: a second daemon on the same table counts nothing.
    other = await world.daemon()
    await world.step(other, 30)
    assert metric(other, "drs_poller_recovery_targets_missed_total", rto) == 0


async def test_a_stalled_conversion_is_marked_counted_and_ends_by_drs_result(world):
    job = world.job(
        [S1],
        [
            # Converting from the start (the log shows CONVERSION_START), then nothing for
            # 50 minutes; DRS finally fails the launch.
            (0, "STARTED", {S1: ServerSnapshot("IN_PROGRESS")}),
            (3000, "COMPLETED", {S1: ServerSnapshot("FAILED")}),
        ],
    )
    start = world.clock.time()
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(S1, job)])]))
    daemon = await world.daemon(stall_conversion_seconds=600, stall_check_interval=60)

    await world.step(daemon)
    for _ in range(20):  # 600 s: within the bound
        await world.step(daemon, 30)
    item = await world.get("ex")
    assert "Stalled" not in servers_of(item)[0]
    for _ in range(3):
        await world.step(daemon, 30)
    item = await world.get("ex")
    server = servers_of(item)[0]
    assert item["Status"] == "POLLING"
    assert server["Status"] == "IN_PROGRESS"
    assert "Error" not in server
    assert server["Stalled"] == {
        "Phase": "CONVERSION",
        "Since": int(start),
        "BoundSeconds": 600,
    }
    conversion = {"phase": "CONVERSION"}
    assert metric(daemon, "drs_poller_stalls_total", conversion) == 1
    assert metric(daemon, "drs_poller_stalled_servers", conversion) == 1

    item = await world.run_until_final(daemon, "ex", step=30)

    server = servers_of(item)[0]
    assert item["Status"] == "FAILED"  # DRS's result, not the stall
    assert "InsufficientInstanceCapacity" in server["Error"]
    assert "Stalled" not in server
    assert server["Timeline"]["LaunchFailed"] == int(start + 3000)
    assert metric(daemon, "drs_poller_stalls_total", conversion) == 1  # counted once
    assert metric(daemon, "drs_poller_stalled_servers", conversion) == 0


async def test_the_job_log_is_read_only_when_its_answer_can_have_changed(world):
    job = world.job(
        [S1],
        [
            (0, "PENDING", {}),
            (800, "STARTED", {}),  # the log: SNAPSHOT_START
            (830, "STARTED", {S1: ServerSnapshot("IN_PROGRESS")}),  # CONVERSION_START
            (3200, "COMPLETED", {S1: launched()}),
        ],
    )
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(S1, job)])]))
    daemon = await world.daemon(stall_check_interval=300)  # every bound 1,800 s

    item = await world.run_until_final(daemon, "ex", step=15)

    assert item["Status"] == "COMPLETED"
    polls = int(servers_of(item)[0]["PollAttempts"])
    reads = world.drs.count("DescribeJobLogItems")
    # Not at the first sight (the job is PENDING), nor at its steps before a result
    # (STARTED at 800, the server IN_PROGRESS at 830), nor while no stall can be
    # declared: at about 1800 (the job's creation plus the smallest bound: nothing read
    # yet), 2630 (the conversion logged at 830, plus its bound: the read that confirms
    # the stall), 2930 (one interval on, while it lasts), and the end (read once).
    # DescribeJobs was asked on every poll.
    assert reads == 4, reads
    assert polls > 10 * reads
    assert metric(daemon, "drs_poller_stalls_total", {"phase": "CONVERSION"}) == 1
    assert "Stalled" not in servers_of(item)[0]
    calls = {
        "service": "drs",
        "operation": "DescribeJobLogItems",
        "account": "self",
        "region": REGION,
    }
    assert metric(daemon, "drs_poller_aws_calls_total", {**calls, "outcome": "success"}) == reads


async def test_a_job_first_seen_on_its_way_is_read_at_its_result_not_at_once(world):
    # A daemon started mid-run (or taking over) does not read every job at once: a job
    # with no result yet is read when it has one, and that one read has every mark.
    job = world.job(
        [S1],
        [
            (0, "PENDING", {}),
            (300, "STARTED", {}),
            (330, "STARTED", {S1: ServerSnapshot("IN_PROGRESS")}),
            (1200, "COMPLETED", {S1: launched()}),
        ],
    )
    start = world.clock.time()
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(S1, job)])]))
    world.clock.advance(600)
    daemon = await world.daemon()

    await world.step(daemon)
    assert world.drs.count("DescribeJobLogItems") == 0
    item = await world.run_until_final(daemon, "ex", step=15)

    assert item["Status"] == "COMPLETED"
    assert world.drs.count("DescribeJobLogItems") == 1
    timeline = servers_of(item)[0]["Timeline"]
    assert timeline["SnapshotStart"] == int(start + 300)
    assert timeline["ConversionStart"] == int(start + 330)


async def test_a_job_first_seen_past_its_stall_bound_is_read_at_once(world):
    # A take-over keeps a stall it finds: the first write already shows it.
    job = world.job(
        [S1],
        [
            (0, "STARTED", {S1: ServerSnapshot("IN_PROGRESS")}),  # converting from the start
            (3000, "COMPLETED", {S1: ServerSnapshot("FAILED")}),
        ],
    )
    start = world.clock.time()
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(S1, job)])]))
    world.clock.advance(2000)
    daemon = await world.daemon(stall_conversion_seconds=600)

    await world.step(daemon)

    assert world.drs.count("DescribeJobLogItems") == 1
    server = servers_of(await world.get("ex"))[0]
    assert server["Stalled"] == {"Phase": "CONVERSION", "Since": int(start), "BoundSeconds": 600}


async def test_the_log_of_a_job_whose_servers_ended_is_let_go(world):
    first = world.job(
        [S1],
        [(0, "STARTED", {S1: ServerSnapshot("IN_PROGRESS")}), (600, "COMPLETED", {S1: launched()})],
    )
    second = world.job(
        [S2],
        [(0, "STARTED", {S2: ServerSnapshot("IN_PROGRESS")}), (900, "COMPLETED", {S2: launched()})],
    )
    await world.put_spec(
        world.spec("ex", [(REGION, [ServerSpec(S1, first), ServerSpec(S2, second)])])
    )
    daemon = await world.daemon()
    start = world.clock.time()
    while world.clock.time() < start + 700:
        await world.step(daemon, 15)

    ended, running = servers_of(await world.get("ex"))
    assert (ended["Status"], running["Status"]) == ("LAUNCHED", "IN_PROGRESS")
    assert "Timeline" in ended
    (tracked,) = daemon.state.tracked.values()
    assert set(tracked.job_log_reads) == {second}  # the first job's servers all ended
    assert first not in tracked.job_logs

    item = await world.run_until_final(daemon, "ex", step=15)
    assert item["Status"] == "COMPLETED"
    assert servers_of(item)[0]["Timeline"] == ended["Timeline"]  # kept as written


async def test_a_job_log_that_cannot_be_read_degrades_only_the_evidence(world):
    job = world.job(
        [S1],
        [
            (0, "STARTED", {S1: ServerSnapshot("IN_PROGRESS")}),
            (60, "COMPLETED", {S1: launched()}),
        ],
    )
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(S1, job)])]))
    world.drs.faults.error_rate = 1.0  # every try answers 500, for this operation only
    world.drs.faults.operations = frozenset({"DescribeJobLogItems"})
    daemon = await world.daemon()

    item = await world.run_until_final(daemon, "ex", step=30)

    server = servers_of(item)[0]
    assert item["Status"] == "COMPLETED"
    # What the poll itself saw: the job's creation and the launch; nothing from the log.
    assert set(server["Timeline"]) == {"JobStart", "Launched"}
    assert server["RecoveryTimeSeconds"] > 0
    assert "RecoveryPointSeconds" not in server  # unknown, not guessed
    unobserved = {"operation": "DescribeJobLogItems", "kind": "transient"}
    assert metric(daemon, "drs_poller_unobserved_calls_total", unobserved) >= 1


def test_iso8601_round_trip_used_by_these_tests():
    assert iso8601(1_800_000_000.5) == "2027-01-15T08:00:00.500Z"


async def test_a_running_servers_evidence_waits_for_its_end_and_survives_a_restart(world):
    """While a server runs, its writes carry no Timeline or figures (issue 18: they would
    ride on every write at the item's whole size); the write that ends it carries them
    complete. A daemon that takes over mid-run reads the job log again, so the marks DRS
    logged before the take-over are in the Timeline it writes."""
    job = world.job(
        [S1, S2],
        TWO_SERVERS_LAUNCH,
    )
    start = world.clock.time()
    await world.put_spec(world.spec("ex", [(REGION, [ServerSpec(S1, job), ServerSpec(S2, job)])]))
    first = await world.daemon()
    while world.clock.time() < start + 660:
        await world.step(first, 15)
    item = await world.get("ex")
    ended, running = servers_of(item)
    assert (ended["Status"], running["Status"]) == ("LAUNCHED", "IN_PROGRESS")
    assert ended["Timeline"]["ConversionStart"] == int(start + 330)
    assert "RecoveryTimeSeconds" in ended
    assert "Timeline" not in running
    assert "RecoveryTimeSeconds" not in running

    second = await world.daemon()  # a replica taking over: nothing in its memory
    item = await world.run_until_final(second, "ex", step=15)

    assert item["Status"] == "COMPLETED"
    _, taken_over = servers_of(item)
    assert taken_over["Timeline"]["SnapshotStart"] == int(start + 300)  # logged before
    assert taken_over["Timeline"]["ConversionStart"] == int(start + 330)
    assert taken_over["Timeline"]["Launched"] >= int(start + 900)
    assert taken_over["RecoveryTimeSeconds"] == taken_over["Timeline"]["Launched"] - int(start)
