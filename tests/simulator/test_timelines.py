from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

from drs_poller.clock import ManualClock
from drs_poller.simulator import timelines
from drs_poller.simulator.conformance import drs_service_model, shape_violations
from drs_poller.simulator.timelines import (
    JobScript,
    RunSnapshot,
    ServerScript,
    ServerSnapshot,
    Snapshot,
    iso8601,
    new_instance_id,
    new_job_id,
    new_source_server_id,
    render_job,
    render_job_log,
    render_recovery_instance,
    standard_timeline,
)

START = 1_800_000_000.0
A, B = "s-aaaaaaaaaaaaaaaaa", "s-bbbbbbbbbbbbbbbbb"
RI_A, RI_B = "i-0123456789abcdef0", "i-0fedcba9876543210"


def two_server_job(timeline: tuple[Snapshot, ...], *, is_drill: bool = False) -> JobScript:
    return JobScript(
        job_id="drsjob-AAAAAAAAAAAAAAAAA",
        region="us-east-1",
        is_drill=is_drill,
        created_at=START,
        servers=(
            ServerScript(A, recovery_instance_id=RI_A, ec2_instance_id=RI_A),
            ServerScript(B, recovery_instance_id=RI_B, ec2_instance_id=RI_B),
        ),
        timeline=timeline,
    )


def statuses(job: dict[str, object]) -> tuple[object, ...]:
    servers = job["participatingServers"]
    assert isinstance(servers, list)
    return (job["status"], *(server["launchStatus"] for server in servers))


def test_timelines_module_is_pure() -> None:
    tree = ast.parse(Path(timelines.__file__).read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
        )
    }
    assert not imported & {"aiohttp", "botocore", "aiobotocore", "aioboto3", "boto3"}


EXPLICIT = (
    Snapshot(60, "STARTED"),
    Snapshot(120, "STARTED", {A: ServerSnapshot("IN_PROGRESS"), B: ServerSnapshot("IN_PROGRESS")}),
    Snapshot(300, "COMPLETED", {A: ServerSnapshot("LAUNCHED"), B: ServerSnapshot("FAILED")}),
    Snapshot(900, "COMPLETED", {A: ServerSnapshot("TERMINATED"), B: ServerSnapshot("FAILED")}),
)


@pytest.mark.parametrize(
    ("advance_to", "expected"),
    [
        (-1, ("PENDING", "PENDING", "PENDING")),  # before creation: the implicit PENDING state
        (0, ("PENDING", "PENDING", "PENDING")),  # before the first snapshot
        (59.9, ("PENDING", "PENDING", "PENDING")),
        (60, ("STARTED", "PENDING", "PENDING")),  # an omitted server is PENDING
        (120, ("STARTED", "IN_PROGRESS", "IN_PROGRESS")),
        (299, ("STARTED", "IN_PROGRESS", "IN_PROGRESS")),
        (300, ("COMPLETED", "LAUNCHED", "FAILED")),
        (10_000, ("COMPLETED", "TERMINATED", "FAILED")),
    ],
)
def test_explicit_snapshots_follow_the_clock(advance_to: float, expected: tuple[str, ...]) -> None:
    clock = ManualClock(start=START - 1)
    clock.advance(advance_to + 1)
    assert statuses(render_job(two_server_job(EXPLICIT), clock.time())) == expected


def test_one_clock_walks_a_job_through_every_step() -> None:
    clock = ManualClock(start=START)
    script = two_server_job(EXPLICIT)
    seen = []
    for step in (0, 60, 60, 180, 600):
        clock.advance(step)
        seen.append(statuses(render_job(script, clock.time()))[0])
    assert seen == ["PENDING", "STARTED", "STARTED", "COMPLETED", "COMPLETED"]


def test_recovery_instance_id_and_end_time_appear_only_once_reached() -> None:
    script = two_server_job(EXPLICIT, is_drill=True)
    started = render_job(script, START + 120)
    assert "endDateTime" not in started
    assert all("recoveryInstanceID" not in server for server in started["participatingServers"])
    assert started["initiatedBy"] == "START_DRILL"

    completed = render_job(script, START + 400)
    assert completed["endDateTime"] == iso8601(START + 300)
    launched, failed = completed["participatingServers"]
    assert launched["recoveryInstanceID"] == RI_A
    assert "recoveryInstanceID" not in failed
    # TERMINATED keeps the id and the end time stays the first COMPLETED moment.
    later = render_job(script, START + 1000)
    assert later["participatingServers"][0]["recoveryInstanceID"] == RI_A
    assert later["endDateTime"] == iso8601(START + 300)


def test_runs_none_is_absent_and_empty_is_present() -> None:
    script = two_server_job(
        (
            Snapshot(
                0,
                "COMPLETED",
                {
                    A: ServerSnapshot("LAUNCHED", runs=None),
                    B: ServerSnapshot("FAILED", runs=()),
                },
            ),
        )
    )
    first, second = render_job(script, START)["participatingServers"]
    assert "launchActionsStatus" not in first
    assert second["launchActionsStatus"] == {"runs": []}


def test_run_ids_are_stable_and_failure_reason_rendered() -> None:
    runs = (RunSnapshot("SUCCEEDED", "Check disks"), RunSnapshot("FAILED", "Ping", "timed out"))
    script = two_server_job((Snapshot(0, "COMPLETED", {A: ServerSnapshot("LAUNCHED", runs)}),))
    rendered = render_job(script, START)["participatingServers"][0]["launchActionsStatus"]["runs"]
    assert (
        rendered
        == render_job(script, START + 5)["participatingServers"][0]["launchActionsStatus"]["runs"]
    )
    assert [run["status"] for run in rendered] == ["SUCCEEDED", "FAILED"]
    assert "failureReason" not in rendered[0]
    assert rendered[1]["failureReason"] == "timed out"
    assert [run["action"]["order"] for run in rendered] == [2, 3]
    assert rendered[0]["runId"] != rendered[1]["runId"]


def test_script_rejects_unsorted_or_unknown_servers() -> None:
    with pytest.raises(ValueError, match="sorted"):
        two_server_job((Snapshot(10, "STARTED"), Snapshot(5, "STARTED")))
    with pytest.raises(ValueError, match="unknown servers"):
        two_server_job((Snapshot(0, "STARTED", {"s-zzzzzzzzzzzzzzzzz": ServerSnapshot("FAILED")}),))


# (seconds after creation, job status, server A, server B, runs A, runs B); "-" = field absent.
RECOVERY_WITH_ACTIONS = [
    (0, "PENDING", "PENDING", "PENDING", "-", "-"),
    (13.5 * 60, "STARTED", "PENDING", "PENDING", "-", "-"),
    (14 * 60, "STARTED", "IN_PROGRESS", "IN_PROGRESS", "-", "-"),
    (20 * 60, "COMPLETED", "LAUNCHED", "LAUNCHED", "IN_PROGRESS", "IN_PROGRESS"),
    (25 * 60, "COMPLETED", "LAUNCHED", "LAUNCHED", "SUCCEEDED", "FAILED"),
]


@pytest.mark.parametrize(
    ("at", "job", "server_a", "server_b", "runs_a", "runs_b"), RECOVERY_WITH_ACTIONS
)
def test_standard_recovery_with_a_failing_action(
    *, at: float, job: str, server_a: str, server_b: str, runs_a: str, runs_b: str
) -> None:
    script = two_server_job(
        standard_timeline([A, B], actions=5 * 60, outcomes={B: "action_failed"})
    )
    rendered = render_job(script, START + at)
    assert statuses(rendered) == (job, server_a, server_b)
    for server, expected in zip(rendered["participatingServers"], (runs_a, runs_b), strict=True):
        if expected == "-":
            assert "launchActionsStatus" not in server
        else:
            assert [run["status"] for run in server["launchActionsStatus"]["runs"]] == [expected]


@pytest.mark.parametrize(
    ("outcome", "at_launch", "much_later"),
    [
        ("launched", "LAUNCHED", "LAUNCHED"),
        ("launch_failed", "FAILED", "FAILED"),
        ("terminated_after_launch", "LAUNCHED", "TERMINATED"),
    ],
)
def test_standard_drill_outcomes(outcome: str, at_launch: str, much_later: str) -> None:
    script = two_server_job(standard_timeline([A, B], outcomes={A: outcome}))  # type: ignore[dict-item]
    assert statuses(render_job(script, START + 20 * 60)) == ("COMPLETED", at_launch, "LAUNCHED")
    assert statuses(render_job(script, START + 10 * 3600)) == ("COMPLETED", much_later, "LAUNCHED")


def test_launch_failed_server_in_a_recovery_has_an_empty_runs_list() -> None:
    script = two_server_job(standard_timeline([A, B], actions=60, outcomes={A: "launch_failed"}))
    failed, launched = render_job(script, START + 3600)["participatingServers"]
    assert failed["launchActionsStatus"] == {"runs": []}
    assert [run["status"] for run in launched["launchActionsStatus"]["runs"]] == ["SUCCEEDED"]


def test_stall_never_leaves_pending() -> None:
    script = two_server_job(standard_timeline([A, B], stall=True))
    assert statuses(render_job(script, START + 30 * 86400)) == ("PENDING", "PENDING", "PENDING")
    assert render_job_log(script, START + 30 * 86400) == []


def test_action_failed_needs_actions() -> None:
    with pytest.raises(ValueError, match="post-launch actions"):
        standard_timeline([A], outcomes={A: "action_failed"})


def test_job_log_follows_the_snapshots() -> None:
    script = two_server_job(EXPLICIT)

    def events(now: float) -> list[tuple[str, str | None]]:
        return [
            (item["event"], item["eventData"].get("sourceServerID"))
            for item in render_job_log(script, now)
        ]

    assert events(START + 59) == []
    assert events(START + 60) == [("JOB_START", None), ("SNAPSHOT_START", A), ("SNAPSHOT_START", B)]
    assert events(START + 300)[-6:] == [
        ("CONVERSION_END", A),
        ("LAUNCH_START", A),
        ("CONVERSION_END", B),
        ("LAUNCH_START", B),
        ("LAUNCH_FAILED", B),
        ("JOB_END", None),
    ]
    full = render_job_log(script, START + 5000)
    failed = [item for item in full if item["event"] == "LAUNCH_FAILED"]
    assert len(failed) == 1
    assert failed[0]["eventData"]["rawError"]
    assert [item["event"] for item in full].count("JOB_END") == 1
    launch_a = next(
        item
        for item in full
        if item["event"] == "LAUNCH_START" and item["eventData"]["sourceServerID"] == A
    )
    assert launch_a["eventData"]["targetInstanceID"] == RI_A
    assert launch_a["logDateTime"] == iso8601(START + 300)


def test_job_log_fills_in_skipped_stages() -> None:
    script = two_server_job((Snapshot(10, "COMPLETED", {A: ServerSnapshot("LAUNCHED")}),))
    events = [
        (item["event"], item["eventData"].get("sourceServerID"))
        for item in render_job_log(script, START + 10)
    ]
    # A jumped from nothing to LAUNCHED: every stage is logged at once, in order.
    assert events == [
        ("JOB_START", None),
        ("SNAPSHOT_START", A),
        ("SNAPSHOT_END", A),
        ("CONVERSION_START", A),
        ("CONVERSION_END", A),
        ("LAUNCH_START", A),
        ("SNAPSHOT_START", B),
        ("JOB_END", None),
    ]


def test_recovery_instance_rendering() -> None:
    script = two_server_job(EXPLICIT)
    server_a, server_b = script.servers
    assert render_recovery_instance(script, server_a, START + 299) is None
    running = render_recovery_instance(script, server_a, START + 300)
    assert running is not None
    assert running["ec2InstanceState"] == "RUNNING"
    assert running["jobID"] == script.job_id
    assert running["isDrill"] is False
    terminated = render_recovery_instance(script, server_a, START + 900)
    assert terminated is not None
    assert terminated["ec2InstanceState"] == "TERMINATED"
    assert render_recovery_instance(script, server_b, START + 900) is None  # launch failed

    stopped_server = ServerScript(A, recovery_instance_id=RI_A, ec2_states=((400, "STOPPED"),))
    stopped_script = JobScript(
        job_id=script.job_id,
        region="us-east-1",
        is_drill=True,
        created_at=START,
        servers=(stopped_server,),
        timeline=(Snapshot(300, "COMPLETED", {A: ServerSnapshot("LAUNCHED")}),),
    )
    later = render_recovery_instance(stopped_script, stopped_server, START + 400)
    assert later is not None
    assert later["ec2InstanceState"] == "STOPPED"
    assert "ec2InstanceID" not in later


@pytest.mark.parametrize(
    ("make_id", "shape_name"),
    [
        (new_job_id, "JobID"),
        (new_source_server_id, "SourceServerID"),
        (new_instance_id, "RecoveryInstanceID"),
        (new_instance_id, "EC2InstanceID"),
    ],
)
def test_id_helpers_make_valid_ids(make_id: object, shape_name: str) -> None:
    rng = random.Random(7)
    shape = drs_service_model().shape_for(shape_name)
    for _ in range(50):
        assert shape_violations(shape, make_id(rng)) == []  # type: ignore[operator]


def test_iso8601_is_drs_shaped() -> None:
    assert iso8601(START) == "2027-01-15T08:00:00.000Z"
    assert iso8601(START + 0.25) == "2027-01-15T08:00:00.250Z"


@pytest.mark.parametrize("staged", [False, True], ids=["scripted", "simulated (staged)"])
def test_conversion_events_carry_the_data_timestamp_of_the_snapshot(staged: bool) -> None:
    """ConversionProperties.dataTimestamp ("when the snapshot being converted was taken")
    on CONVERSION_START/END, the same instant as the recovery instance's
    pointInTimeSnapshotDateTime; every event at the time its phase happened, not now."""
    script = JobScript(
        job_id="drsjob-AAAAAAAAAAAAAAAAA",
        region="us-east-1",
        is_drill=True,
        created_at=START,
        servers=(ServerScript(A, recovery_instance_id=RI_A, ec2_instance_id=RI_A),),
        timeline=standard_timeline([A], pending=600, started=30, launching=300),
        snapshot_seconds=180 if staged else None,
        data_age=7.0,
    )
    log = render_job_log(script, START + 5000)
    conversions = [item for item in log if item["event"].startswith("CONVERSION_")]
    assert [item["event"] for item in conversions] == ["CONVERSION_START", "CONVERSION_END"]
    for item in conversions:
        assert item["eventData"]["conversionProperties"] == {"dataTimestamp": iso8601(START - 7)}
    instance = render_recovery_instance(script, script.servers[0], START + 5000)
    assert instance is not None
    assert instance["pointInTimeSnapshotDateTime"] == iso8601(START - 7)
    times = {item["event"]: item["logDateTime"] for item in log}
    assert times["JOB_END"] == iso8601(START + 930)  # when the job completed, not "now"
    if staged:
        assert times["SNAPSHOT_END"] == iso8601(START + 180)
        assert times["CONVERSION_END"] == iso8601(START + 600)  # the job left PENDING
    shape = drs_service_model().shape_for("JobLogs")
    assert shape_violations(shape, log) == []
