"""Issue 11 end to end (contract §2 on real DRS): optional post-launch actions, the runs
ListLaunchActions says to expect, values DRS adds later, and the evidence that a
TERMINATED server launched. Real aiobotocore clients against moto server and the DRS
simulator, on a manual clock (nothing sleeps)."""

from __future__ import annotations

import pytest
from harness import (
    REGION,
    ServerSnapshot,
    launched,
    metric,
    server_id,
    servers_of,
)

from drs_poller.local.items import ServerSpec
from drs_poller.simulator.timelines import LaunchActionScript, RunSnapshot, Snapshot

S1, S2, S3 = server_id(1), server_id(2), server_id(3)
INSTANCE = "i-0123456789abcdef0"
UNKNOWN = "drs_poller_unknown_values_total"
UNAVAILABLE = "drs_poller_launch_actions_unavailable_total"


def _recovery(world, execution_id: str, job: str, *servers: str):
    return world.put_spec(
        world.spec(
            execution_id,
            [(REGION, [ServerSpec(s, job) for s in servers])],
            execution_type="RECOVERY",
        )
    )


def _drill(world, execution_id: str, job: str, *servers: str):
    return world.put_spec(
        world.spec(execution_id, [(REGION, [ServerSpec(s, job) for s in servers])])
    )


def _runs(*runs: tuple[str, str] | RunSnapshot) -> ServerSnapshot:
    return ServerSnapshot(
        "LAUNCHED",
        tuple(run if isinstance(run, RunSnapshot) else RunSnapshot(run[1], run[0]) for run in runs),
    )


# --- optional actions ----------------------------------------------------------------------


async def test_recovery_whose_only_failed_run_is_optional_completes(world):
    world.drs.set_launch_actions(
        S1, [LaunchActionScript("Validate"), LaunchActionScript("Warm cache", optional=True)]
    )
    failed = RunSnapshot("FAILED", "Warm cache", "cache host unreachable", optional=True)
    job = world.job(
        [S1],
        [
            (0, "COMPLETED", {S1: _runs(("Validate", "IN_PROGRESS"), failed)}),
            (300, "COMPLETED", {S1: _runs(("Validate", "SUCCEEDED"), failed)}),
        ],
        is_drill=False,
    )
    await _recovery(world, "ex", job, S1)
    daemon = await world.daemon()

    await world.step(daemon)
    item = await world.get("ex")
    assert item["Status"] == "POLLING"  # the required run is still running
    item = await world.run_until_final(daemon, "ex", step=30)

    (server,) = servers_of(item)
    assert item["Status"] == "COMPLETED"
    assert server["PostLaunchActionsStatus"] == "COMPLETED"
    assert "Error" not in server
    shown = {entry["Name"]: entry for entry in server["PostLaunchActions"]}
    assert shown["Warm cache"]["Status"] == "FAILED"
    assert shown["Warm cache"]["Optional"] is True
    assert shown["Warm cache"]["FailureReason"] == "cache host unreachable"
    assert shown["Validate"]["Status"] == "SUCCEEDED"
    assert shown["Validate"]["Optional"] is False


async def test_a_failed_required_run_still_fails_its_server(world):
    world.drs.set_launch_actions(S1, [LaunchActionScript("Validate")])
    job = world.job(
        [S1],
        [(0, "COMPLETED", {S1: _runs(RunSnapshot("FAILED", "Validate", "exit 1"))})],
        is_drill=False,
    )
    await _recovery(world, "ex", job, S1)
    daemon = await world.daemon()
    item = await world.run_until_final(daemon, "ex")
    assert item["Status"] == "FAILED"
    assert "Validate" in servers_of(item)[0]["Error"]


# --- the runs ListLaunchActions says to expect ------------------------------------------------

THREE = [
    LaunchActionScript("Check disks"),
    LaunchActionScript("Validate"),
    LaunchActionScript("Ping"),
]


async def test_three_actions_listed_one_at_a_time_are_not_finalized_after_the_first(world):
    world.drs.set_launch_actions(S1, THREE)
    job = world.job(
        [S1],
        [
            (0, "COMPLETED", {S1: _runs(("Check disks", "SUCCEEDED"))}),
            (
                120,
                "COMPLETED",
                {S1: _runs(("Check disks", "SUCCEEDED"), ("Validate", "IN_PROGRESS"))},
            ),
            (
                240,
                "COMPLETED",
                {S1: _runs(("Check disks", "SUCCEEDED"), ("Validate", "SUCCEEDED"))},
            ),
            (
                360,
                "COMPLETED",
                {
                    S1: _runs(
                        ("Check disks", "SUCCEEDED"),
                        ("Validate", "SUCCEEDED"),
                        ("Ping", "SUCCEEDED"),
                    )
                },
            ),
        ],
        is_drill=False,
    )
    await _recovery(world, "ex", job, S1)
    daemon = await world.daemon(launch_actions_wait=600)
    started = world.clock.time()

    await world.step(daemon)
    item = await world.get("ex")
    (server,) = servers_of(item)
    assert item["Status"] == "POLLING"  # one SUCCEEDED run of three expected: not done
    assert server["PostLaunchActionsStatus"] == "IN_PROGRESS"
    assert "PostLaunchActionsWaitSince" in server
    assert item["Phase"] == "POST_LAUNCH"

    item = await world.run_until_final(daemon, "ex", step=30)
    assert item["Status"] == "COMPLETED"
    assert item["EndTime"] >= started + 360
    assert {e["Name"] for e in servers_of(item)[0]["PostLaunchActions"]} == {
        "Check disks",
        "Validate",
        "Ping",
    }
    assert world.drs.count("ListLaunchActions") == 1  # cached for the execution's life


async def test_a_required_action_never_listed_fails_after_the_wait(world):
    world.drs.set_launch_actions(S1, [*THREE[:2], LaunchActionScript("Ping", optional=True)])
    job = world.job(
        [S1], [(0, "COMPLETED", {S1: _runs(("Check disks", "SUCCEEDED"))})], is_drill=False
    )
    await _recovery(world, "ex", job, S1)
    daemon = await world.daemon(launch_actions_wait=600)
    await world.step(daemon)
    await world.step(daemon, 570)
    assert (await world.get("ex"))["Status"] == "POLLING"  # inside the wait

    item = await world.run_until_final(daemon, "ex", step=30)
    (server,) = servers_of(item)
    assert item["Status"] == "FAILED"
    assert server["PostLaunchActionsStatus"] == "FAILED"
    assert "Validate" in server["Error"]
    assert "Ping" not in server["Error"]  # optional: recorded, not a reason to fail
    not_run = {e["Name"] for e in server["PostLaunchActions"] if e["Status"] == "NOT_RUN"}
    assert not_run == {"Validate", "Ping"}
    assert "600 s" in server["PostLaunchActionsShortfall"]


async def test_a_denied_list_falls_back_to_the_listed_runs_counted_and_warned(world):
    world.drs.set_launch_actions(S1, THREE)
    world.drs.launch_actions_denied = True
    job = world.job(
        [S1], [(0, "COMPLETED", {S1: _runs(("Check disks", "SUCCEEDED"))})], is_drill=False
    )
    await _recovery(world, "ex", job, S1)
    daemon = await world.daemon()
    item = await world.run_until_final(daemon, "ex")
    (server,) = servers_of(item)
    assert item["Status"] == "COMPLETED"  # today's rule: judged on the runs DRS lists
    assert "AccessDeniedException" in server["PostLaunchActionsExpected"]
    assert metric(daemon, UNAVAILABLE, {"reason": "access_denied"}) == 1


async def test_a_list_that_keeps_failing_falls_back_after_bounded_polls(world):
    world.drs.set_launch_actions(S1, THREE)
    world.drs.faults.error_rate = 1.0
    world.drs.faults.operations = frozenset({"ListLaunchActions"})
    job = world.job(
        [S1], [(0, "COMPLETED", {S1: _runs(("Check disks", "SUCCEEDED"))})], is_drill=False
    )
    await _recovery(world, "ex", job, S1)
    daemon = await world.daemon()
    await world.step(daemon)
    await world.step(daemon, 30)
    assert (await world.get("ex"))["Status"] == "POLLING"  # not finished on runs alone yet
    item = await world.run_until_final(daemon, "ex", step=30, limit=600)
    assert item["Status"] == "COMPLETED"
    assert metric(daemon, UNAVAILABLE, {"reason": "retries_exhausted"}) == 1


# --- values DRS adds later -----------------------------------------------------------------


async def test_an_unknown_launch_status_leaves_its_job_mates_tracked(world):
    booting = ServerSnapshot("BOOTING", deliberately_outside_model=True)
    job = world.job(
        [S1, S2, S3],
        [
            (
                0,
                "STARTED",
                {S1: booting, S2: ServerSnapshot("IN_PROGRESS"), S3: ServerSnapshot("IN_PROGRESS")},
            ),
            (300, "COMPLETED", {S1: booting, S2: launched(), S3: ServerSnapshot("FAILED")}),
        ],
    )
    await _drill(world, "ex", job, S1, S2, S3)
    daemon = await world.daemon(max_execution_age=3600, overdue_after=1800)

    await world.step(daemon)
    item = await world.get("ex")
    assert item["Phase"] == "IN_PROGRESS"
    for _ in range(12):
        await world.step(daemon, 30)
    item = await world.get("ex")
    s1, s2, s3 = servers_of(item)
    assert item["Status"] == "POLLING"  # the job COMPLETED, but S1 is not judged on it
    assert "Error" not in s1
    assert s2["Status"] == "LAUNCHED"  # its job-mates are tracked as usual
    assert "InstanceId" not in s2 or s2["InstanceId"]
    assert s3["Status"] == "FAILED"
    assert metric(daemon, UNKNOWN, {"field": "launchStatus", "value": "BOOTING"}) == 1

    item = await world.run_until_final(daemon, "ex", step=300)
    assert item["Status"] == "FAILED"  # ends at the maximum age, naming the value
    assert "launchStatus 'BOOTING'" in item["ErrorMessage"]
    assert "launchStatus 'BOOTING'" in servers_of(item)[0]["Error"]


async def test_an_unknown_run_status_holds_its_server_not_its_job_mates(world):
    skipped = RunSnapshot("SKIPPED", "action-0", deliberately_outside_model=True)
    job = world.job(
        [S1, S2],
        [
            (
                0,
                "COMPLETED",
                {S1: ServerSnapshot("LAUNCHED", (skipped,)), S2: launched(runs=("SUCCEEDED",))},
            ),
            (
                600,
                "COMPLETED",
                {S1: launched(runs=("SUCCEEDED",)), S2: launched(runs=("SUCCEEDED",))},
            ),
        ],
        is_drill=False,
    )
    await _recovery(world, "ex", job, S1, S2)
    daemon = await world.daemon()
    await world.step(daemon)
    await world.step(daemon, 300)
    item = await world.get("ex")
    s1, s2 = servers_of(item)
    assert item["Status"] == "POLLING"
    assert item["Phase"] == "POST_LAUNCH"
    assert s1["PostLaunchActionsStatus"] == "IN_PROGRESS"
    assert s1["PostLaunchActions"][0]["Status"] == "SKIPPED"
    assert s2["PostLaunchActionsStatus"] == "COMPLETED"
    assert metric(daemon, UNKNOWN, {"field": "runs.status", "value": "SKIPPED"}) == 1

    item = await world.run_until_final(daemon, "ex", step=30)
    assert item["Status"] == "COMPLETED"


async def test_a_drill_completes_despite_an_unknown_run_status(world):
    skipped = RunSnapshot("SKIPPED", "action-0", deliberately_outside_model=True)
    job = world.job([S1], [(0, "COMPLETED", {S1: ServerSnapshot("LAUNCHED", (skipped,))})])
    await _drill(world, "ex", job, S1)
    daemon = await world.daemon()
    item = await world.run_until_final(daemon, "ex")
    assert item["Status"] == "COMPLETED"
    assert metric(daemon, UNKNOWN, {"field": "runs.status", "value": "SKIPPED"}) == 0


async def test_an_unknown_job_status_counts_as_started(world):
    queued = Snapshot(0, "QUEUED", {S1: ServerSnapshot("PENDING")}, deliberately_outside_model=True)
    job = world.job([S1], [queued, (200, "COMPLETED", {S1: launched()})])
    await _drill(world, "ex", job, S1)
    daemon = await world.daemon()
    await world.step(daemon)
    assert metric(daemon, UNKNOWN, {"field": "status", "value": "QUEUED"}) == 1
    # Polled at the STARTED pace (15 s), though nothing changed to write yet.
    assert await world.step(daemon, 14) == 0
    assert await world.step(daemon, 1) == 1
    item = await world.run_until_final(daemon, "ex", step=15)
    assert item["Status"] == "COMPLETED"


# --- TERMINATED before the daemon saw LAUNCHED ------------------------------------------------


def _cleaned_up_drill(world, **options):
    return world.job(
        [S1],
        [
            (0, "STARTED", {S1: ServerSnapshot("IN_PROGRESS")}),
            (100, "COMPLETED", {S1: launched()}),
            (200, "COMPLETED", {S1: ServerSnapshot("TERMINATED")}),
        ],
        **options,
    )


async def test_a_drill_cleaned_up_between_two_polls_ends_launched_by_the_jobs_instance_id(world):
    job = _cleaned_up_drill(world, recovery_ids={S1: INSTANCE})
    await _drill(world, "ex", job, S1)
    daemon = await world.daemon()
    await world.step(daemon)
    item = await world.run_until_final(daemon, "ex", step=250)
    (server,) = servers_of(item)
    assert item["Status"] == "COMPLETED"
    assert server["Status"] == "TERMINATED"
    assert server["TerminatedAfterLaunch"] is True
    assert INSTANCE in server["LaunchEvidence"]


async def test_a_drill_cleaned_up_between_two_polls_ends_launched_by_its_recovery_instance(world):
    job = _cleaned_up_drill(
        world, recovery_ids={S1: INSTANCE}, unreported_instances=frozenset({S1})
    )
    await _drill(world, "ex", job, S1)
    daemon = await world.daemon()
    await world.step(daemon)
    item = await world.run_until_final(daemon, "ex", step=250)
    (server,) = servers_of(item)
    assert item["Status"] == "COMPLETED"
    assert "DescribeRecoveryInstances" in server["LaunchEvidence"]
    assert INSTANCE in server["LaunchEvidence"]


async def test_terminated_without_evidence_fails_and_says_what_was_checked(world):
    job = _cleaned_up_drill(world)  # no recovery instance anywhere
    await _drill(world, "ex", job, S1)
    daemon = await world.daemon()
    await world.step(daemon)
    item = await world.run_until_final(daemon, "ex", step=250)
    error = servers_of(item)[0]["Error"]
    assert item["Status"] == "FAILED"
    assert "TERMINATED before the server launched" in error
    assert "DescribeRecoveryInstances" in error
    assert world.drs.count("DescribeRecoveryInstances") >= 1


async def test_a_recovery_terminated_before_its_actions_ended_fails(world):
    job = world.job(
        [S1],
        [
            (0, "COMPLETED", {S1: launched(runs=("IN_PROGRESS",))}),
            (
                100,
                "COMPLETED",
                {S1: ServerSnapshot("TERMINATED", (RunSnapshot("IN_PROGRESS", "action-0"),))},
            ),
        ],
        is_drill=False,
        recovery_ids={S1: INSTANCE},
    )
    await _recovery(world, "ex", job, S1)
    daemon = await world.daemon()
    await world.step(daemon)
    item = await world.run_until_final(daemon, "ex", step=30)
    (server,) = servers_of(item)
    assert item["Status"] == "FAILED"
    assert "TERMINATED before its post-launch actions ended" in server["Error"]


@pytest.mark.parametrize("mode", ["DRILL", "RECOVERY"])
async def test_a_server_that_succeeded_stays_succeeded_when_terminated(world, mode):
    job = world.job(
        [S1, S2],
        [
            (
                0,
                "STARTED",
                {S1: launched(runs=("SUCCEEDED",)), S2: ServerSnapshot("IN_PROGRESS")},
            ),
            (
                100,
                "STARTED",
                {S1: ServerSnapshot("TERMINATED"), S2: ServerSnapshot("IN_PROGRESS")},
            ),
            (
                200,
                "COMPLETED",
                {S1: ServerSnapshot("TERMINATED"), S2: launched(runs=("SUCCEEDED",))},
            ),
        ],
        is_drill=mode == "DRILL",
        recovery_ids={S1: INSTANCE},
    )
    if mode == "DRILL":
        await _drill(world, "ex", job, S1, S2)
    else:
        await _recovery(world, "ex", job, S1, S2)
    daemon = await world.daemon()
    item = await world.run_until_final(daemon, "ex", step=30)
    assert item["Status"] == "COMPLETED"


async def test_actions_deactivated_in_the_launch_configuration_are_not_expected(world):
    """ListLaunchActions lists three active actions, but GetLaunchConfiguration says
    post-launch actions are deactivated: DRS runs none, and the server is NOT_CONFIGURED
    after the grace period, not failed for actions that could never run."""
    world.drs.set_launch_actions(S1, THREE)
    world.drs.set_post_launch_enabled(S1, enabled=False)
    job = world.job([S1], [(0, "COMPLETED", {S1: ServerSnapshot("LAUNCHED")})], is_drill=False)
    await _recovery(world, "ex", job, S1)
    daemon = await world.daemon(post_launch_grace=600, launch_actions_wait=600)
    await world.step(daemon)
    assert (await world.get("ex"))["Status"] == "POLLING"  # inside the grace period

    item = await world.run_until_final(daemon, "ex", step=30)
    (server,) = servers_of(item)
    assert item["Status"] == "COMPLETED"
    assert server["PostLaunchActionsStatus"] == "NOT_CONFIGURED"
    assert "Error" not in server
    assert "PostLaunchActionsShortfall" not in server


async def test_actions_activated_but_never_run_fail_after_the_wait(world):
    """The same server with post-launch actions activated: DRS should run them, and a
    required action with no run at the end of the wait fails the server."""
    world.drs.set_launch_actions(S1, THREE)
    job = world.job([S1], [(0, "COMPLETED", {S1: ServerSnapshot("LAUNCHED")})], is_drill=False)
    await _recovery(world, "ex", job, S1)
    daemon = await world.daemon(post_launch_grace=600, launch_actions_wait=600)

    item = await world.run_until_final(daemon, "ex", step=30)
    (server,) = servers_of(item)
    assert item["Status"] == "FAILED"
    assert server["PostLaunchActionsStatus"] == "FAILED"
    assert "never ran" in server["Error"]
