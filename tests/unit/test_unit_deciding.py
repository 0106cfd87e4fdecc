"""decide, jobs_to_poll and instances_to_describe on hand-built items (contract §2).

Items are plain Python values as the DynamoDB deserializer gives them: numbers are
``Decimal``. DRS observations are built directly as ``JobView``/``Participant``.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from drs_views import job_view, participant

from drs_poller.clock import epoch
from drs_poller.core.completion import Outcome, server_outcome
from drs_poller.core.deciding import (
    Decision,
    Policy,
    ServerChange,
    decide,
    instances_to_describe,
    is_overdue,
    jobs_to_poll,
)
from drs_poller.core.evidence import StallBounds
from drs_poller.core.models import (
    JOB_NOT_FOUND,
    ExecutionType,
    InstanceDetails,
    JobLookup,
    JobStatus,
    LaunchStatus,
    RunStatus,
    parse_execution,
)
from drs_poller.core.phases import Intervals, Phase
from drs_poller.core.places import Place
from drs_poller.settings import load_settings, policy_from

START = 1_800_000_000.0
NOW = START + 1_000.0
EAST, WEST = "us-east-1", "eu-west-1"
POLICY = policy_from(load_settings(table_name="executions"))  # the settings' defaults
FINAL_KINDS = {"finalize"}


# --- builders ------------------------------------------------------------------------

JOB_1 = "drsjob-00000000000000001"


def _server(
    source: str = "s-1", job: str | None = "drsjob-00000000000000001", **attributes: Any
) -> dict[str, Any]:
    """A server map as the initiator writes it, plus whatever the daemon stored since."""
    server: dict[str, Any] = {"SourceServerId": source, "IsDrill": True, "Status": "PENDING"}
    if job is not None:
        server["RecoveryJobId"] = job
        server["LaunchTime"] = Decimal(f"{START:.3f}")
    server.update(attributes)
    return server


def _wave(*servers: dict[str, Any], name: str = "wave-1", region: str = EAST, **extra: Any):
    return {
        "WaveName": name,
        "ProtectionGroupId": "pg-1",
        "Region": region,
        "Status": "IN_PROGRESS",
        "StartTime": Decimal(f"{START:.3f}"),
        "Servers": list(servers),
        **extra,
    }


def _item(*waves: dict[str, Any], execution_type: str | None = "DRILL", **extra: Any):
    item: dict[str, Any] = {
        "ExecutionId": "ex-1",
        "PlanId": "plan-1",
        "Status": "POLLING",
        "StartTime": Decimal(f"{START:.3f}"),
        "Waves": list(waves),
        **extra,
    }
    if execution_type is not None:
        item["ExecutionType"] = execution_type
    return item


_p, _job = participant, job_view


def _decide(
    item: dict[str, Any],
    jobs: dict[str, JobLookup],
    *,
    now: float = NOW,
    policy: Policy = POLICY,
    instances: dict[str, InstanceDetails] | None = None,
    polls_since_write: int = 1,
) -> Decision:
    before = copy.deepcopy(item)
    decision = decide(
        parse_execution(item),
        jobs=jobs,
        instances=instances or {},
        now=now,
        policy=policy,
        polls_since_write=polls_since_write,
    )
    assert item == before, "decide must not mutate what was read"
    return decision


def _servers(decision: Decision, wave: int = 0) -> list[dict[str, Any]]:
    return decision.updates["Waves"][wave]["Servers"]


def _outcomes(decision: Decision, item: dict[str, Any]) -> list[list[Outcome]]:
    """The outcome of every server in the item as the decision would write it."""
    updated = parse_execution({**item, "Waves": decision.updates["Waves"]})
    return [
        [server_outcome(server, updated.mode_of(wave)) for server in wave.servers]
        for wave in updated.waves
    ]


def _assert_failed_servers_carry_error(decision: Decision, item: dict[str, Any]) -> None:
    for wave_index, outcomes in enumerate(_outcomes(decision, item)):
        for position, outcome in enumerate(outcomes):
            if outcome is Outcome.FAILED:
                error = _servers(decision, wave_index)[position].get("Error")
                assert isinstance(error, str), (wave_index, position)
                assert error


R, D = ExecutionType.RECOVERY, ExecutionType.DRILL
OK, BAD, RUNNING = RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.IN_PROGRESS
LAUNCHED, TERMINATED = LaunchStatus.LAUNCHED, LaunchStatus.TERMINATED


# --- one server, one poll: the completion rules ------------------------------------------

# id, mode, stored attributes, job seen this poll, expected: (Status, PostLaunchActionsStatus,
# error expected?, final status or None)
ONE_SERVER = [
    (
        "drill launched",
        D,
        {},
        _job(JobStatus.STARTED, _p("s-1", LAUNCHED)),
        ("LAUNCHED", None, False, "COMPLETED"),
    ),
    (
        "drill launched in a completed job",
        D,
        {"Status": "IN_PROGRESS"},
        _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED)),
        ("LAUNCHED", None, False, "COMPLETED"),
    ),
    (
        "drill ignores failed action runs",
        D,
        {},
        _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED, (BAD, "warm", "boom"))),
        ("LAUNCHED", None, False, "COMPLETED"),
    ),
    (
        "drill: DRS FAILED",
        D,
        {"Status": "IN_PROGRESS"},
        _job(JobStatus.STARTED, _p("s-1", LaunchStatus.FAILED)),
        ("FAILED", None, True, "FAILED"),
    ),
    (
        "drill: COMPLETED job, server still IN_PROGRESS",
        D,
        {"Status": "IN_PROGRESS"},
        _job(JobStatus.COMPLETED, _p("s-1", LaunchStatus.IN_PROGRESS)),
        ("IN_PROGRESS", None, True, "FAILED"),
    ),
    (
        "drill: COMPLETED job, server PENDING",
        D,
        {},
        _job(JobStatus.COMPLETED, _p("s-1", LaunchStatus.PENDING)),
        ("PENDING", None, True, "FAILED"),
    ),
    (
        "drill: COMPLETED job without the server",
        D,
        {},
        _job(JobStatus.COMPLETED),
        ("FAILED", None, True, "FAILED"),
    ),
    (
        "drill: COMPLETED job, no launchStatus",
        D,
        {},
        _job(JobStatus.COMPLETED, _p("s-1", None)),
        ("FAILED", None, True, "FAILED"),
    ),
    (
        "drill: TERMINATED before launch",
        D,
        {"Status": "IN_PROGRESS"},
        _job(JobStatus.STARTED, _p("s-1", TERMINATED)),
        ("TERMINATED", None, True, "FAILED"),
    ),
    (
        "drill: TERMINATED with a recovery instance (its LAUNCHED unseen): it launched",
        D,
        {"Status": "IN_PROGRESS"},
        _job(JobStatus.COMPLETED, _p("s-1", TERMINATED, instance="i-rec-1")),
        ("TERMINATED", None, False, "COMPLETED"),
    ),
    (
        "recovery: TERMINATED before launch",
        R,
        {},
        _job(JobStatus.COMPLETED, _p("s-1", TERMINATED)),
        ("TERMINATED", None, True, "FAILED"),
    ),
    (
        "drill still launching",
        D,
        {},
        _job(JobStatus.STARTED, _p("s-1", LaunchStatus.IN_PROGRESS)),
        ("IN_PROGRESS", None, False, None),
    ),
    (
        "job still PENDING",
        D,
        {},
        _job(JobStatus.PENDING, _p("s-1", LaunchStatus.PENDING)),
        ("PENDING", None, False, None),
    ),
    (
        "recovery: launched, all runs succeeded",
        R,
        {},
        _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED, (OK, "a", None), (OK, "b", None))),
        ("LAUNCHED", "COMPLETED", False, "COMPLETED"),
    ),
    (
        "recovery: launched earlier, all runs succeeded now",
        R,
        {"Status": "LAUNCHED", "LaunchedTime": Decimal(f"{NOW - 60:.3f}")},
        _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED, (OK, "a", None))),
        ("LAUNCHED", "COMPLETED", False, "COMPLETED"),
    ),
    (
        "recovery: a run failed",
        R,
        {"Status": "LAUNCHED", "LaunchedTime": Decimal(f"{NOW - 60:.3f}")},
        _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED, (OK, "a", None), (BAD, "b", "exit 1"))),
        ("LAUNCHED", "FAILED", True, "FAILED"),
    ),
    (
        "recovery: a run still in progress",
        R,
        {},
        _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED, (OK, "a", None), (RUNNING, "b", None))),
        ("LAUNCHED", "IN_PROGRESS", False, None),
    ),
    (
        "recovery: runs in progress long after the grace period",
        R,
        {"Status": "LAUNCHED", "LaunchedTime": Decimal(f"{NOW - 5000:.3f}")},
        _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED, (RUNNING, "b", None))),
        ("LAUNCHED", "IN_PROGRESS", False, None),
    ),
    (
        "recovery: launched now, no runs (grace from launch, not LaunchTime)",
        R,
        {},
        _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED)),
        ("LAUNCHED", "IN_PROGRESS", False, None),
    ),
    (
        "recovery: no runs, 1 s before the grace period ends",
        R,
        {"Status": "LAUNCHED", "LaunchedTime": Decimal(f"{NOW - 599:.3f}")},
        _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED)),
        ("LAUNCHED", "IN_PROGRESS", False, None),
    ),
    (
        "recovery: no runs, grace period passed",
        R,
        {"Status": "LAUNCHED", "LaunchedTime": Decimal(f"{NOW - 601:.3f}")},
        _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED)),
        ("LAUNCHED", "NOT_CONFIGURED", False, "COMPLETED"),
    ),
    (
        "recovery: launched, not yet listed again, grace passed",
        R,
        {"Status": "LAUNCHED", "LaunchedTime": Decimal(f"{NOW - 601:.3f}")},
        _job(JobStatus.STARTED, _p("s-1", LAUNCHED)),
        ("LAUNCHED", "NOT_CONFIGURED", False, "COMPLETED"),
    ),
]


@pytest.mark.parametrize(
    ("mode", "stored", "job", "expected"),
    [case[1:] for case in ONE_SERVER],
    ids=[case[0] for case in ONE_SERVER],
)
def test_one_server_one_poll(mode, stored, job, expected):
    status, post_launch, has_error, final = expected
    item = _item(
        _wave(_server("s-1", "drsjob-00000000000000001", **stored)), execution_type=mode.value
    )

    decision = _decide(item, {"drsjob-00000000000000001": job})

    (server,) = _servers(decision)
    assert server["Status"] == status
    assert server.get("PostLaunchActionsStatus") == post_launch
    assert ("Error" in server) is has_error
    assert decision.final_status == final
    # Nothing stored changed (a first poll of a PENDING job, 1,000 s after StartTime):
    # the first LastPolledTime, a heartbeat; a change of phase alone is not a state write.
    # (A server with no Status yet reads as PENDING: no transition.)
    unchanged = stored.get("Status", "PENDING") == status and post_launch is None
    assert decision.kind == ("finalize" if final else "heartbeat" if unchanged else "state")
    if final:
        assert decision.updates["Status"] == final
        assert decision.updates["EndTime"] == epoch(NOW)
        assert decision.updates["Waves"][0]["Status"] == final
        assert decision.updates["Waves"][0]["EndTime"] == epoch(NOW)
        assert ("ErrorMessage" in decision.updates) is (final == "FAILED")
    else:
        assert "Status" not in decision.updates
        assert "EndTime" not in decision.updates
        assert decision.updates["Waves"][0]["Status"] == "IN_PROGRESS"
    if post_launch == "COMPLETED":
        assert server["PostLaunchActionsCompleted"] == epoch(NOW)
    _assert_failed_servers_carry_error(decision, item)


def test_drill_launched_writes_everything_the_contract_names():
    item = _item(
        _wave(_server("s-1", "drsjob-00000000000000001")), execution_type=None
    )  # missing: DRILL
    job = _job(JobStatus.STARTED, _p("s-1", LAUNCHED, instance="i-rec-1"))
    details = InstanceDetails(
        recovery_instance_id="i-rec-1",
        ec2_instance_id="i-0abc",
        private_ip="10.0.0.5",
        hostname="ip-10-0-0-5",
        instance_type="m5.large",
    )

    decision = _decide(item, {"drsjob-00000000000000001": job}, instances={"i-rec-1": details})

    assert decision.kind == "finalize"
    assert decision.final_status == "COMPLETED"
    assert decision.phase is Phase.PENDING  # nothing active any more
    assert decision.updates == {
        "Waves": [
            {
                **_wave(),
                "Status": "COMPLETED",
                "EndTime": epoch(NOW),
                "Servers": [
                    {
                        **_server("s-1", "drsjob-00000000000000001"),
                        "Status": "LAUNCHED",
                        "TransitionHistory": [{"status": "LAUNCHED", "timestamp": epoch(NOW)}],
                        "RecoveryInstanceId": "i-rec-1",
                        "InstanceId": "i-0abc",
                        "PrivateIp": "10.0.0.5",
                        "Hostname": "ip-10-0-0-5",
                        "InstanceType": "m5.large",
                        "LaunchedTime": epoch(NOW),
                        "LastPolledTime": epoch(NOW),
                        "PollAttempts": 1,
                        # The evidence (issue 13): launched at the poll that saw it.
                        "Timeline": {"Launched": int(NOW)},
                        "RecoveryTimeSeconds": 1000,
                    }
                ],
                "RecoveryTimeSeconds": 1000,  # the slowest server of the finished wave
            }
        ],
        "Phase": "PENDING",
        "LastPolledTime": epoch(NOW),
        "Status": "COMPLETED",
        "EndTime": epoch(NOW),
        "RecoveryTimeSeconds": 1000,  # the last server up, from the execution's start
    }
    assert decision.changes == (
        ServerChange(
            wave="wave-1",
            source_server_id="s-1",
            old_status="PENDING",
            new_status="LAUNCHED",
            error=None,
        ),
    )


def test_failed_run_error_names_the_action_and_reason():
    item = _item(
        _wave(
            _server(
                "s-1",
                "drsjob-00000000000000001",
                Status="LAUNCHED",
                LaunchedTime=Decimal(f"{NOW - 10:.3f}"),
            )
        ),
        execution_type="RECOVERY",
    )
    job = _job(
        JobStatus.COMPLETED,
        _p("s-1", LAUNCHED, (BAD, "mount-volumes", "timed out"), (BAD, None, None)),
    )
    (server,) = _servers(_decide(item, {"drsjob-00000000000000001": job}))
    assert server["PostLaunchActionsStatus"] == "FAILED"
    assert "mount-volumes (timed out)" in server["Error"]
    assert "unnamed" in server["Error"]


def test_wave_execution_mode_overrides_execution_type():
    """A DRILL wave of a RECOVERY execution ignores action runs; a RECOVERY wave does not."""
    item = _item(
        _wave(_server("s-1", "drsjob-00000000000000001"), ExecutionMode="DRILL"),
        _wave(_server("s-2", "drsjob-00000000000000002"), name="wave-2", ExecutionMode="RECOVERY"),
        execution_type="RECOVERY",
    )
    jobs: dict[str, JobLookup] = {
        "drsjob-00000000000000001": _job(
            JobStatus.COMPLETED, _p("s-1", LAUNCHED, (BAD, "x", None))
        ),
        "drsjob-00000000000000002": _job(
            JobStatus.COMPLETED,
            _p("s-2", LAUNCHED, (BAD, "x", None)),
            job="drsjob-00000000000000002",
        ),
    }
    decision = _decide(item, jobs)
    assert decision.final_status == "PARTIAL"
    assert [w["Status"] for w in decision.updates["Waves"]] == ["COMPLETED", "FAILED"]
    assert "Error" not in _servers(decision, 0)[0]
    assert "PostLaunchActionsStatus" not in _servers(decision, 0)[0]
    assert _servers(decision, 1)[0]["PostLaunchActionsStatus"] == "FAILED"


def test_recovery_no_runs_after_grace_is_not_configured_even_if_terminated():
    item = _item(
        _wave(
            _server(
                "s-1",
                "drsjob-00000000000000001",
                Status="LAUNCHED",
                LaunchedTime=Decimal(f"{NOW - 700:.3f}"),
                PostLaunchActionsStatus="IN_PROGRESS",
            )
        ),
        execution_type="RECOVERY",
    )
    decision = _decide(
        item, {"drsjob-00000000000000001": _job(JobStatus.COMPLETED, _p("s-1", TERMINATED))}
    )
    (server,) = _servers(decision)
    assert server["Status"] == "TERMINATED"
    assert server["PostLaunchActionsStatus"] == "NOT_CONFIGURED"
    assert "Error" not in server
    assert decision.final_status == "COMPLETED"


# --- several servers ------------------------------------------------------------------


def test_completed_job_with_a_failed_server_is_partial():
    item = _item(
        _wave(
            _server("s-1", "drsjob-00000000000000001"), _server("s-2", "drsjob-00000000000000001")
        )
    )
    job = _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED), _p("s-2", LaunchStatus.FAILED))

    decision = _decide(item, {"drsjob-00000000000000001": job})

    assert decision.kind == "finalize"
    assert decision.final_status == "PARTIAL"
    assert decision.updates["Status"] == "PARTIAL"
    assert decision.updates["Waves"][0]["Status"] == "PARTIAL"
    assert "ErrorMessage" not in decision.updates
    s1, s2 = _servers(decision)
    assert (s1["Status"], "Error" in s1) == ("LAUNCHED", False)
    assert (s2["Status"], "Error" in s2) == ("FAILED", True)
    assert {change.source_server_id for change in decision.changes} == {"s-1", "s-2"}


def test_all_failed_is_failed_with_an_error_message():
    item = _item(
        _wave(
            _server("s-1", "drsjob-00000000000000001"), _server("s-2", "drsjob-00000000000000001")
        )
    )
    job = _job(JobStatus.COMPLETED, _p("s-1", LaunchStatus.FAILED), _p("s-2", TERMINATED))

    decision = _decide(item, {"drsjob-00000000000000001": job})

    assert decision.final_status == "FAILED"
    message = decision.updates["ErrorMessage"]
    assert "s-1" in message
    assert "s-2" in message
    _assert_failed_servers_carry_error(decision, item)


def test_drill_terminated_after_launch_stays_succeeded():
    launched_at = Decimal(f"{NOW - 100:.3f}")
    item = _item(
        _wave(
            _server("s-1", "drsjob-00000000000000001", Status="LAUNCHED", LaunchedTime=launched_at),
            _server("s-2", "drsjob-00000000000000001", Status="IN_PROGRESS"),
        ),
        Phase="IN_PROGRESS",
    )

    first = _decide(
        item,
        {
            "drsjob-00000000000000001": _job(
                JobStatus.STARTED, _p("s-1", TERMINATED), _p("s-2", LaunchStatus.IN_PROGRESS)
            )
        },
    )
    assert first.kind == "state"
    s1 = _servers(first)[0]
    assert s1["Status"] == "TERMINATED"  # the last launchStatus seen is recorded
    assert s1["LaunchedTime"] == launched_at
    assert "Error" not in s1
    assert _outcomes(first, item) == [[Outcome.SUCCEEDED, Outcome.ACTIVE]]

    second_item = {**item, "Waves": first.updates["Waves"]}
    second = _decide(
        second_item,
        {
            "drsjob-00000000000000001": _job(
                JobStatus.COMPLETED, _p("s-1", TERMINATED), _p("s-2", LAUNCHED)
            )
        },
    )
    assert second.final_status == "COMPLETED"
    assert [s["Status"] for s in _servers(second)] == ["TERMINATED", "LAUNCHED"]


def test_recovery_success_never_goes_back():
    item = _item(
        _wave(
            _server(
                "s-1",
                "drsjob-00000000000000001",
                Status="LAUNCHED",
                LaunchedTime=Decimal(f"{NOW - 100:.3f}"),
                PostLaunchActionsStatus="COMPLETED",
            ),
            _server("s-2", "drsjob-00000000000000001", Status="IN_PROGRESS"),
        ),
        execution_type="RECOVERY",
    )
    job = _job(
        JobStatus.STARTED,
        _p("s-1", TERMINATED, (BAD, "late", None)),
        _p("s-2", LaunchStatus.IN_PROGRESS),
    )
    decision = _decide(item, {"drsjob-00000000000000001": job})
    s1 = _servers(decision)[0]
    assert s1["PostLaunchActionsStatus"] == "COMPLETED"
    assert "Error" not in s1
    assert _outcomes(decision, item) == [[Outcome.SUCCEEDED, Outcome.ACTIVE]]


def test_unstarted_server_blocks_finalization():
    item = _item(
        _wave(_server("s-1", "drsjob-00000000000000001")),
        _wave(_server("s-2", None), name="wave-2", region=WEST, Status="PENDING"),
    )
    decision = _decide(
        item, {"drsjob-00000000000000001": _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED))}
    )

    assert decision.kind == "state"
    assert decision.final_status is None
    assert "Status" not in decision.updates
    wave_1, wave_2 = decision.updates["Waves"]
    assert (wave_1["Status"], wave_1["EndTime"]) == ("COMPLETED", epoch(NOW))
    assert wave_2 == item["Waves"][1]  # untouched until its jobs start
    assert decision.phase is Phase.PENDING


def test_server_that_failed_to_start_is_terminal():
    item = _item(
        _wave(
            _server("s-1", "drsjob-00000000000000001"),
            _server("s-2", None, Status="FAILED", Error="StartRecovery denied"),
        )
    )
    decision = _decide(
        item, {"drsjob-00000000000000001": _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED))}
    )
    assert decision.final_status == "PARTIAL"
    assert _servers(decision)[1] == item["Waves"][0]["Servers"][1]


def test_failed_to_start_without_error_is_written_back_with_one():
    item = _item(
        _wave(_server("s-1", "drsjob-00000000000000001"), _server("s-2", None, Status="FAILED"))
    )
    decision = _decide(
        item, {"drsjob-00000000000000001": _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED))}
    )
    assert decision.final_status == "PARTIAL"
    assert _servers(decision)[1]["Status"] == "FAILED"
    _assert_failed_servers_carry_error(decision, item)


def test_empty_wave_counts_as_failed():
    item = _item(_wave(_server("s-1", "drsjob-00000000000000001")), _wave(name="wave-2"))
    decision = _decide(
        item, {"drsjob-00000000000000001": _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED))}
    )
    assert decision.final_status == "PARTIAL"
    empty = decision.updates["Waves"][1]
    assert empty["Status"] == "FAILED"
    assert empty["Error"]
    assert empty["Servers"] == []


def test_execution_without_waves_fails():
    decision = _decide(_item(), {})
    assert decision.final_status == "FAILED"
    assert decision.updates["ErrorMessage"]
    assert decision.updates["Waves"] == []


# --- unknown and unobserved jobs --------------------------------------------------------

MAX_POLLS = 3
UNKNOWN_POLICY = replace(POLICY, unknown_job_max_polls=MAX_POLLS)


@pytest.mark.parametrize(
    ("previous_misses", "misses", "failed"),
    [(None, 1, False), (0, 1, False), (1, 2, False), (2, 3, True)],
)
def test_unknown_job_counted_then_failed(previous_misses, misses, failed):
    stored: dict[str, Any] = {"Status": "IN_PROGRESS"}
    if previous_misses is not None:
        stored["JobNotFoundPolls"] = Decimal(previous_misses)
    item = _item(_wave(_server("s-1", "drsjob-00000000000000001", **stored)), Phase="IN_PROGRESS")

    decision = _decide(item, {"drsjob-00000000000000001": JOB_NOT_FOUND}, policy=UNKNOWN_POLICY)

    (server,) = _servers(decision)
    assert server["JobNotFoundPolls"] == misses
    if failed:
        assert decision.kind == "finalize"
        assert decision.final_status == "FAILED"
        assert server["Status"] == "FAILED"
        assert "drsjob-00000000000000001" in server["Error"]
        assert "drsjob-00000000000000001" in decision.updates["ErrorMessage"]
    else:
        assert decision.kind == "state"
        assert server["Status"] == "IN_PROGRESS"
        assert "Error" not in server
        assert decision.phase is Phase.IN_PROGRESS  # the stored phase is kept


def test_unknown_job_count_resets_when_drs_knows_the_job_again():
    item = _item(
        _wave(
            _server(
                "s-1", "drsjob-00000000000000001", Status="IN_PROGRESS", JobNotFoundPolls=Decimal(2)
            )
        )
    )
    job = _job(JobStatus.STARTED, _p("s-1", LaunchStatus.IN_PROGRESS))
    decision = _decide(item, {"drsjob-00000000000000001": job}, policy=UNKNOWN_POLICY)
    assert "JobNotFoundPolls" not in _servers(decision)[0]
    assert decision.kind == "state"


def test_unknown_job_after_success_changes_nothing():
    item = _item(
        _wave(
            _server(
                "s-1",
                "drsjob-00000000000000001",
                Status="LAUNCHED",
                LaunchedTime=Decimal(f"{NOW - 10:.3f}"),
            ),
            _server("s-2", "drsjob-00000000000000002", Status="IN_PROGRESS"),
        ),
        Phase="IN_PROGRESS",
    )
    jobs: dict[str, JobLookup] = {
        "drsjob-00000000000000001": JOB_NOT_FOUND,
        "drsjob-00000000000000002": _job(
            JobStatus.STARTED, _p("s-2", LaunchStatus.IN_PROGRESS), job="drsjob-00000000000000002"
        ),
    }
    decision = _decide(item, jobs, policy=replace(POLICY, unknown_job_max_polls=1))
    s1 = _servers(decision)[0]
    assert "JobNotFoundPolls" not in s1
    assert "Error" not in s1
    assert s1["Status"] == "LAUNCHED"
    assert decision.changes == ()


@pytest.mark.parametrize("stored_phase", ["STARTED", "IN_PROGRESS", "POST_LAUNCH", "PENDING"])
def test_unobserved_job_changes_nothing_and_keeps_the_stored_phase(stored_phase):
    item = _item(
        _wave(
            _server(
                "s-1", "drsjob-00000000000000001", Status="IN_PROGRESS", PollAttempts=Decimal(4)
            )
        ),
        Phase=stored_phase,
        LastPolledTime=Decimal(f"{NOW - 10:.3f}"),
    )
    decision = _decide(item, {})  # the region's DescribeJobs failed
    assert decision.kind == "none"
    assert decision.phase == Phase(stored_phase)
    assert decision.updates == {}
    assert decision.changes == ()


def test_unobserved_job_heartbeat_writes_the_item_unchanged():
    item = _item(
        _wave(
            _server(
                "s-1", "drsjob-00000000000000001", Status="IN_PROGRESS", PollAttempts=Decimal(4)
            )
        ),
        Phase="STARTED",
        LastPolledTime=Decimal(f"{NOW - 1000:.3f}"),
    )
    decision = _decide(item, {}, polls_since_write=3)
    assert decision.kind == "heartbeat"
    assert decision.updates["Waves"] == item["Waves"]  # no PollAttempts for an unpolled job
    assert decision.updates["Phase"] == "STARTED"
    assert decision.updates["LastPolledTime"] == epoch(NOW)


def test_unobserved_job_mixed_with_observed_keeps_the_more_urgent_stored_phase():
    item = _item(
        _wave(_server("s-1", "drsjob-00000000000000001", Status="IN_PROGRESS"), region=EAST),
        _wave(_server("s-2", "drsjob-00000000000000002"), name="wave-2", region=WEST),
        Phase="STARTED",
    )
    jobs: dict[str, JobLookup] = {
        "drsjob-00000000000000002": _job(JobStatus.PENDING, job="drsjob-00000000000000002")
    }
    assert _decide(item, jobs).phase is Phase.STARTED


# --- frozen failures ----------------------------------------------------------------------

FROZEN = [
    (
        "launch failed, DRS now says LAUNCHED",
        "DRILL",
        {"Status": "FAILED", "Error": "DRS reported launchStatus FAILED"},
        _p("s-1", LAUNCHED, instance="i-rec"),
    ),
    (
        "job completed unlaunched, DRS now says LAUNCHED",
        "DRILL",
        {"Status": "IN_PROGRESS", "Error": "job completed but the server did not launch"},
        _p("s-1", LAUNCHED),
    ),
    (
        "post-launch failed, runs now succeed",
        "RECOVERY",
        {
            "Status": "LAUNCHED",
            "LaunchedTime": Decimal(f"{NOW - 50:.3f}"),
            "PostLaunchActionsStatus": "FAILED",
            "Error": "post-launch action failed: a",
        },
        _p("s-1", LAUNCHED, (OK, "a", None)),
    ),
]


@pytest.mark.parametrize(
    ("mode", "stored", "participant"),
    [case[1:] for case in FROZEN],
    ids=[case[0] for case in FROZEN],
)
def test_failed_server_is_frozen(mode, stored, participant):
    frozen = _server("s-1", "drsjob-00000000000000001", PollAttempts=Decimal(3), **stored)
    item = _item(
        _wave(frozen, _server("s-2", "drsjob-00000000000000001", Status="IN_PROGRESS")),
        execution_type=mode,
    )
    job = _job(JobStatus.STARTED, participant, _p("s-2", LaunchStatus.IN_PROGRESS))

    decision = _decide(item, {"drsjob-00000000000000001": job})

    assert _servers(decision)[0] == frozen
    assert all(change.source_server_id != "s-1" for change in decision.changes)
    assert jobs_to_poll(parse_execution(item)) == {
        Place(None, EAST): {"drsjob-00000000000000001"}
    }  # s-2 still needs it


# --- maximum age and overdue -------------------------------------------------------------


def test_max_age_fails_every_unfinished_server():
    policy = replace(POLICY, max_execution_age=7200.0)
    now = START + 7201.0
    item = _item(
        _wave(
            _server(
                "s-1",
                "drsjob-00000000000000001",
                Status="LAUNCHED",
                LaunchedTime=Decimal(f"{START + 60:.3f}"),
            ),
            _server("s-2", "drsjob-00000000000000001", Status="IN_PROGRESS"),
        ),
        _wave(_server("s-3", None), name="wave-2", Status="PENDING"),
        Phase="IN_PROGRESS",
    )

    decision = _decide(item, {}, now=now, policy=policy)

    assert decision.kind == "finalize"
    assert decision.final_status == "FAILED"
    assert decision.updates["Status"] == "FAILED"
    assert decision.updates["EndTime"] == epoch(now)
    message = decision.updates["ErrorMessage"]
    assert "maximum execution age of 7200 s" in message
    assert "1 server(s) still active, 1 never started" in message
    s1, s2 = _servers(decision, 0)
    (s3,) = _servers(decision, 1)
    assert s1 == item["Waves"][0]["Servers"][0]  # succeeded: untouched
    for server in (s2, s3):
        assert server["Status"] == "FAILED"
        assert "maximum execution age" in server["Error"]
        assert server["TransitionHistory"][-1] == {"status": "FAILED", "timestamp": epoch(now)}
    assert [w["Status"] for w in decision.updates["Waves"]] == ["PARTIAL", "FAILED"]
    assert {c.source_server_id for c in decision.changes} == {"s-2", "s-3"}
    _assert_failed_servers_carry_error(decision, item)


def test_below_max_age_and_overdue_is_not_failed():
    policy = replace(POLICY, overdue_after=1800.0, max_execution_age=7200.0)
    now = START + 7199.0
    item = _item(
        _wave(_server("s-1", "drsjob-00000000000000001", Status="IN_PROGRESS")), Phase="IN_PROGRESS"
    )
    execution = parse_execution(item)
    assert is_overdue(execution, now=now, policy=policy) is True
    decision = _decide(
        item,
        {"drsjob-00000000000000001": _job(JobStatus.STARTED, _p("s-1", LaunchStatus.IN_PROGRESS))},
        now=now,
        policy=policy,
    )
    assert decision.kind == "heartbeat"
    assert decision.final_status is None
    assert "Error" not in _servers(decision)[0]


@pytest.mark.parametrize(("elapsed", "overdue"), [(1799.0, False), (1800.0, False), (1801.0, True)])
def test_is_overdue(elapsed, overdue):
    execution = parse_execution(_item(_wave(_server())))
    assert is_overdue(execution, now=START + elapsed, policy=POLICY) is overdue


# --- what kind of write -------------------------------------------------------------------

# id, stored execution attrs, stored wave status, stored server status, seen launch status,
# expected kind
KINDS = [
    ("nothing changed, heartbeat not due", {"Phase": "IN_PROGRESS", "LastPolledTime": NOW - 10},
     "IN_PROGRESS", "IN_PROGRESS", LaunchStatus.IN_PROGRESS, "none"),
    ("nothing changed, heartbeat due", {"Phase": "IN_PROGRESS", "LastPolledTime": NOW - 900},
     "IN_PROGRESS", "IN_PROGRESS", LaunchStatus.IN_PROGRESS, "heartbeat"),
    ("heartbeat 1 ms short", {"Phase": "IN_PROGRESS", "LastPolledTime": NOW - 899.999},
     "IN_PROGRESS", "IN_PROGRESS", LaunchStatus.IN_PROGRESS, "none"),
    # Never written: the heartbeat counts from StartTime (NOW - START = 1,000 s here).
    ("nothing changed, never polled, started 1,000 s ago", {"Phase": "IN_PROGRESS"},
     "IN_PROGRESS", "IN_PROGRESS", LaunchStatus.IN_PROGRESS, "heartbeat"),
    ("nothing changed, never polled, started 899.999 s ago",
     {"Phase": "IN_PROGRESS", "StartTime": Decimal(f"{NOW - 899.999:.3f}")},
     "IN_PROGRESS", "IN_PROGRESS", LaunchStatus.IN_PROGRESS, "none"),
    ("nothing changed, never polled, started 900 s ago",
     {"Phase": "IN_PROGRESS", "StartTime": Decimal(f"{NOW - 900:.3f}")},
     "IN_PROGRESS", "IN_PROGRESS", LaunchStatus.IN_PROGRESS, "heartbeat"),
    # A phase change alone is not written (the schedule follows Decision.phase); Phase
    # goes with the next write made for another reason.
    ("phase changed alone", {"Phase": "STARTED", "LastPolledTime": NOW - 10},
     "IN_PROGRESS", "IN_PROGRESS", LaunchStatus.IN_PROGRESS, "none"),
    ("phase never written, nothing else changed", {"LastPolledTime": NOW - 10},
     "IN_PROGRESS", "IN_PROGRESS", LaunchStatus.IN_PROGRESS, "none"),
    ("phase changed, heartbeat due", {"Phase": "STARTED", "LastPolledTime": NOW - 900},
     "IN_PROGRESS", "IN_PROGRESS", LaunchStatus.IN_PROGRESS, "heartbeat"),
    ("wave status changed", {"Phase": "IN_PROGRESS", "LastPolledTime": NOW - 10},
     "PENDING", "IN_PROGRESS", LaunchStatus.IN_PROGRESS, "state"),
    ("server status changed", {"Phase": "IN_PROGRESS", "LastPolledTime": NOW - 10},
     "IN_PROGRESS", "PENDING", LaunchStatus.IN_PROGRESS, "state"),
    ("finished", {"Phase": "IN_PROGRESS", "LastPolledTime": NOW - 10},
     "IN_PROGRESS", "IN_PROGRESS", LaunchStatus.LAUNCHED, "finalize"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("stored", "wave_status", "server_status", "seen", "kind"),
    [case[1:] for case in KINDS],
    ids=[case[0] for case in KINDS],
)
def test_decision_kind(stored, wave_status, server_status, seen, kind):
    stored = {key: Decimal(f"{value:.3f}") if key == "LastPolledTime" else value
              for key, value in stored.items()}  # fmt: skip
    item = _item(
        _wave(_server("s-1", JOB_1, Status=server_status, PollAttempts=Decimal(2)),
              Status=wave_status),
        **stored,
    )  # fmt: skip
    decision = _decide(item, {"drsjob-00000000000000001": _job(JobStatus.STARTED, _p("s-1", seen))})

    assert decision.kind == kind
    assert decision.writes is (kind != "none")
    if kind == "none":
        assert decision.updates == {}
        return
    assert decision.updates["LastPolledTime"] == epoch(NOW)
    assert decision.updates["Phase"] == decision.phase.value
    assert _servers(decision)[0]["PollAttempts"] == 3
    assert _servers(decision)[0]["LastPolledTime"] == epoch(NOW)
    if kind == "heartbeat":
        assert decision.changes == ()
        assert set(decision.updates) == {"Waves", "Phase", "LastPolledTime"}


@pytest.mark.parametrize(("previous", "polls", "expected"), [(None, 1, 1), (4, 1, 5), (4, 3, 7)])
def test_poll_attempts_add_the_unwritten_polls(previous, polls, expected):
    stored: dict[str, Any] = {"Status": "IN_PROGRESS"}
    if previous is not None:
        stored["PollAttempts"] = Decimal(previous)
    item = _item(_wave(_server("s-1", "drsjob-00000000000000001", **stored)))
    job = _job(JobStatus.STARTED, _p("s-1", LaunchStatus.IN_PROGRESS))
    decision = _decide(item, {"drsjob-00000000000000001": job}, polls_since_write=polls)
    assert _servers(decision)[0]["PollAttempts"] == expected


def test_unknown_attributes_survive():
    server = _server(
        "s-1", "drsjob-00000000000000001", Status="IN_PROGRESS", Note={"by": "ops"}, Tags=["a", "b"]
    )
    wave = _wave(server, Custom=Decimal(7), Owner="team-dr")
    item = _item(wave, Initiator="api", Requested=Decimal(3))

    decision = _decide(
        item, {"drsjob-00000000000000001": _job(JobStatus.COMPLETED, _p("s-1", LAUNCHED))}
    )

    assert decision.kind == "finalize"
    new_wave = decision.updates["Waves"][0]
    assert new_wave["Custom"] == Decimal(7)
    assert new_wave["Owner"] == "team-dr"
    assert new_wave["ProtectionGroupId"] == "pg-1"
    assert new_wave["StartTime"] == Decimal(f"{START:.3f}")
    new_server = new_wave["Servers"][0]
    assert new_server["Note"] == {"by": "ops"}
    assert new_server["Tags"] == ["a", "b"]
    assert new_server["IsDrill"] is True
    assert new_server["LaunchTime"] == Decimal(f"{START:.3f}")
    # Top-level attributes the daemon does not own are not rewritten at all (the evidence
    # of the finished execution is its own, issue 13).
    assert set(decision.updates) == {
        "Waves",
        "Phase",
        "LastPolledTime",
        "Status",
        "EndTime",
        "RecoveryTimeSeconds",
    }


def test_transition_history_is_bounded_by_the_policy():
    history = [{"status": f"X{n}", "timestamp": Decimal(n)} for n in range(5)]
    item = _item(
        _wave(_server("s-1", "drsjob-00000000000000001", Status="X4", TransitionHistory=history))
    )
    job = _job(JobStatus.STARTED, _p("s-1", LaunchStatus.IN_PROGRESS))
    decision = _decide(
        item, {"drsjob-00000000000000001": job}, policy=replace(POLICY, history_limit=3)
    )
    assert _servers(decision)[0]["TransitionHistory"] == [
        {"status": "X3", "timestamp": Decimal(3)},
        {"status": "X4", "timestamp": Decimal(4)},
        {"status": "IN_PROGRESS", "timestamp": epoch(NOW)},
    ]


PHASE_CASES = [
    ("job pending", D, [_p("s-1", None)], JobStatus.PENDING, Phase.PENDING),
    ("started, server pending", D, [_p("s-1", LaunchStatus.PENDING)], JobStatus.STARTED,
     Phase.STARTED),
    ("launching", D, [_p("s-1", LaunchStatus.IN_PROGRESS), _p("s-2", LaunchStatus.IN_PROGRESS)],
     JobStatus.STARTED, Phase.IN_PROGRESS),
    ("a server not listed yet is STARTED", D, [_p("s-1", LaunchStatus.IN_PROGRESS)],
     JobStatus.STARTED, Phase.STARTED),
    ("most urgent of two", D,
     [_p("s-1", LaunchStatus.IN_PROGRESS), _p("s-2", LaunchStatus.PENDING)], JobStatus.STARTED,
     Phase.STARTED),
    ("recovery post-launch", R, [_p("s-1", LAUNCHED, (RUNNING, "a", None)),
                                _p("s-2", LAUNCHED, (RUNNING, "a", None))],
     JobStatus.COMPLETED, Phase.POST_LAUNCH),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "participants", "job_status", "phase"),
    [case[1:] for case in PHASE_CASES],
    ids=[case[0] for case in PHASE_CASES],
)
def test_decided_phase(mode, participants, job_status, phase):
    item = _item(
        _wave(
            _server("s-1", "drsjob-00000000000000001"), _server("s-2", "drsjob-00000000000000001")
        ),
        execution_type=mode.value,
    )
    decision = _decide(item, {"drsjob-00000000000000001": _job(job_status, *participants)})
    assert decision.final_status is None
    assert decision.phase is phase
    assert decision.updates["Phase"] == phase.value


def test_custom_intervals_pick_the_phase():
    """With PENDING polled fastest, a mix of PENDING and IN_PROGRESS is polled as PENDING."""
    item = _item(
        _wave(_server("s-1", "drsjob-00000000000000001")),
        _wave(_server("s-2", "drsjob-00000000000000002"), name="w2"),
    )
    jobs: dict[str, JobLookup] = {
        "drsjob-00000000000000001": _job(JobStatus.PENDING),
        "drsjob-00000000000000002": _job(
            JobStatus.STARTED, _p("s-2", LaunchStatus.IN_PROGRESS), job="drsjob-00000000000000002"
        ),
    }
    assert _decide(item, jobs).phase is Phase.IN_PROGRESS
    fast_pending = replace(POLICY, intervals=replace(POLICY.intervals, pending=5.0))
    assert _decide(item, jobs, policy=fast_pending).phase is Phase.PENDING


# --- jobs_to_poll / instances_to_describe --------------------------------------------------


def test_jobs_to_poll_groups_regions_and_skips_failed_servers():
    item = _item(
        _wave(
            _server("s-1", "drsjob-00000000000000001", Status="IN_PROGRESS"),
            _server("s-2", "drsjob-00000000000000001", Status="IN_PROGRESS"),
            _server("s-3", "drsjob-00000000000000003", Status="FAILED", Error="launch failed"),
            _server(
                "s-4", "drsjob-00000000000000004", Status="LAUNCHED", LaunchedTime=Decimal(1)
            ),  # kept
            _server("s-5", None, Status="FAILED", Error="could not start"),
        ),
        _wave(
            _server("s-6", "drsjob-00000000000000006"),
            _server(
                "s-7",
                "drsjob-00000000000000007",
                Status="IN_PROGRESS",
                Error="job completed unlaunched",
            ),
            name="wave-2",
            region=WEST,
        ),
        _wave(_server("s-8", None), name="wave-3", region="ap-south-1"),
    )
    assert jobs_to_poll(parse_execution(item)) == {
        Place(None, EAST): {"drsjob-00000000000000001", "drsjob-00000000000000004"},
        Place(None, WEST): {"drsjob-00000000000000006"},
    }


def test_jobs_to_poll_skips_recovery_post_launch_failure():
    item = _item(
        _wave(
            _server("s-1", "drsjob-00000000000000001", Status="LAUNCHED", LaunchedTime=Decimal(1),
                    PostLaunchActionsStatus="FAILED", Error="x"),
            _server("s-2", "drsjob-00000000000000002", Status="LAUNCHED", LaunchedTime=Decimal(1),
                    PostLaunchActionsStatus="IN_PROGRESS"),
        ),
        execution_type="RECOVERY",
    )  # fmt: skip
    assert jobs_to_poll(parse_execution(item)) == {Place(None, EAST): {"drsjob-00000000000000002"}}


def test_jobs_to_poll_nothing():
    assert jobs_to_poll(parse_execution(_item(_wave(_server("s-1", None))))) == {}


def test_instances_to_describe():
    item = _item(
        _wave(
            _server("s-1", "drsjob-00000000000000001"),  # launched, no details yet
            _server(
                "s-2", "drsjob-00000000000000001", InstanceId="i-2", RecoveryInstanceId="rec-2"
            ),  # known
            _server(
                "s-3", "drsjob-00000000000000001", InstanceId="i-3", RecoveryInstanceId="rec-old"
            ),  # replaced
            _server("s-4", "drsjob-00000000000000001"),  # still launching
            _server(
                "s-5", "drsjob-00000000000000001"
            ),  # launched, but DRS gives no recovery instance
            _server("s-6", "drsjob-0000000000missing"),  # not observed
            _server("s-7", "drsjob-0000000000000gone"),  # DRS does not know it
        ),
        _wave(_server("s-8", "drsjob-00000000000000008"), name="wave-2", region=WEST),
    )
    jobs: dict[str, JobLookup] = {
        "drsjob-00000000000000001": _job(
            JobStatus.STARTED,
            _p("s-1", LAUNCHED, instance="rec-1"),
            _p("s-2", LAUNCHED, instance="rec-2"),
            _p("s-3", LAUNCHED, instance="rec-3"),
            _p("s-4", LaunchStatus.IN_PROGRESS, instance="rec-4"),
            _p("s-5", LAUNCHED),
        ),
        "drsjob-0000000000000gone": JOB_NOT_FOUND,
        "drsjob-00000000000000008": _job(
            JobStatus.COMPLETED,
            _p("s-8", LAUNCHED, instance="rec-8"),
            job="drsjob-00000000000000008",
        ),
    }
    assert instances_to_describe(parse_execution(item), jobs) == {
        Place(None, EAST): {"rec-1", "rec-3"},
        Place(None, WEST): {"rec-8"},
    }
    assert instances_to_describe(parse_execution(item), {}) == {}


def test_the_policy_takes_its_defaults_from_the_settings():
    assert (
        Policy(
            intervals=Intervals(45.0, 15.0, 30.0, 30.0),
            post_launch_grace=600.0,
            launch_actions_wait=600.0,
            unknown_job_max_polls=8,
            history_limit=20,
            overdue_after=1800.0,
            max_execution_age=43200.0,
            heartbeat_interval=900.0,
            stall_bounds=StallBounds(1800.0, 1800.0, 1800.0, 1800.0),
        )
        == POLICY
    )


# --- an older observation than what is stored (a peer polled later and wrote first) ---


@pytest.mark.parametrize(
    ("stored", "observed", "execution_type"),
    [
        ("IN_PROGRESS", LaunchStatus.PENDING, "DRILL"),
        ("LAUNCHED", LaunchStatus.IN_PROGRESS, "RECOVERY"),  # actions still running
        ("LAUNCHED", LaunchStatus.PENDING, "RECOVERY"),
        ("TERMINATED", LaunchStatus.LAUNCHED, "RECOVERY"),
        ("FAILED", LaunchStatus.IN_PROGRESS, "DRILL"),
    ],
)
def test_an_observation_behind_the_stored_status_changes_nothing(stored, observed, execution_type):
    history = [{"status": stored, "timestamp": Decimal(f"{NOW - 10:.3f}")}]
    extra: dict[str, Any] = {"TransitionHistory": history}
    if stored in {"LAUNCHED", "TERMINATED"}:
        extra["LaunchedTime"] = Decimal(f"{NOW - 60:.3f}")
        extra["PostLaunchActionsStatus"] = "IN_PROGRESS"
    if stored == "FAILED":
        extra["Error"] = "DRS reported launchStatus FAILED"
    item = _item(_wave(_server(Status=stored, **extra)), execution_type=execution_type)
    decision = _decide(item, {JOB_1: _job(JobStatus.STARTED, _p("s-1", observed))})
    assert not decision.changes
    if decision.writes:  # at most bookkeeping: never the status or its history
        server = _servers(decision)[0]
        assert server["Status"] == stored
        assert server["TransitionHistory"] == history


@pytest.mark.parametrize(
    ("stored", "observed"),
    [
        ("PENDING", LaunchStatus.IN_PROGRESS),
        ("IN_PROGRESS", LaunchStatus.LAUNCHED),
        ("LAUNCHED", LaunchStatus.TERMINATED),  # a drill's clean-up is still recorded
        ("IN_PROGRESS", LaunchStatus.FAILED),
    ],
)
def test_an_observation_ahead_of_the_stored_status_is_recorded(stored, observed):
    item = _item(_wave(_server(Status=stored)), execution_type="RECOVERY")
    decision = _decide(item, {JOB_1: _job(JobStatus.STARTED, _p("s-1", observed))})
    assert _servers(decision)[0]["Status"] == observed.value
