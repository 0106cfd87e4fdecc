"""Issue 11's rules in decide (contract §2): optional action runs, the expected runs from
ListLaunchActions and their bounded wait, values outside the DRS model, and the
evidence that a TERMINATED server launched. Pure tables on hand-built items."""

from __future__ import annotations

import copy
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from drs_poller.clock import epoch
from drs_poller.core.completion import Outcome, server_outcome
from drs_poller.core.deciding import (
    NOT_RUN,
    POST_LAUNCH_ACTIONS_LIMIT,
    Decision,
    Policy,
    decide,
    launch_actions_to_list,
    terminations_to_check,
    unknown_values,
)
from drs_poller.core.models import (
    ActionRun,
    ExecutionType,
    JobLookup,
    JobStatus,
    JobView,
    LaunchAction,
    LaunchActionsLookup,
    LaunchActionsUnavailable,
    LaunchStatus,
    Participant,
    RunStatus,
    Unknown,
    parse_execution,
)
from drs_poller.core.phases import Phase
from drs_poller.core.places import Place
from drs_poller.settings import load_settings, policy_from

START = 1_800_000_000.0
NOW = START + 2_000.0
EAST = "us-east-1"
JOB = "drsjob-00000000000000001"
POLICY = replace(
    policy_from(load_settings(table_name="executions")),
    launch_actions_wait=600.0,
    post_launch_grace=600.0,
)
LAUNCHED, TERMINATED = LaunchStatus.LAUNCHED, LaunchStatus.TERMINATED
OK, BAD, RUNNING = RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.IN_PROGRESS
A1, A2, A3 = (f"00000000-0000-4000-8000-00000000000{n}" for n in (1, 2, 3))


def _server(source: str = "s-1", **attributes: Any) -> dict[str, Any]:
    server: dict[str, Any] = {
        "SourceServerId": source,
        "RecoveryJobId": JOB,
        "IsDrill": False,
        "Status": "IN_PROGRESS",
        "LaunchTime": Decimal(f"{START:.3f}"),
    }
    server.update(attributes)
    return server


def _launched(source: str = "s-1", *, ago: float = 60.0, **attributes: Any) -> dict[str, Any]:
    return _server(
        source, Status="LAUNCHED", LaunchedTime=Decimal(f"{NOW - ago:.3f}"), **attributes
    )


def _item(*servers: dict[str, Any], mode: str = "RECOVERY") -> dict[str, Any]:
    return {
        "ExecutionId": "ex-1",
        "PlanId": "plan-1",
        "Status": "POLLING",
        "ExecutionType": mode,
        "StartTime": Decimal(f"{START:.3f}"),
        "Waves": [
            {
                "WaveName": "wave-1",
                "Region": EAST,
                "Status": "IN_PROGRESS",
                "Servers": list(servers),
            }
        ],
    }


def _run(
    status: RunStatus | Unknown,
    action_id: str | None = A1,
    *,
    optional: bool = False,
    name: str | None = None,
    reason: str | None = None,
) -> ActionRun:
    return ActionRun(
        status=status,
        name=name or f"action-{action_id}",
        failure_reason=reason,
        action_id=action_id,
        run_id=f"run-{action_id}",
        optional=optional,
    )


def _p(
    source: str = "s-1",
    launch: LaunchStatus | Unknown | None = LAUNCHED,
    *runs: ActionRun,
    instance: str | None = None,
) -> Participant:
    return Participant(source, launch, instance, tuple(runs))


def _job(*participants: Participant, status: JobStatus = JobStatus.COMPLETED, **extra: Any):
    return JobView(
        job_id=JOB, status=status, servers={p.source_server_id: p for p in participants}, **extra
    )


def _action(action_id: str, *, optional: bool = False, active: bool = True) -> LaunchAction:
    return LaunchAction(
        action_id=action_id, name=f"action-{action_id}", optional=optional, active=active
    )


def _decide(
    item: dict[str, Any],
    job: JobLookup,
    *,
    now: float = NOW,
    actions: dict[str, LaunchActionsLookup] | None = None,
    terminated: dict[str, str] | None = None,
    policy: Policy = POLICY,
) -> Decision:
    before = copy.deepcopy(item)
    decision = decide(
        parse_execution(item),
        jobs={JOB: job},
        instances={},
        now=now,
        policy=policy,
        launch_actions=None
        if actions is None
        else {(Place(None, EAST), sid): found for sid, found in actions.items()},
        terminated_instances=None
        if terminated is None
        else {(JOB, sid): found for sid, found in terminated.items()},
    )
    assert item == before
    return decision


def _servers(decision: Decision) -> list[dict[str, Any]]:
    return decision.updates["Waves"][0]["Servers"]


def _outcome(decision: Decision, index: int = 0, mode: str = "RECOVERY") -> Outcome:
    execution = parse_execution({**_item(), "Waves": decision.updates["Waves"]})
    return server_outcome(execution.waves[0].servers[index], ExecutionType(mode))


# --- optional actions ------------------------------------------------------------------

OPTIONAL_TABLE = [
    ("only run optional, failed", (_run(BAD, optional=True, reason="boom"),), "COMPLETED", False),
    (
        "required ok, optional failed",
        (_run(OK, A1), _run(BAD, A2, optional=True)),
        "COMPLETED",
        False,
    ),
    ("required failed", (_run(BAD, A1), _run(OK, A2, optional=True)), "FAILED", True),
    (
        "optional still running",
        (_run(OK, A1), _run(RUNNING, A2, optional=True)),
        "IN_PROGRESS",
        False,
    ),
    (
        "required still running",
        (_run(RUNNING, A1), _run(BAD, A2, optional=True)),
        "IN_PROGRESS",
        False,
    ),
    ("all required succeeded", (_run(OK, A1), _run(OK, A2)), "COMPLETED", False),
]


@pytest.mark.parametrize(
    ("runs", "post_launch", "failed"),
    [case[1:] for case in OPTIONAL_TABLE],
    ids=[case[0] for case in OPTIONAL_TABLE],
)
def test_optional_runs_never_fail_their_server(runs, post_launch, failed):
    decision = _decide(_item(_launched()), _job(_p("s-1", LAUNCHED, *runs)))
    (server,) = _servers(decision)
    assert server["PostLaunchActionsStatus"] == post_launch
    assert ("Error" in server) is failed
    final = {"COMPLETED": "COMPLETED", "FAILED": "FAILED"}.get(post_launch)
    assert decision.final_status == final


def test_a_failed_optional_run_shows_in_post_launch_actions():
    runs = (_run(OK, A1, name="Validate"), _run(BAD, A2, optional=True, name="Warm", reason="x"))
    decision = _decide(_item(_launched()), _job(_p("s-1", LAUNCHED, *runs)))
    (server,) = _servers(decision)
    assert server["PostLaunchActions"] == [
        {
            "Name": "Warm",
            "ActionId": A2,
            "RunId": f"run-{A2}",
            "Status": "FAILED",
            "Optional": True,
            "FailureReason": "x",
        },
        # A run that succeeded is kept without its ids (nobody needs to look it up).
        {"Name": "Validate", "Status": "SUCCEEDED", "Optional": False},
    ]
    assert decision.final_status == "COMPLETED"


def test_post_launch_actions_is_bounded_and_keeps_failures():
    runs = [_run(OK, f"{n:08d}-0000-4000-8000-000000000000") for n in range(40)]
    runs.append(_run(BAD, A3, optional=True))
    decision = _decide(_item(_launched()), _job(_p("s-1", LAUNCHED, *runs)))
    (server,) = _servers(decision)
    assert len(server["PostLaunchActions"]) <= POST_LAUNCH_ACTIONS_LIMIT
    assert server["PostLaunchActions"][0]["Status"] == "FAILED"
    assert server["PostLaunchActionsOmitted"] == 41 - len(server["PostLaunchActions"])


# --- expected actions (ListLaunchActions) ------------------------------------------------

THREE = (_action(A1), _action(A2), _action(A3))


def test_first_of_three_expected_runs_succeeding_does_not_finalize():
    decision = _decide(
        _item(_launched()), _job(_p("s-1", LAUNCHED, _run(OK, A1))), actions={"s-1": THREE}
    )
    (server,) = _servers(decision)
    assert server["PostLaunchActionsStatus"] == "IN_PROGRESS"
    assert server["PostLaunchActionsWaitSince"] == epoch(NOW)
    assert decision.final_status is None
    assert decision.phase is Phase.POST_LAUNCH


def test_the_wait_counts_from_the_stored_first_poll_and_a_missing_required_action_fails():
    stored = _launched(PostLaunchActionsWaitSince=Decimal(f"{NOW - 599:.3f}"))
    job = _job(_p("s-1", LAUNCHED, _run(OK, A1)))
    waiting = _decide(_item(stored), job, actions={"s-1": THREE})
    assert _servers(waiting)[0]["PostLaunchActionsStatus"] == "IN_PROGRESS"

    ended = _decide(_item(stored), job, actions={"s-1": THREE}, now=NOW + 1)
    (server,) = _servers(ended)
    assert server["PostLaunchActionsStatus"] == "FAILED"
    assert f"action-{A2}" in server["Error"]
    assert "600 s" in server["Error"]
    assert "never ran" in server["PostLaunchActionsShortfall"]
    assert [e["Status"] for e in server["PostLaunchActions"]].count(NOT_RUN) == 2
    assert ended.final_status == "FAILED"


def test_a_missing_optional_action_is_recorded_and_does_not_fail():
    actions = (_action(A1), _action(A2, optional=True))
    stored = _launched(PostLaunchActionsWaitSince=Decimal(f"{NOW - 600:.3f}"))
    decision = _decide(
        _item(stored), _job(_p("s-1", LAUNCHED, _run(OK, A1))), actions={"s-1": actions}
    )
    (server,) = _servers(decision)
    assert server["PostLaunchActionsStatus"] == "COMPLETED"
    assert "Error" not in server
    assert {"Name": f"action-{A2}", "ActionId": A2, "Status": NOT_RUN, "Optional": True} in server[
        "PostLaunchActions"
    ]
    assert "PostLaunchActionsShortfall" in server
    assert decision.final_status == "COMPLETED"


def test_runs_listed_one_at_a_time_then_all():
    runs = (_run(OK, A1), _run(OK, A2), _run(OK, A3))
    stored = _launched(PostLaunchActionsWaitSince=Decimal(f"{NOW - 30:.3f}"))
    decision = _decide(_item(stored), _job(_p("s-1", LAUNCHED, *runs)), actions={"s-1": THREE})
    assert _servers(decision)[0]["PostLaunchActionsStatus"] == "COMPLETED"
    assert "PostLaunchActionsWaitSince" not in _servers(decision)[0]  # nothing waits now
    assert decision.final_status == "COMPLETED"


def test_a_run_in_progress_clears_the_wait():
    stored = _launched(PostLaunchActionsWaitSince=Decimal(f"{NOW - 30:.3f}"))
    job = _job(_p("s-1", LAUNCHED, _run(OK, A1), _run(RUNNING, A2)))
    (server,) = _servers(_decide(_item(stored), job, actions={"s-1": THREE}))
    assert "PostLaunchActionsWaitSince" not in server
    assert server["PostLaunchActionsStatus"] == "IN_PROGRESS"


def test_inactive_actions_are_not_expected():
    actions = (_action(A1), _action(A2, active=False))
    decision = _decide(
        _item(_launched()), _job(_p("s-1", LAUNCHED, _run(OK, A1))), actions={"s-1": actions}
    )
    assert decision.final_status == "COMPLETED"


def test_not_answered_yet_means_not_finished():
    decision = _decide(_item(_launched()), _job(_p("s-1", LAUNCHED, _run(OK, A1))), actions={})
    assert _servers(decision)[0]["PostLaunchActionsStatus"] == "IN_PROGRESS"
    assert decision.final_status is None


def test_unavailable_falls_back_to_the_listed_runs():
    unavailable = LaunchActionsUnavailable("AccessDeniedException")
    decision = _decide(
        _item(_launched()), _job(_p("s-1", LAUNCHED, _run(OK, A1))), actions={"s-1": unavailable}
    )
    (server,) = _servers(decision)
    assert server["PostLaunchActionsStatus"] == "COMPLETED"
    assert "AccessDenied" in server["PostLaunchActionsExpected"]
    assert decision.final_status == "COMPLETED"


def test_no_runs_listed_with_expected_actions_waits_then_fails():
    stored = _launched(ago=5_000, PostLaunchActionsWaitSince=Decimal(f"{NOW - 600:.3f}"))
    decision = _decide(_item(stored), _job(_p("s-1", LAUNCHED)), actions={"s-1": THREE})
    (server,) = _servers(decision)
    assert server["PostLaunchActionsStatus"] == "FAILED"
    assert decision.final_status == "FAILED"


def test_no_runs_and_no_expected_actions_is_not_configured_after_the_grace():
    stored = _launched(ago=601)
    decision = _decide(_item(stored), _job(_p("s-1", LAUNCHED)), actions={"s-1": ()})
    assert _servers(decision)[0]["PostLaunchActionsStatus"] == "NOT_CONFIGURED"
    assert decision.final_status == "COMPLETED"


def test_launch_actions_are_listed_for_launched_recovery_servers_only():
    item = _item(_launched("s-1"), _server("s-2"), _server("s-3", RecoveryJobId=None))
    job = _job(_p("s-1", LAUNCHED), _p("s-2", LaunchStatus.IN_PROGRESS), status=JobStatus.STARTED)
    assert launch_actions_to_list(parse_execution(item), {JOB: job}) == {(Place(None, EAST), "s-1")}
    drill = _item(_launched("s-1"), mode="DRILL")
    assert launch_actions_to_list(parse_execution(drill), {JOB: job}) == set()


# --- values outside the model ------------------------------------------------------------


def test_an_unknown_launch_status_keeps_polling_and_its_job_mates_are_judged():
    job = _job(
        _p("s-1", Unknown("launchStatus", "BOOTING")),
        _p("s-2", LaunchStatus.FAILED),
        status=JobStatus.COMPLETED,
    )
    decision = _decide(_item(_server("s-1"), _server("s-2"), mode="DRILL"), job)
    first, second = _servers(decision)
    assert first["Status"] == "IN_PROGRESS"  # the stored status; the unknown one is not written
    assert "Error" not in first
    assert "Error" in second  # its job-mate is judged as usual
    assert decision.final_status is None
    assert decision.phase is Phase.IN_PROGRESS


def test_an_unknown_run_status_keeps_a_recovery_in_post_launch():
    job = _job(_p("s-1", LAUNCHED, _run(OK, A1), _run(Unknown("runs.status", "SKIPPED"), A2)))
    decision = _decide(_item(_launched()), job)
    assert _servers(decision)[0]["PostLaunchActionsStatus"] == "IN_PROGRESS"
    assert _servers(decision)[0]["PostLaunchActions"][0]["Status"] == "SKIPPED"
    assert decision.final_status is None
    assert decision.phase is Phase.POST_LAUNCH


def test_a_drill_completes_despite_an_unknown_run_status():
    job = _job(_p("s-1", LAUNCHED, _run(Unknown("runs.status", "SKIPPED"), A1)))
    decision = _decide(_item(_server("s-1"), mode="DRILL"), job)
    assert decision.final_status == "COMPLETED"
    assert unknown_values(parse_execution(_item(_server(), mode="DRILL")), {JOB: job}) == set()


def test_an_unknown_job_status_counts_as_started():
    job = _job(
        _p("s-1", LaunchStatus.PENDING),
        status=JobStatus.STARTED,
        unknown_status=Unknown("status", "QUEUED"),
    )
    execution = parse_execution(_item(_server("s-1", Status="PENDING"), mode="DRILL"))
    decision = _decide(_item(_server("s-1", Status="PENDING"), mode="DRILL"), job)
    assert decision.phase is Phase.STARTED
    assert decision.final_status is None
    assert unknown_values(execution, {JOB: job}) == {Unknown("status", "QUEUED")}


def test_the_maximum_age_names_the_unknown_value():
    policy = replace(POLICY, max_execution_age=1_000.0)
    job = _job(_p("s-1", Unknown("launchStatus", "BOOTING")))
    decision = _decide(_item(_server("s-1"), mode="DRILL"), job, policy=policy)
    assert decision.final_status == "FAILED"
    assert "launchStatus 'BOOTING'" in _servers(decision)[0]["Error"]
    assert "launchStatus 'BOOTING'" in decision.updates["ErrorMessage"]


def test_a_server_missing_from_a_job_with_broken_entries_is_not_judged():
    job = _job(status=JobStatus.COMPLETED, broken_entries=1)
    decision = _decide(_item(_server("s-1"), mode="DRILL"), job)
    assert "Error" not in _servers(decision)[0]
    assert decision.final_status is None


# --- TERMINATED before the daemon saw LAUNCHED ---------------------------------------------


def test_terminated_with_the_jobs_recovery_instance_id_is_a_launched_drill():
    job = _job(_p("s-1", TERMINATED, instance="i-0123456789abcdef0"))
    decision = _decide(_item(_server("s-1"), mode="DRILL"), job, terminated={})
    (server,) = _servers(decision)
    assert server["Status"] == "TERMINATED"
    assert server["TerminatedAfterLaunch"] is True
    assert "i-0123456789abcdef0" in server["LaunchEvidence"]
    assert "LaunchedTime" in server
    assert decision.final_status == "COMPLETED"


def test_terminated_with_a_recovery_instance_of_this_job_is_a_launched_drill():
    job = _job(_p("s-1", TERMINATED))
    decision = _decide(
        _item(_server("s-1"), mode="DRILL"), job, terminated={"s-1": "i-0123456789abcdef0"}
    )
    assert "DescribeRecoveryInstances" in _servers(decision)[0]["LaunchEvidence"]
    assert decision.final_status == "COMPLETED"


def test_terminated_without_evidence_fails_and_says_what_was_checked():
    job = _job(_p("s-1", TERMINATED))
    decision = _decide(_item(_server("s-1"), mode="DRILL"), job, terminated={"s-1": ""})
    error = _servers(decision)[0]["Error"]
    assert "TERMINATED before the server launched" in error
    assert "recoveryInstanceID" in error
    assert "DescribeRecoveryInstances" in error
    assert decision.final_status == "FAILED"


def test_terminated_not_checked_yet_waits():
    job = _job(_p("s-1", TERMINATED))
    decision = _decide(_item(_server("s-1"), mode="DRILL"), job, terminated={})
    assert "Error" not in _servers(decision)[0]
    assert decision.final_status is None
    assert terminations_to_check(
        parse_execution(_item(_server("s-1"), mode="DRILL")), {JOB: job}
    ) == {Place(None, EAST): {(JOB, "s-1")}}


def test_a_recovery_terminated_before_its_actions_ended_fails():
    job = _job(_p("s-1", TERMINATED, _run(RUNNING, A1)))
    decision = _decide(_item(_launched()), job, actions={"s-1": (_action(A1),)})
    (server,) = _servers(decision)
    assert server["PostLaunchActionsStatus"] == "FAILED"
    assert "TERMINATED before its post-launch actions ended" in server["Error"]


def test_a_recovery_terminated_after_its_actions_succeeded_completes():
    job = _job(_p("s-1", TERMINATED, _run(OK, A1), instance="i-0123456789abcdef0"))
    decision = _decide(_item(_server("s-1")), job, actions={"s-1": (_action(A1),)}, terminated={})
    assert decision.final_status == "COMPLETED"


def test_a_drill_that_succeeded_stays_succeeded_when_terminated():
    stored = _launched(IsDrill=True)
    decision = _decide(
        _item(stored, mode="DRILL"), _job(_p("s-1", TERMINATED)), terminated={"s-1": ""}
    )
    assert decision.final_status == "COMPLETED"
    assert _outcome(decision, mode="DRILL") is Outcome.SUCCEEDED
