"""Issue 11's simulator fidelity, over HTTP and checked against botocore's DRS model:
ListLaunchActions, optional actions, runs listed one at a time, values outside the model
only when flagged deliberate, DescribeJobs order, DescribeSourceServers filters, and
Retry-After on simulate's throttles."""

from __future__ import annotations

import pytest

from drs_poller.clock import ManualClock
from drs_poller.simulator.behaviour import Scenario, Simulation, SourceServer
from drs_poller.simulator.conformance import error_violations, output_violations
from drs_poller.simulator.scenario_file import ScenarioFileError, parse_scenario
from drs_poller.simulator.service import DrsSimulator, vmware_uuid
from drs_poller.simulator.standalone import SimulatorOptions, build_simulator
from drs_poller.simulator.timelines import (
    DEFAULT_ACCOUNT_ID,
    JobScript,
    LaunchActionScript,
    RunSnapshot,
    ServerPlan,
    ServerScript,
    ServerSnapshot,
    Snapshot,
    action_id,
    deliberate_paths,
    planned_timeline,
)

SOURCE = "s-aaaaaaaaaaaaaaaaa"
OTHER = "s-bbbbbbbbbbbbbbbbb"
JOB = "drsjob-AAAAAAAAAAAAAAAAA"
START = 1_800_000_000.0


# --- ListLaunchActions ---------------------------------------------------------------------


async def test_list_launch_actions_conforms_and_matches_the_runs(raw_post, simulator):
    simulator.set_launch_actions(
        SOURCE,
        [
            LaunchActionScript("Validate"),
            LaunchActionScript("Warm cache", optional=True),
            LaunchActionScript("Old check", active=False),
        ],
    )
    response = await raw_post("ListLaunchActions", {"resourceId": SOURCE})
    assert response.status == 200
    assert output_violations("ListLaunchActions", response.body) == []
    items = response.body["items"]
    assert [(i["name"], i["optional"], i["active"]) for i in items] == [
        ("Validate", False, True),
        ("Warm cache", True, True),
        ("Old check", False, False),
    ]
    # A job's run of an action carries the same actionId.
    assert items[0]["actionId"] == action_id("us-east-1", "Validate")
    assert [i["order"] for i in items] == [2, 3, 4]


async def test_list_launch_actions_pages_and_filters(raw_post, simulator):
    simulator.page_size = 1
    simulator.set_launch_actions(SOURCE, [LaunchActionScript("A"), LaunchActionScript("B")])
    first = await raw_post("ListLaunchActions", {"resourceId": SOURCE})
    assert len(first.body["items"]) == 1
    second = await raw_post(
        "ListLaunchActions", {"resourceId": SOURCE, "nextToken": first.body["nextToken"]}
    )
    assert [i["name"] for i in second.body["items"]] == ["B"]
    wanted = action_id("us-east-1", "B")
    filtered = await raw_post(
        "ListLaunchActions", {"resourceId": SOURCE, "filters": {"actionIds": [wanted]}}
    )
    assert [i["actionId"] for i in filtered.body["items"]] == [wanted]


async def test_list_launch_actions_errors(raw_post, simulator):
    unknown = await raw_post("ListLaunchActions", {"resourceId": OTHER})
    assert unknown.status == 404
    assert unknown.body["resourceId"] == OTHER
    template = await raw_post("ListLaunchActions", {"resourceId": "lct-aaaaaaaaaaaaaaaaa"})
    assert template.body["items"] == []
    simulator.set_launch_actions(SOURCE, [])
    simulator.launch_actions_denied = True
    denied = await raw_post("ListLaunchActions", {"resourceId": SOURCE})
    assert denied.status == 403


async def test_get_launch_configuration_conforms_and_says_if_actions_run(raw_post, simulator):
    simulator.set_launch_actions(SOURCE, [LaunchActionScript("Validate")])
    enabled = await raw_post("GetLaunchConfiguration", {"sourceServerID": SOURCE})
    assert enabled.status == 200
    assert output_violations("GetLaunchConfiguration", enabled.body) == []
    assert enabled.body["postLaunchEnabled"] is True
    simulator.set_post_launch_enabled(SOURCE, enabled=False)
    disabled = await raw_post("GetLaunchConfiguration", {"sourceServerID": SOURCE})
    assert disabled.body["postLaunchEnabled"] is False
    unknown = await raw_post("GetLaunchConfiguration", {"sourceServerID": OTHER})
    assert unknown.status == 404
    assert error_violations("ResourceNotFoundException", unknown.body) == []


def test_the_inventory_lists_default_actions_and_none_for_no_actions():
    simulation = Simulation(
        scenario=parse_scenario(
            {
                "sourceServers": [
                    {"sourceServerID": SOURCE},
                    {"sourceServerID": OTHER, "behaviour": "no-actions"},
                ]
            }
        )
    )
    assert [a.name for a in simulation.launch_actions("us-east-1", SOURCE) or ()] == [
        "Validate recovery"
    ]
    assert simulation.launch_actions("us-east-1", OTHER) == ()
    assert simulation.launch_actions("us-east-1", "s-ccccccccccccccccc") is None


# --- optional actions and runs listed one at a time in simulated jobs ----------------------


def test_runs_listed_one_at_a_time_with_an_optional_action():
    plan = ServerPlan(
        "launched",
        launching=10,
        actions=30,
        action_names=("A", "B", "C"),
        optional_actions=frozenset({"B"}),
        runs_one_at_a_time=True,
    )
    timeline = planned_timeline({SOURCE: plan}, pending=5, started=5)
    listed = [
        [(run.name, run.status, run.optional) for run in s.server(SOURCE).runs or ()]
        for s in timeline
    ]
    launch = 20.0
    at = {snapshot.at: runs for snapshot, runs in zip(timeline, listed, strict=True)}
    assert at[launch] == [("A", "IN_PROGRESS", False)]
    assert at[launch + 10] == [("A", "SUCCEEDED", False), ("B", "IN_PROGRESS", True)]
    assert at[launch + 20][-1] == ("C", "IN_PROGRESS", False)
    assert at[launch + 30] == [
        ("A", "SUCCEEDED", False),
        ("B", "SUCCEEDED", True),
        ("C", "SUCCEEDED", False),
    ]


async def test_a_scenario_server_runs_its_own_actions(clock):
    scenario = parse_scenario(
        {
            "durations": {"pending": 10, "started": 10, "launching": 10, "postLaunchActions": 20},
            "sourceServers": [
                {
                    "sourceServerID": SOURCE,
                    "launchActions": [
                        {"name": "Validate"},
                        {"name": "Warm cache", "optional": True},
                        {"name": "Off", "active": False},
                    ],
                    "runsOneAtATime": True,
                }
            ],
        }
    )
    simulator = DrsSimulator(clock=clock, simulation=Simulation(scenario=scenario))
    job = simulator.simulation.timeline(
        "us-east-1",
        simulator.simulation.behaviours("us-east-1", [SOURCE], profile=None),
        is_drill=False,
        profile=None,
    )
    runs_at_launch = next(s for s in job if s.server(SOURCE).launch_status == "LAUNCHED")
    assert [r.name for r in runs_at_launch.server(SOURCE).runs or ()] == ["Validate"]
    final = job[-1].server(SOURCE).runs or ()
    assert [(r.name, r.optional) for r in final] == [("Validate", False), ("Warm cache", True)]


# --- values outside the model ----------------------------------------------------------------


def _script(*snapshots: Snapshot) -> JobScript:
    return JobScript(
        job_id=JOB,
        region="us-east-1",
        is_drill=False,
        created_at=START,
        servers=(ServerScript(SOURCE), ServerScript(OTHER)),
        timeline=snapshots,
    )


def test_a_value_outside_the_model_must_be_flagged_deliberate():
    with pytest.raises(ValueError, match="deliberately_outside_model"):
        _script(Snapshot(0, "STARTED", {SOURCE: ServerSnapshot("BOOTING")}))
    with pytest.raises(ValueError, match="run status 'SKIPPED'"):
        _script(
            Snapshot(
                0, "STARTED", {SOURCE: ServerSnapshot("LAUNCHED", (RunSnapshot("SKIPPED", "A"),))}
            )
        )
    with pytest.raises(ValueError, match="job status 'QUEUED'"):
        _script(Snapshot(0, "QUEUED"))


async def test_the_checker_accepts_exactly_the_deliberate_values(raw_post, simulator, clock):
    script = _script(
        Snapshot(
            0,
            "QUEUED",
            {
                SOURCE: ServerSnapshot("BOOTING", deliberately_outside_model=True),
                OTHER: ServerSnapshot(
                    "LAUNCHED",
                    (RunSnapshot("SKIPPED", "A", deliberately_outside_model=True),),
                ),
            },
            deliberately_outside_model=True,
        )
    )
    simulator.add_job(script)
    response = await raw_post("DescribeJobs", {})
    body = response.body
    deliberate = deliberate_paths(script, clock.time(), prefix="$.items[0]")
    assert deliberate == {
        "$.items[0].status",
        "$.items[0].participatingServers[0].launchStatus",
        "$.items[0].participatingServers[1].launchActionsStatus.runs[0].status",
    }
    assert output_violations("DescribeJobs", body, deliberate=deliberate) == []
    # Without the flag the same body is caught, and any other violation still is.
    assert len(output_violations("DescribeJobs", body)) == 3
    body["items"][0]["participatingServers"][1]["launchStatus"] = "NOPE"
    problems = output_violations("DescribeJobs", body, deliberate=deliberate)
    assert [p.path for p in problems] == ["$.items[0].participatingServers[1].launchStatus"]


def test_the_scenario_file_injects_outside_values_only_on_purpose():
    server = {"sourceServerID": SOURCE, "outsideModel": {"field": "launchStatus", "value": "X"}}
    with pytest.raises(ScenarioFileError, match="deliberatelyOutsideModel"):
        parse_scenario({"sourceServers": [server]})
    server["outsideModel"] = {
        "field": "launchStatus",
        "value": "LAUNCHED",
        "deliberatelyOutsideModel": True,
    }
    with pytest.raises(ScenarioFileError, match="is in the DRS model"):
        parse_scenario({"sourceServers": [server]})
    server["outsideModel"]["value"] = "BOOTING"
    (parsed,) = parse_scenario({"sourceServers": [server]}).source_servers
    assert parsed.outside_model == ("launchStatus", "BOOTING")
    plan = ServerPlan(launching=10, outside_model=parsed.outside_model)
    timeline = planned_timeline({SOURCE: plan}, pending=5, started=5)
    converting = next(s for s in timeline if s.at == 10)
    assert converting.server(SOURCE).launch_status == "BOOTING"
    assert converting.server(SOURCE).deliberately_outside_model


@pytest.mark.parametrize(
    ("server", "complaint"),
    [
        ({"launchActions": {}}, "expected a list"),
        ({"launchActions": [{"optional": True}]}, "name: required"),
        ({"launchActions": [{"name": "A"}, {"name": "A"}]}, "appears twice"),
        ({"launchActions": [{"name": "A", "optional": "yes"}]}, "true or false"),
        ({"launchActions": [{"name": "-bad"}]}, "not a launch action name"),
        ({"runsOneAtATime": 1}, "true or false"),
        (
            {"outsideModel": {"field": "status", "value": "X", "deliberatelyOutsideModel": True}},
            "not launchStatus or runs.status",
        ),
    ],
)
def test_scenario_file_rejects_bad_new_fields(server, complaint):
    with pytest.raises(ScenarioFileError, match=complaint):
        parse_scenario({"sourceServers": [{"sourceServerID": SOURCE, **server}]})


# --- DescribeJobs order, DescribeSourceServers filters, Retry-After ----------------------------


async def test_describe_jobs_lists_the_latest_creation_first(
    raw_post, simulator, job_factory, clock
):
    for offset in (0, 30, 10):
        simulator.add_job(job_factory(created_at=START + offset))
    clock.advance(60)
    items = (await raw_post("DescribeJobs", {})).body["items"]
    created = [item["creationDateTime"] for item in items]
    assert created == sorted(created, reverse=True)
    assert len(created) == 3


async def test_describe_source_servers_applies_hardware_and_staging_filters(clock):
    scenario = Scenario(source_servers=(SourceServer(SOURCE, "a"), SourceServer(OTHER, "b")))
    simulator = DrsSimulator(clock=clock, simulation=Simulation(scenario=scenario))
    by_hardware = simulator.describe_source_servers(
        "us-east-1", {"filters": {"hardwareId": vmware_uuid(OTHER)}}
    )
    assert [i["sourceServerID"] for i in by_hardware["items"]] == [OTHER]
    assert output_violations("DescribeSourceServers", by_hardware) == []
    staged = simulator.describe_source_servers(
        "us-east-1", {"filters": {"stagingAccountIDs": [DEFAULT_ACCOUNT_ID]}}
    )
    assert len(staged["items"]) == 2
    elsewhere = simulator.describe_source_servers(
        "us-east-1", {"filters": {"stagingAccountIDs": ["999999999999"]}}
    )
    assert elsewhere["items"] == []


def test_simulate_throttles_with_retry_after():
    simulator = build_simulator(SimulatorOptions(throttle_rate=1.0), clock=ManualClock(start=START))
    fault = simulator.faults.draw("DescribeJobs")
    assert fault is not None
    assert fault.code == "ThrottlingException"
    assert fault.headers["Retry-After"] == "1"
