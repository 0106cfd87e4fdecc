"""The DRS adapter's wire parsing (clients/drs.py): DescribeJobs items and
ListLaunchActions items become typed observations. Strict only where the daemon cannot
act (a job without jobID); a value outside the model degrades one field (contract §2)."""

from __future__ import annotations

from typing import Any

import pytest

from drs_poller.clients.drs import (
    UNKNOWN_VALUE_LIMIT,
    parse_job,
    parse_launch_action,
    parse_log_event,
)
from drs_poller.core.evidence import LogEvent
from drs_poller.core.models import (
    ActionRun,
    InvalidDrsDataError,
    JobStatus,
    LaunchAction,
    LaunchStatus,
    Participant,
    RunStatus,
    Unknown,
)

ACTION_ID = "5f0c9b8a-1111-4222-8333-944455556666"
RUN_ID = "0a0b0c0d-1111-4222-8333-944455556666"


def _job(status: str = "STARTED", *servers: Any) -> dict[str, Any]:
    return {"jobID": "drsjob-1", "status": status, "participatingServers": list(servers)}


@pytest.mark.parametrize("status", list(JobStatus))
def test_parse_job_status(status):
    job = parse_job(_job(status.value))
    assert job.job_id == "drsjob-1"
    assert job.status is status
    assert job.unknown_status is None
    assert dict(job.servers) == {}


@pytest.mark.parametrize("launch_status", list(LaunchStatus))
def test_parse_job_launch_status(launch_status):
    job = parse_job(
        _job(
            "STARTED",
            {
                "sourceServerID": "s-1",
                "launchStatus": launch_status.value,
                "recoveryInstanceID": "i-rec-1",
            },
        )
    )
    assert job.servers["s-1"] == Participant(
        source_server_id="s-1", launch_status=launch_status, recovery_instance_id="i-rec-1", runs=()
    )


@pytest.mark.parametrize("run_status", list(RunStatus))
def test_parse_job_run_status_and_action(run_status):
    wire = _job(
        "COMPLETED",
        {
            "sourceServerID": "s-1",
            "launchStatus": "LAUNCHED",
            "launchActionsStatus": {
                "ssmAgentDiscoveryDatetime": "2027-01-15T08:00:00Z",
                "runs": [
                    {
                        "runId": RUN_ID,
                        "status": run_status.value,
                        "action": {
                            "actionCode": "AWS-RunShell",
                            "name": "warm-cache",
                            "actionId": ACTION_ID,
                            "optional": True,
                        },
                        "failureReason": "boom" if run_status is RunStatus.FAILED else None,
                    },
                    {"status": "SUCCEEDED", "action": {"actionCode": "AWS-Only-Code"}},
                    {"status": "SUCCEEDED", "action": {"optional": "true"}},
                ],
            },
        },
    )
    runs = parse_job(wire).servers["s-1"].runs
    assert runs == (
        ActionRun(
            status=run_status,
            name="warm-cache",
            failure_reason="boom" if run_status is RunStatus.FAILED else None,
            action_id=ACTION_ID,
            run_id=RUN_ID,
            optional=True,
        ),
        ActionRun(status=RunStatus.SUCCEEDED, name="AWS-Only-Code", failure_reason=None),
        # Only a JSON true makes a run optional: anything else is required.
        ActionRun(status=RunStatus.SUCCEEDED, name=None, failure_reason=None),
    )


@pytest.mark.parametrize(
    "entry",
    [
        {"sourceServerID": "s-1", "launchStatus": "LAUNCHED"},
        {"sourceServerID": "s-1", "launchStatus": "LAUNCHED", "launchActionsStatus": None},
        {"sourceServerID": "s-1", "launchStatus": "LAUNCHED", "launchActionsStatus": {}},
        {"sourceServerID": "s-1", "launchStatus": "LAUNCHED", "launchActionsStatus": {"runs": []}},
    ],
    ids=["missing", "null", "empty", "no runs"],
)
def test_parse_job_without_action_runs(entry):
    participant = parse_job(_job("STARTED", entry)).servers["s-1"]
    assert participant.runs == ()
    assert participant.launch_status is LaunchStatus.LAUNCHED
    assert participant.recovery_instance_id is None


def test_parse_job_without_launch_status_or_servers():
    job = parse_job({"jobID": "drsjob-9", "status": "PENDING"})
    assert dict(job.servers) == {}
    job = parse_job(_job("PENDING", {"sourceServerID": "s-1"}))
    assert job.servers["s-1"].launch_status is None


# --- values outside the model degrade one field ---------------------------------------


def test_unknown_job_status_reads_as_started_and_is_kept():
    job = parse_job(_job("RUNNING", {"sourceServerID": "s-1", "launchStatus": "PENDING"}))
    assert job.status is JobStatus.STARTED
    assert job.unknown_status == Unknown("status", "RUNNING")
    assert job.servers["s-1"].launch_status is LaunchStatus.PENDING


def test_missing_job_status_is_an_unknown_value_not_an_error():
    job = parse_job({"jobID": "drsjob-1"})
    assert job.status is JobStatus.STARTED
    assert job.unknown_status == Unknown("status", "None")


def test_unknown_launch_status_degrades_only_that_server():
    job = parse_job(
        _job(
            "STARTED",
            {"sourceServerID": "s-1", "launchStatus": "BOOTING"},
            {"sourceServerID": "s-2", "launchStatus": "LAUNCHED"},
        )
    )
    assert job.servers["s-1"].launch_status == Unknown("launchStatus", "BOOTING")
    assert job.servers["s-2"].launch_status is LaunchStatus.LAUNCHED
    assert job.servers["s-1"].unknown_values(with_runs=False) == (
        Unknown("launchStatus", "BOOTING"),
    )


def test_unknown_run_status_is_an_unknown_run_that_has_not_ended():
    job = parse_job(
        _job(
            "COMPLETED",
            {
                "sourceServerID": "s-1",
                "launchStatus": "LAUNCHED",
                "launchActionsStatus": {"runs": [{"status": "SKIPPED"}, {"status": "SUCCEEDED"}]},
            },
        )
    )
    participant = job.servers["s-1"]
    assert participant.runs[0].status == Unknown("runs.status", "SKIPPED")
    assert not participant.runs[0].ended
    assert participant.runs[1].ended
    # A DRILL does not read runs: their unknown values are not its concern.
    assert participant.unknown_values(with_runs=False) == ()
    assert participant.unknown_values(with_runs=True) == (Unknown("runs.status", "SKIPPED"),)


def test_a_run_that_is_not_an_object_never_ends():
    job = parse_job(
        _job("STARTED", {"sourceServerID": "s-1", "launchActionsStatus": {"runs": ["SUCCEEDED"]}})
    )
    (run,) = job.servers["s-1"].runs
    assert isinstance(run.status, Unknown)
    assert not run.ended


def test_a_long_unknown_value_is_cut():
    job = parse_job(_job("STARTED", {"sourceServerID": "s-1", "launchStatus": "X" * 500}))
    status = job.servers["s-1"].launch_status
    assert isinstance(status, Unknown)
    assert len(status.raw) == UNKNOWN_VALUE_LIMIT


@pytest.mark.parametrize("broken", [{"launchStatus": "PENDING"}, "s-1", {"sourceServerID": ""}])
def test_a_broken_server_entry_degrades_that_entry_only(broken):
    job = parse_job(_job("STARTED", broken, {"sourceServerID": "s-2", "launchStatus": "PENDING"}))
    assert list(job.servers) == ["s-2"]
    assert job.broken_entries == 1


INVALID_JOBS = [
    ("no jobID", {"status": "STARTED"}, "jobID"),
    (
        "participatingServers not a list",
        {**_job(), "participatingServers": {"s-1": {}}},
        "not a list",
    ),
]


@pytest.mark.parametrize(
    ("wire", "mentions"),
    [case[1:] for case in INVALID_JOBS],
    ids=[case[0] for case in INVALID_JOBS],
)
def test_parse_job_rejects_what_it_cannot_use_at_all(wire, mentions):
    with pytest.raises(InvalidDrsDataError, match=mentions):
        parse_job(wire)


# --- ListLaunchActions items ------------------------------------------------------------


def test_parse_launch_action():
    wire = {
        "actionId": ACTION_ID,
        "name": "Validate",
        "actionCode": "AWS-X",
        "optional": True,
        "active": False,
        "order": 2,
    }
    assert parse_launch_action(wire) == LaunchAction(
        action_id=ACTION_ID, name="Validate", optional=True, active=False
    )


def test_parse_launch_action_defaults_are_conservative():
    # No "active": DRS will run it; no "optional": it is required.
    assert parse_launch_action({"actionId": ACTION_ID}) == LaunchAction(
        action_id=ACTION_ID, name=None, optional=False, active=True
    )


@pytest.mark.parametrize("wire", [{"name": "no id"}, "x", {"actionId": ""}])
def test_parse_launch_action_without_id(wire):
    assert parse_launch_action(wire) is None


# --- the job log (DescribeJobLogItems items, botocore shapes JobLog / JobLogEventData) ------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (
            {
                "event": "CONVERSION_END",
                "logDateTime": "2027-01-15T08:10:00.000Z",
                "eventData": {
                    "sourceServerID": "s-1",
                    "conversionServerID": "i-0abc",
                    "conversionProperties": {"dataTimestamp": "2027-01-15T07:59:58.000Z"},
                },
            },
            LogEvent(
                name="CONVERSION_END",
                at="2027-01-15T08:10:00.000Z",
                source_server_id="s-1",
                data_timestamp="2027-01-15T07:59:58.000Z",
            ),
        ),
        (
            {"event": "LAUNCH_FAILED", "eventData": {"sourceServerID": "s-2", "rawError": "no"}},
            LogEvent(name="LAUNCH_FAILED", source_server_id="s-2", reason="no"),
        ),
        # Whatever else DRS sends degrades to "not known" per field.
        (
            {"event": "JOB_START", "logDateTime": 5, "eventData": "x"},
            LogEvent(name="JOB_START"),
        ),
        (
            {"event": "X", "eventData": {"conversionProperties": ["not", "a", "map"]}},
            LogEvent(name="X"),
        ),
        ({"logDateTime": "2027-01-15T08:10:00.000Z"}, None),  # no event at all
        ("not a map", None),
    ],
)
def test_parse_log_event(wire, expected):
    assert parse_log_event(wire) == expected


def test_parse_job_keeps_the_creation_time_as_sent():
    assert parse_job({**_job(), "creationDateTime": "2027-01-15T08:00:00.000Z"}).created == (
        "2027-01-15T08:00:00.000Z"
    )
    assert parse_job({**_job(), "creationDateTime": 7}).created is None
    assert parse_job(_job()).created is None
