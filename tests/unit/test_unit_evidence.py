"""The evidence rules of issue 13 (core/evidence.py): the job log read into a Timeline,
RTO and RPO measured, stalls, targets judged; and that none of it changes a status."""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from drs_views import job_view, participant

from drs_poller.core.deciding import decide
from drs_poller.core.evidence import (
    TIMELINE_KEYS,
    JobLog,
    LogEvent,
    ServerLog,
    StallBounds,
    build_timeline,
    current_phase,
    evidence_news,
    job_log_of,
    judge_target,
    log_watches,
    parse_time,
    stall_of,
    stall_phase,
    stall_possible_from,
    stalled_servers,
    worth_reading,
)
from drs_poller.core.models import (
    ExecutionType,
    InstanceDetails,
    JobStatus,
    JobView,
    LaunchStatus,
    RunStatus,
    parse_execution,
)
from drs_poller.core.places import Place
from drs_poller.settings import load_settings, policy_from

R, D = ExecutionType.RECOVERY, ExecutionType.DRILL
T0 = 1_800_000_000  # the wave's (and the execution's) StartTime
JOB = "drsjob-00000000000000001"
POLICY = policy_from(load_settings(table_name="executions"))
BOUNDS = StallBounds(snapshot=600, conversion=1200, launch=900, post_launch_actions=1800)


def iso(epoch_seconds: int) -> str:
    from datetime import UTC, datetime  # noqa: PLC0415 - a test helper's own import

    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# --- parse_time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-01-15T08:00:00.000Z", 1_800_000_000),
        ("2027-01-15T08:00:00Z", 1_800_000_000),
        ("2027-01-15T09:00:00+01:00", 1_800_000_000),
        ("2027-01-15T08:00:00", 1_800_000_000),  # no zone: UTC
        ("1800000000", 1_800_000_000),
        ("1800000000.9", 1_800_000_000),  # whole seconds, down
        ("1800000000123", 1_800_000_000),  # milliseconds
        (Decimal("1800000000.5"), 1_800_000_000),
        ("yesterday", None),
        ("", None),
        (None, None),
        (True, None),
        ("NaN", None),
        ("-5", None),
    ],
)
def test_parse_time(value, expected):
    assert parse_time(value) == expected


# --- the job log --------------------------------------------------------------------------


def _ev(name: str, at: int | str | None, sid: str | None = "s-1", **more: Any) -> LogEvent:
    return LogEvent(
        name=name, at=iso(at) if isinstance(at, int) else at, source_server_id=sid, **more
    )


def test_job_log_marks_each_phase_first_start_and_last_end():
    log = job_log_of(
        JOB,
        [
            _ev("JOB_START", T0, sid=None),
            _ev("SNAPSHOT_START", T0 + 1),
            _ev("SNAPSHOT_END", T0 + 60),
            _ev("CONVERSION_START", T0 + 61, data_timestamp=iso(T0 - 5)),
            _ev("CONVERSION_START", T0 + 300, data_timestamp=iso(T0 - 2)),  # retried
            _ev("CONVERSION_END", T0 + 600, data_timestamp=iso(T0 - 2)),
            _ev("LAUNCH_START", T0 + 620),
            _ev("SNAPSHOT_START", T0 + 5, sid="s-2"),
            _ev("JOB_END", T0 + 900, sid=None),
        ],
    )
    assert log.started == T0
    assert log.ignored == 0
    assert log.servers["s-1"] == ServerLog(
        marks={
            "SnapshotStart": T0 + 1,
            "SnapshotEnd": T0 + 60,
            "ConversionStart": T0 + 61,
            "ConversionEnd": T0 + 600,
            "LaunchStart": T0 + 620,
        },
        data_time=T0 - 2,  # the last conversion's snapshot
    )
    assert log.servers["s-2"].marks == {"SnapshotStart": T0 + 5}


@pytest.mark.parametrize(
    ("events", "marks", "ignored"),
    [
        # An unknown event name (AWS adds them) degrades that event only.
        ([_ev("WARP_START", T0), _ev("SNAPSHOT_START", T0 + 1)], {"SnapshotStart": T0 + 1}, 1),
        # An unreadable time degrades that event only.
        ([_ev("SNAPSHOT_START", "soon"), _ev("SNAPSHOT_END", T0 + 9)], {"SnapshotEnd": T0 + 9}, 1),
        ([_ev("SNAPSHOT_START", None)], {}, 1),
        # A previous snapshot used instead of a new one ends the snapshot phase.
        ([_ev("USING_PREVIOUS_SNAPSHOT", T0 + 3)], {"SnapshotEnd": T0 + 3}, 0),
        # The model has no LAUNCH_END today; taken if DRS ever logs it.
        ([_ev("LAUNCH_END", T0 + 700)], {"Launched": T0 + 700}, 0),
        # Known events that say nothing of a server's phase are not "ignored".
        ([_ev("CLEANUP_START", T0 + 3), _ev("SERVER_SKIPPED", T0 + 4)], {}, 0),
    ],
)
def test_job_log_degrades_one_event_at_a_time(events, marks, ignored):
    log = job_log_of(JOB, events)
    assert (log.servers["s-1"].marks if "s-1" in log.servers else {}) == marks
    assert log.ignored == ignored


def test_job_log_failure_reasons_and_time():
    log = job_log_of(
        JOB,
        [
            _ev("CONVERSION_START", T0 + 60),
            _ev("LAUNCH_FAILED", T0 + 700, reason="InsufficientInstanceCapacity"),
            _ev("CLEANUP_FAIL", T0 + 800, sid="s-2"),  # no rawError: the event name
            _ev("LAUNCH_FAILED", "garbled", sid="s-3", reason="why"),  # time unreadable
        ],
    )
    assert log.reasons() == {
        "s-1": "InsufficientInstanceCapacity",
        "s-2": "CLEANUP_FAIL",
        "s-3": "why",  # the reason still counts; only the time is lost
    }
    assert log.servers["s-1"].failed_at == T0 + 700
    assert log.servers["s-2"].failed_at is None  # a clean-up failure is not a launch's
    assert log.servers["s-3"].failed_at is None


# --- the Timeline -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "log", "more", "expected"),
    [
        pytest.param({}, None, {}, {"JobStart": T0}, id="job start only"),
        pytest.param(
            {},
            ServerLog(marks={"SnapshotStart": T0 + 1}),
            {"launched_time": T0 + 900.7},
            {"JobStart": T0, "SnapshotStart": T0 + 1, "Launched": T0 + 900},
            id="launched at the poll that saw it (whole seconds)",
        ),
        pytest.param(
            {"Launched": T0 + 800},
            ServerLog(marks={"Launched": T0 + 700}),
            {"launched_time": T0 + 900.0},
            {"JobStart": T0, "Launched": T0 + 700},
            id="a LAUNCH_END event wins over the poll",
        ),
        pytest.param(
            {"SnapshotStart": T0 + 1, "ConversionStart": T0 + 60},
            None,
            {},
            {"JobStart": T0, "SnapshotStart": T0 + 1, "ConversionStart": T0 + 60},
            id="no log read this poll: the stored marks stand",
        ),
        pytest.param(
            {"ConversionStart": T0 + 60},
            ServerLog(
                marks={"ConversionStart": T0 + 60, "ConversionEnd": T0 + 600}, failed_at=T0 + 700
            ),
            {"failed": True},
            {
                "JobStart": T0,
                "ConversionStart": T0 + 60,
                "ConversionEnd": T0 + 600,
                "LaunchFailed": T0 + 700,
            },
            id="failed: DRS's failure time",
        ),
        pytest.param(
            {},
            None,
            {"failed": True},
            {"JobStart": T0, "LaunchFailed": T0 + 5000},
            id="failed and no log: the poll that saw it",
        ),
        pytest.param(
            {"Launched": T0 + 900},
            None,
            {"failed": True, "launched_time": T0 + 900.0, "actions_done": T0 + 1500.0},
            {"JobStart": T0, "Launched": T0 + 900, "ActionsDone": T0 + 1500},
            id="failed after launch (an action): no LaunchFailed",
        ),
        pytest.param(
            {"ActionsDone": T0 + 1400},
            None,
            {"actions_done": T0 + 1500.0},
            {"JobStart": T0, "ActionsDone": T0 + 1400},
            id="actions done is kept once written",
        ),
    ],
)
def test_build_timeline(stored, log, more, expected):
    args: dict[str, Any] = {
        "log": log,
        "job_start": T0,
        "launched_time": None,
        "failed": False,
        "actions_done": None,
        "now": T0 + 5000.0,
        **more,
    }
    timeline = build_timeline(stored, **args)
    assert timeline == expected
    assert set(timeline) <= set(TIMELINE_KEYS)
    assert all(type(value) is int for value in timeline.values())


# --- stalls -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeline", "mode", "now", "expected"),
    [
        ({}, D, T0 + 10**6, None),
        ({"JobStart": T0}, D, T0 + 10**6, None),  # nothing logged yet: not judged
        ({"SnapshotStart": T0}, D, T0 + 600, None),  # at the bound: not yet
        ({"SnapshotStart": T0}, D, T0 + 601, ("SNAPSHOT", T0, 600)),
        (
            {"SnapshotStart": T0, "SnapshotEnd": T0 + 60},
            D,
            T0 + 1261,
            ("CONVERSION", T0 + 60, 1200),
        ),
        ({"ConversionStart": T0 + 70}, D, T0 + 1271, ("CONVERSION", T0 + 70, 1200)),
        ({"ConversionStart": T0 + 70}, D, T0 + 1270, None),
        (
            {"ConversionStart": T0, "ConversionEnd": T0 + 500},
            D,
            T0 + 1401,
            ("LAUNCH", T0 + 500, 900),
        ),
        (
            {"ConversionEnd": T0 + 500, "LaunchStart": T0 + 600},
            D,
            T0 + 1501,
            ("LAUNCH", T0 + 600, 900),
        ),
        ({"LaunchStart": T0 + 600, "Launched": T0 + 700}, D, T0 + 10**6, None),  # a drill is done
        ({"Launched": T0 + 700}, R, T0 + 2501, ("POST_LAUNCH_ACTIONS", T0 + 700, 1800)),
        ({"Launched": T0 + 700}, R, T0 + 2500, None),
        ({"Launched": T0 + 700, "ActionsDone": T0 + 800}, R, T0 + 10**6, None),
        ({"ConversionStart": T0, "LaunchFailed": T0 + 9}, D, T0 + 10**6, None),
    ],
)
def test_stall_of(timeline, mode, now, expected):
    stalled = stall_of(timeline, mode=mode, active=True, now=now, bounds=BOUNDS)
    if expected is None:
        assert stalled is None
    else:
        phase, since, bound = expected
        assert stalled == {"Phase": phase, "Since": since, "BoundSeconds": bound}


def test_a_server_that_ended_is_never_stalled():
    assert (
        stall_of({"SnapshotStart": T0}, mode=D, active=False, now=T0 + 10**6, bounds=BOUNDS) is None
    )
    assert current_phase({"SnapshotStart": T0}, mode=D) is not None


@pytest.mark.parametrize(
    ("stored", "marks", "job_start", "expected"),
    [
        ({}, {}, None, None),  # nothing tells: read at the interval
        ({}, {}, T0, T0 + 600),  # nothing logged: any phase from the job's creation
        ({}, {"SnapshotStart": T0 + 10}, T0, T0 + 610),
        # Converting: conversion's bound or the later launch's, whichever is smaller.
        ({}, {"SnapshotStart": T0, "SnapshotEnd": T0 + 100}, T0, T0 + 1000),
        ({}, {"ConversionStart": T0 + 70}, None, T0 + 970),
        ({}, {"ConversionEnd": T0 + 500, "LaunchStart": T0 + 600}, T0, T0 + 1500),
        ({"SnapshotStart": T0 + 5}, {}, None, T0 + 605),  # a stored Timeline counts
        # A failure logged before DRS answers it: from the job's creation, as if unknown.
        ({}, {"ConversionStart": T0, "LaunchFailed": T0 + 9}, T0, T0 + 600),
        ({}, {"ConversionStart": T0, "LaunchFailed": T0 + 9}, None, None),
    ],
)
def test_stall_possible_from(stored, marks, job_start, expected):
    log = ServerLog(marks=marks) if marks else None
    found = stall_possible_from(stored, log=log, job_start=job_start, mode=D, bounds=BOUNDS)
    assert found == expected


_PHASE_MARKS = ("SnapshotStart", "SnapshotEnd", "ConversionStart", "ConversionEnd", "LaunchStart")


@pytest.mark.parametrize("seed", range(20))
def test_no_stall_is_declared_before_it_was_possible(seed):
    # The read budget skips a job until stall_possible_from: it must never be later than
    # a stall that the log, read at any later moment, would show.
    rng = random.Random(seed)
    for _ in range(200):
        times = sorted(T0 + rng.randrange(0, 4000) for _ in _PHASE_MARKS)
        full = dict(zip(_PHASE_MARKS, times, strict=True))
        known = rng.randrange(len(_PHASE_MARKS) + 1)
        prefix = dict(list(full.items())[:known])
        possible = stall_possible_from(
            {}, log=ServerLog(marks=prefix), job_start=T0, mode=D, bounds=BOUNDS
        )
        assert possible is not None
        for later in range(known, len(_PHASE_MARKS) + 1):
            seen = {"JobStart": T0, **dict(list(full.items())[:later])}
            last = max(seen.values())
            for now in range(last, last + 2500, 50):
                if stall_of(seen, mode=D, active=True, now=now, bounds=BOUNDS) is not None:
                    assert now > possible, (prefix, seen, now, possible)


# --- targets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("figures", "target", "met", "note"),
    [
        ([("s-1", 600, True), ("s-2", 900, True)], 900, True, None),
        ([("s-1", 600, True), ("s-2", 901, True)], 900, False, "slowest s-2: 901 s > target 900 s"),
        (
            [("s-1", 600, True), ("s-2", None, False)],
            900,
            False,
            "1 server(s) did not recover (s-2)",
        ),
        (
            [("s-1", None, True), ("s-2", None, True)],
            900,
            False,
            "2 server(s) have no recovery time (s-1, s-2)",
        ),
        ([], 900, False, "no servers"),
    ],
)
def test_judge_target_is_strict(figures, target, met, note):
    assert judge_target(figures=figures, target=target, what="recovery time") == (met, note)


# --- through decide: the item a poll writes ----------------------------------------------


def _server(sid: str = "s-1", **attributes: Any) -> dict[str, Any]:
    return {"SourceServerId": sid, "RecoveryJobId": JOB, "Status": "PENDING", **attributes}


def _item(*servers: dict[str, Any], mode: str = "DRILL", **wave_extra: Any) -> dict[str, Any]:
    return {
        "ExecutionId": "ex-1",
        "PlanId": "plan-1",
        "Status": "POLLING",
        "ExecutionType": mode,
        "StartTime": Decimal(T0 - 100),
        "Waves": [
            {
                "WaveName": "wave-1",
                "Region": "us-east-1",
                "Status": "IN_PROGRESS",
                "StartTime": Decimal(T0),
                "Servers": list(servers),
                **wave_extra,
            }
        ],
    }


def _job(status: JobStatus, *participants: Any) -> JobView:
    return replace(job_view(status, *participants), created=iso(T0 + 2))


def _decide(
    item: dict[str, Any], job: JobView, *, now: float, logs=None, instances=None, policy=None
):
    before = copy.deepcopy(item)
    decision = decide(
        parse_execution(item),
        jobs={JOB: job},
        instances=instances or {},
        now=now,
        policy=policy or replace(POLICY, stall_bounds=BOUNDS),
        job_logs=logs,
    )
    assert item == before
    return decision


def _log(*events: LogEvent) -> dict[str, JobLog]:
    return {JOB: job_log_of(JOB, events)}


def test_happy_drill_writes_timeline_rto_and_rpo_per_server_wave_and_execution():
    item = _item(
        _server("s-1"), _server("s-2"), RtoTargetSeconds=Decimal(1200), RpoTargetSeconds=Decimal(30)
    )
    logs = _log(
        _ev("JOB_START", T0 + 2, sid=None),
        *(
            event
            for sid, lag in (("s-1", 10), ("s-2", 20))
            for event in (
                _ev("SNAPSHOT_START", T0 + 3, sid=sid),
                _ev("SNAPSHOT_END", T0 + 60, sid=sid),
                _ev("CONVERSION_START", T0 + 60, sid=sid, data_timestamp=iso(T0 + 2 - lag)),
                _ev("CONVERSION_END", T0 + 600, sid=sid, data_timestamp=iso(T0 + 2 - lag)),
                _ev("LAUNCH_START", T0 + 630, sid=sid),
            )
        ),
    )
    job = _job(
        JobStatus.COMPLETED,
        participant("s-1", LaunchStatus.LAUNCHED),
        participant("s-2", LaunchStatus.LAUNCHED),
    )
    decision = _decide(item, job, now=T0 + 1000, logs=logs)

    assert decision.final_status == "COMPLETED"
    wave = decision.updates["Waves"][0]
    first, second = wave["Servers"]
    assert first["Timeline"] == {
        "JobStart": T0 + 2,
        "SnapshotStart": T0 + 3,
        "SnapshotEnd": T0 + 60,
        "ConversionStart": T0 + 60,
        "ConversionEnd": T0 + 600,
        "LaunchStart": T0 + 630,
        "Launched": T0 + 1000,
    }
    assert first["RecoveryTimeSeconds"] == 1000
    assert first["RecoveryPointTime"] == T0 - 8
    assert first["RecoveryPointSeconds"] == 10
    assert second["RecoveryPointSeconds"] == 20
    assert "Stalled" not in first
    assert wave["RecoveryTimeSeconds"] == 1000
    assert wave["RecoveryPointSeconds"] == 20
    assert wave["RtoTargetMet"] is True
    assert "RtoTargetNote" not in wave
    assert wave["RpoTargetMet"] is True
    # The execution's recovery time runs from its own start (100 s earlier).
    assert decision.updates["RecoveryTimeSeconds"] == 1100
    assert decision.updates["RecoveryPointSeconds"] == 20
    assert "RtoTargetMet" not in decision.updates  # no target on the execution


def test_missed_targets_are_written_with_why():
    item = _item(
        _server("s-1"), _server("s-2"), RtoTargetSeconds=Decimal(900), RpoTargetSeconds=Decimal(60)
    )
    job = _job(
        JobStatus.COMPLETED,
        participant("s-1", LaunchStatus.LAUNCHED),
        participant("s-2", LaunchStatus.FAILED),
    )
    decision = _decide(item, job, now=T0 + 1000)
    wave = decision.updates["Waves"][0]
    assert decision.final_status == "PARTIAL"
    assert wave["RtoTargetMet"] is False
    assert wave["RtoTargetNote"] == (
        "1 server(s) did not recover (s-2); slowest s-1: 1000 s > target 900 s"
    )
    assert wave["RpoTargetMet"] is False
    assert wave["RpoTargetNote"] == (
        "1 server(s) did not recover (s-2); 1 server(s) have no data timestamp (s-1)"
    )
    assert wave["Servers"][1]["Timeline"] == {"JobStart": T0 + 2, "LaunchFailed": T0 + 1000}


def test_execution_targets_are_judged_from_the_execution_start():
    item = _item(_server("s-1"))
    item["RtoTargetSeconds"] = Decimal(1050)  # 1000 s after the wave, 1100 s after the execution
    job = _job(JobStatus.COMPLETED, participant("s-1", LaunchStatus.LAUNCHED))
    decision = _decide(item, job, now=T0 + 1000)
    assert decision.updates["RecoveryTimeSeconds"] == 1100
    assert decision.updates["RtoTargetMet"] is False
    assert decision.updates["RtoTargetNote"] == "slowest s-1: 1100 s > target 1050 s"


def test_a_running_wave_judges_no_target():
    item = _item(_server("s-1"), RtoTargetSeconds=Decimal(900))
    job = _job(JobStatus.STARTED, participant("s-1", LaunchStatus.IN_PROGRESS))
    decision = _decide(item, job, now=T0 + 5000)
    assert "RtoTargetMet" not in decision.updates["Waves"][0]
    assert "RecoveryTimeSeconds" not in decision.updates["Waves"][0]


def test_recovery_with_actions_measures_time_to_actions_done():
    item = _item(
        _server(
            "s-1",
            Status="LAUNCHED",
            LaunchedTime=Decimal(T0 + 700),
            Timeline={"Launched": Decimal(T0 + 700)},
        ),
        mode="RECOVERY",
        RtoTargetSeconds=Decimal(1000),
    )
    job = _job(
        JobStatus.COMPLETED,
        participant("s-1", LaunchStatus.LAUNCHED, (RunStatus.SUCCEEDED, "validate", None)),
    )
    decision = _decide(item, job, now=T0 + 1200)
    server = decision.updates["Waves"][0]["Servers"][0]
    assert decision.final_status == "COMPLETED"
    assert server["Timeline"]["ActionsDone"] == T0 + 1200
    assert server["RecoveryTimeSeconds"] == 700
    assert server["RecoveryTimeToActionsSeconds"] == 1200
    wave = decision.updates["Waves"][0]
    assert wave["RecoveryTimeToActionsSeconds"] == 1200
    assert wave["RtoTargetMet"] is False  # judged on the time to actions done


def test_rpo_from_the_recovery_instance_when_the_log_has_no_data_timestamp():
    item = _item(_server("s-1", Status="IN_PROGRESS"))
    job = _job(JobStatus.COMPLETED, participant("s-1", LaunchStatus.LAUNCHED, instance="i-rec"))
    instance = InstanceDetails("i-rec", "i-0abc", point_in_time=iso(T0 - 40))
    decision = _decide(item, job, now=T0 + 1000, instances={"i-rec": instance})
    server = decision.updates["Waves"][0]["Servers"][0]
    assert server["RecoveryPointTime"] == T0 - 40
    assert server["RecoveryPointSeconds"] == 42  # from the job's creationDateTime (T0 + 2)


def test_a_log_data_timestamp_wins_over_the_stored_point_in_time():
    item = _item(_server("s-1", Status="IN_PROGRESS", RecoveryPointTime=Decimal(T0 - 40)))
    job = _job(JobStatus.STARTED, participant("s-1", LaunchStatus.IN_PROGRESS))
    logs = _log(_ev("CONVERSION_END", T0 + 600, data_timestamp=iso(T0 - 3)))
    # 1,000 s after StartTime: the never-written item's heartbeat is due, so it is written.
    decision = _decide(item, job, now=T0 + 1000, logs=logs)
    assert decision.updates["Waves"][0]["Servers"][0]["RecoveryPointTime"] == T0 - 3


def test_a_stalled_conversion_is_marked_and_never_failed():
    item = _item(_server("s-1", Status="IN_PROGRESS"))
    job = _job(JobStatus.STARTED, participant("s-1", LaunchStatus.IN_PROGRESS))
    logs = _log(
        _ev("SNAPSHOT_START", T0 + 3),
        _ev("SNAPSHOT_END", T0 + 60),
        _ev("CONVERSION_START", T0 + 60),
    )

    quiet = _decide(item, job, now=T0 + 60 + 1200, logs=logs)
    assert "Stalled" not in quiet.updates["Waves"][0]["Servers"][0]

    stalled = _decide(item, job, now=T0 + 60 + 1201, logs=logs)
    server = stalled.updates["Waves"][0]["Servers"][0]
    assert server["Stalled"] == {"Phase": "CONVERSION", "Since": T0 + 60, "BoundSeconds": 1200}
    assert stalled.kind == "state"  # written
    assert stalled.final_status is None
    assert "Error" not in server
    assert server["Status"] == "IN_PROGRESS"

    # Polled again later, nothing new: the same Stalled, nothing to write.
    again = _decide(
        stalled.updates | item | {"Waves": stalled.updates["Waves"]}, job, now=T0 + 2000, logs=logs
    )
    assert again.kind == "none"

    # The conversion ends: Stalled is removed.
    moved = _log(
        _ev("SNAPSHOT_START", T0 + 3),
        _ev("SNAPSHOT_END", T0 + 60),
        _ev("CONVERSION_START", T0 + 60),
        _ev("CONVERSION_END", T0 + 1900),
    )
    after = _decide({**item, "Waves": stalled.updates["Waves"]}, job, now=T0 + 2000, logs=moved)
    assert "Stalled" not in after.updates["Waves"][0]["Servers"][0]


def test_a_stalled_server_ends_by_drs_result_and_loses_stalled():
    stalled = {"Phase": "CONVERSION", "Since": Decimal(T0 + 60), "BoundSeconds": Decimal(1200)}
    item = _item(
        _server(
            "s-1",
            Status="IN_PROGRESS",
            Stalled=stalled,
            Timeline={"ConversionStart": Decimal(T0 + 60)},
        )
    )
    job = _job(JobStatus.COMPLETED, participant("s-1", LaunchStatus.LAUNCHED))
    decision = _decide(item, job, now=T0 + 5000)
    assert decision.final_status == "COMPLETED"
    assert "Stalled" not in decision.updates["Waves"][0]["Servers"][0]


@pytest.mark.parametrize("status", ["LAUNCHED", "FAILED"])
def test_a_server_that_had_ended_is_frozen(status):
    server = _server(
        "s-1",
        Status=status,
        **({"Error": "x"} if status == "FAILED" else {"LaunchedTime": Decimal(T0 + 5)}),
    )
    item = _item(server, _server("s-2", Status="IN_PROGRESS"))
    job = _job(
        JobStatus.STARTED,
        participant("s-1", LaunchStatus.LAUNCHED),
        participant("s-2", LaunchStatus.IN_PROGRESS),
    )
    # 1,000 s after StartTime, so that the never-written item's heartbeat writes it.
    decision = _decide(item, job, now=T0 + 1000)
    written = decision.updates["Waves"][0]["Servers"][0]
    assert {
        k: v for k, v in written.items() if k not in ("LastPolledTime", "PollAttempts")
    } == server


def test_the_evidence_never_changes_a_status():
    """The same poll with and without the evidence inputs decides the same statuses."""
    item = _item(_server("s-1", Status="IN_PROGRESS"), _server("s-2", Status="IN_PROGRESS"))
    job = _job(
        JobStatus.COMPLETED,
        participant("s-1", LaunchStatus.LAUNCHED),
        participant("s-2", LaunchStatus.FAILED),
    )
    logs = _log(
        _ev("CONVERSION_START", T0), _ev("LAUNCH_FAILED", T0 + 9, sid="s-2", reason="no capacity")
    )
    strict = replace(POLICY, stall_bounds=StallBounds(1, 1, 1, 1))
    with_evidence = _decide(item, job, now=T0 + 10**5, logs=logs, policy=strict)
    without = _decide(item, job, now=T0 + 10**5)
    assert with_evidence.final_status == without.final_status == "PARTIAL"
    for a, b in zip(
        with_evidence.updates["Waves"][0]["Servers"],
        without.updates["Waves"][0]["Servers"],
        strict=True,
    ):
        assert (a["Status"], a.get("Error"), a.get("LaunchedTime")) == (
            b["Status"],
            b.get("Error"),
            b.get("LaunchedTime"),
        )


# --- what a landed write newly says ------------------------------------------------------


def test_evidence_news_counts_each_figure_and_target_once():
    before = _item(_server("s-1"), _server("s-2", RecoveryTimeSeconds=Decimal(50)))
    after = copy.deepcopy(before)
    after["Waves"][0]["Servers"][0].update(
        RecoveryTimeSeconds=900, RecoveryPointSeconds=4, Stalled={"Phase": "LAUNCH"}
    )
    after["Waves"][0]["Servers"][1]["RecoveryTimeSeconds"] = 60  # changed, not new
    after["Waves"][0].update(RtoTargetMet=False, RpoTargetMet=True)
    after["RtoTargetMet"] = False
    news = evidence_news(before, after)
    assert news.recovery_times == ((Place(None, "us-east-1"), 900.0),)
    assert news.recovery_points == ((Place(None, "us-east-1"), 4.0),)
    assert sorted(news.missed) == ["rto", "rto"]  # the execution's and the wave's
    assert news.stalls == ("LAUNCH",)
    assert stalled_servers(after) == ["LAUNCH"]
    # Written again (the next poll, another replica, a restart): nothing new.
    assert evidence_news(after, copy.deepcopy(after)) == type(news)()


def test_a_server_failed_at_the_maximum_age_is_not_stalled():
    item = _item(
        _server("s-1", Status="IN_PROGRESS", Timeline={"ConversionStart": Decimal(T0 + 60)})
    )
    job = _job(JobStatus.STARTED, participant("s-1", LaunchStatus.IN_PROGRESS))
    policy = replace(POLICY, stall_bounds=BOUNDS, max_execution_age=7200.0)
    decision = _decide(item, job, now=T0 + 7200, policy=policy)
    server = decision.updates["Waves"][0]["Servers"][0]
    assert decision.final_status == "FAILED"
    assert "Stalled" not in server
    assert server["Timeline"]["LaunchFailed"] == T0 + 7200


def test_a_running_servers_timeline_is_written_once_with_the_write_that_ends_it():
    """A log read that only adds marks is not written on its own, and the writes of a
    running server carry no Timeline or figures (each would pay for the item's whole
    size); the write that ends it carries them complete, from the logs kept meanwhile.
    A Timeline an older version stored on a running server is dropped, not kept stale."""
    item = _item(_server("s-1", Status="PENDING", Timeline={"JobStart": Decimal(T0 + 2)}))
    pending = _job(JobStatus.PENDING, participant("s-1", LaunchStatus.PENDING))
    item["Phase"] = "PENDING"
    item["LastPolledTime"] = Decimal(T0 + 290)
    logs = _log(_ev("SNAPSHOT_START", T0 + 3), _ev("SNAPSHOT_END", T0 + 200))
    quiet = _decide(item, pending, now=T0 + 300, logs=logs)
    assert quiet.kind == "none"

    started = _job(JobStatus.STARTED, participant("s-1", LaunchStatus.IN_PROGRESS))
    moved = _decide(item, started, now=T0 + 330, logs=logs)
    assert moved.kind == "state"  # the server's status changed: written, without evidence
    running = moved.updates["Waves"][0]["Servers"][0]
    assert running["Status"] == "IN_PROGRESS"
    assert "Timeline" not in running
    assert "RecoveryTimeSeconds" not in running

    item["Waves"] = moved.updates["Waves"]
    launched = _job(JobStatus.COMPLETED, participant("s-1", LaunchStatus.LAUNCHED))
    ended = _decide(item, launched, now=T0 + 360, logs=logs)
    server = ended.updates["Waves"][0]["Servers"][0]
    assert server["Timeline"] == {
        "JobStart": T0 + 2,
        "SnapshotStart": T0 + 3,
        "SnapshotEnd": T0 + 200,
        "Launched": T0 + 360,
    }
    assert server["RecoveryTimeSeconds"] == 360


@pytest.mark.parametrize(
    ("before", "after", "read"),
    [
        pytest.param(
            ("PENDING", (("s1", "PENDING"),)),
            ("STARTED", (("s1", "PENDING"),)),
            False,
            id="job started: a step",
        ),
        pytest.param(
            ("STARTED", (("s1", "PENDING"),)),
            ("STARTED", (("s1", "IN_PROGRESS"),)),
            False,
            id="server launching: a step",
        ),
        pytest.param(
            ("STARTED", (("s1", "IN_PROGRESS"),)),
            ("STARTED", (("s1", "LAUNCHED"),)),
            True,
            id="server launched",
        ),
        pytest.param(
            ("STARTED", (("s1", "IN_PROGRESS"),)),
            ("STARTED", (("s1", "FAILED"),)),
            True,
            id="server failed",
        ),
        pytest.param(
            ("STARTED", (("s1", "LAUNCHED"),)),
            ("STARTED", (("s1", "TERMINATED"),)),
            True,
            id="server terminated",
        ),
        pytest.param(
            ("STARTED", (("s1", "LAUNCHED"),)),
            ("COMPLETED", (("s1", "LAUNCHED"),)),
            True,
            id="job ended",
        ),
        pytest.param(
            ("STARTED", (("s1", "IN_PROGRESS"),)),
            ("STARTED", (("s1", "RETRYING"),)),
            True,
            id="server status outside the model",
        ),
        pytest.param(
            ("STARTED", (("s1", "PENDING"),)),
            ("PAUSED", (("s1", "PENDING"),)),
            True,
            id="job status outside the model",
        ),
        pytest.param(
            ("STARTED", (("s1", "LAUNCHED"), ("s2", "PENDING"))),
            ("STARTED", (("s1", "LAUNCHED"), ("s2", "IN_PROGRESS"))),
            False,
            id="another server's step, one already launched",
        ),
        pytest.param(
            ("STARTED", (("s1", "LAUNCHED"),)),
            ("STARTED", (("s1", "LAUNCHED"), ("s2", "LAUNCHED"))),
            True,
            id="a server first seen with a result",
        ),
        pytest.param(
            ("STARTED", (("s1", "PENDING"),)),
            ("STARTED", (("s1", "PENDING"),)),
            False,
            id="no change",
        ),
    ],
)
def test_a_job_log_is_worth_reading_at_a_result_not_at_a_step(before, after, read):
    # The table names the servers; a signature lists their statuses in id order.
    def signature(named):
        job, servers = named
        return (job, tuple(status for _, status in sorted(servers)))

    assert worth_reading(signature(before), signature(after)) is read


def test_log_watches_give_each_job_its_status_signature_and_stall_moment():
    jobs = {
        JOB: _job(JobStatus.STARTED, participant("s-2"), participant("s-1", LaunchStatus.LAUNCHED)),
        "drsjob-2": replace(
            job_view(JobStatus.STARTED, participant("s-3"), job="drsjob-2"), created=iso(T0)
        ),
    }
    item = _item(
        _server("s-2"),
        _server("s-1", LaunchTime=Decimal(T0 + 60)),
        {**_server("s-3"), "RecoveryJobId": "drsjob-2"},
    )
    logs = {"drsjob-2": JobLog("drsjob-2", {"s-3": ServerLog(marks={"SnapshotStart": T0 + 30})})}

    watches = log_watches(parse_execution(item), jobs, logs=logs, bounds=BOUNDS)

    first, second = watches[JOB], watches["drsjob-2"]
    assert first.signature == ("STARTED", ("LAUNCHED", "NONE"))  # s-1, then s-2
    assert (first.unlaunched, first.stall_from) == (True, T0 + 2 + 600)  # nothing logged
    assert second.signature == ("STARTED", ("NONE",))
    assert (second.unlaunched, second.stall_from) == (True, T0 + 30 + 600)
    # Equal signatures are one object, however many jobs hold them.
    again = log_watches(parse_execution(item), jobs, logs=logs, bounds=BOUNDS)
    assert again["drsjob-2"].signature is second.signature


def test_jobs_first_seen_together_are_read_spread_over_the_interval():
    # After a start, every job is first seen at once: their stall-check reads fall where
    # each job's id puts them in the interval, not all together one interval later.
    phases = [stall_phase(f"drsjob-{n:017d}") for n in range(10_000)]

    assert all(0.0 <= phase < 1.0 for phase in phases)
    tenths = [sum(1 for phase in phases if k / 10 <= phase < (k + 1) / 10) for k in range(10)]
    assert min(tenths) > 800, tenths  # about 1,000 each
    assert max(tenths) < 1200, tenths
    assert stall_phase("drsjob-00000000000000042") == stall_phase("drsjob-00000000000000042")
