"""Scenario files (good and bad), and the pure behaviour rules they feed."""

from __future__ import annotations

import json

import pytest

from drs_poller.simulator.behaviour import (
    Behaviour,
    DurationOverrides,
    Durations,
    JobProfile,
    Simulation,
    server_succeeds,
)
from drs_poller.simulator.scenario_file import ScenarioFileError, load_scenario, parse_scenario
from drs_poller.simulator.timelines import ServerPlan, planned_timeline

SID = "s-0123456789abcdefg"
OTHER = "s-abcdefghij0123456"

GOOD = {
    "durations": {"pending": 600, "postLaunchActions": 300},
    "sourceServers": [
        {
            "sourceServerID": SID,
            "hostname": "db-1",
            "region": "us-east-1",
            "behaviour": "launch-fails",
            "durations": {"launching": 120},
            "tags": {"app": "billing"},
        },
        {"sourceServerID": OTHER},
    ],
    "jobProfiles": {"slow": {"behaviour": "conversion-stalls", "durations": {"pending": 1800}}},
}


def test_a_good_file_parses(tmp_path):
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(GOOD))
    scenario = load_scenario(path)
    assert scenario.durations == Durations(pending=600, post_launch_actions=300)
    first, second = scenario.source_servers
    assert (first.behaviour, first.region, first.hostname) == (
        Behaviour.LAUNCH_FAILS,
        "us-east-1",
        "db-1",
    )
    assert first.durations == DurationOverrides(launching=120)
    assert first.visible_tags() == {"app": "billing", "drs-sim:behaviour": "launch-fails"}
    assert (second.behaviour, second.region, second.hostname) == (None, None, OTHER)
    assert scenario.profiles == {
        "slow": JobProfile("slow", Behaviour.CONVERSION_STALLS, DurationOverrides(pending=1800))
    }
    assert parse_scenario({}).source_servers == ()


def bad(path: list[str | int], value: object) -> dict:
    data = json.loads(json.dumps(GOOD))
    target = data
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (bad(["surprise"], 1), "$.surprise: unknown field"),
        (bad(["durations", "pending"], -1), "$.durations.pending: expected seconds"),
        (bad(["durations", "pending"], "10"), "$.durations.pending: expected seconds"),
        (bad(["durations", "launch"], 10), "$.durations.launch: unknown field"),
        (bad(["sourceServers"], {}), "$.sourceServers: expected a list"),
        (bad(["sourceServers", 0, "sourceServerID"], "s-1"), "$.sourceServers[0].sourceServerID"),
        (
            bad(["sourceServers", 1, "sourceServerID"], KeyError),
            "$.sourceServers[1].sourceServerID: required",
        ),
        (
            bad(["sourceServers", 0, "behaviour"], "explodes"),
            "$.sourceServers[0].behaviour: 'explodes'",
        ),
        (bad(["sourceServers", 0, "region"], "mars"), "$.sourceServers[0].region"),
        (
            bad(["sourceServers", 0, "durations", "pending"], 5),
            "$.sourceServers[0].durations.pending: unknown field",
        ),
        (
            bad(["sourceServers", 0, "tags", "drs-sim:behaviour"], "x"),
            "$.sourceServers[0].tags.drs-sim:behaviour",
        ),
        (bad(["sourceServers", 1, "sourceServerID"], SID) | {}, None),
        (bad(["jobProfiles", "slow", "behaviour"], 3), "$.jobProfiles.slow.behaviour"),
        (bad(["jobProfiles"], []), "$.jobProfiles: expected an object"),
        ([], "$: expected an object"),
    ],
)
def test_a_bad_file_names_the_field(data, field):
    if field is None:  # the same id twice (both with region unset after the edit below)
        data["sourceServers"][0].pop("region")
        field = "$.sourceServers[1].sourceServerID: s-0123456789abcdefg appears twice"
    with pytest.raises(ScenarioFileError) as caught:
        parse_scenario(data)
    assert str(caught.value).startswith(field), str(caught.value)


def test_unreadable_and_non_json_files(tmp_path):
    with pytest.raises(ScenarioFileError, match="cannot read"):
        load_scenario(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"durations": ')
    with pytest.raises(ScenarioFileError, match="not JSON \\(line 1"):
        load_scenario(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(bad(["durations", "started"], None)))
    with pytest.raises(ScenarioFileError, match=r"wrong.json: \$.durations.started"):
        load_scenario(wrong)


@pytest.mark.parametrize(
    ("behaviour", "is_drill", "succeeds"),
    [
        (None, True, True),
        (Behaviour.LAUNCHES, False, True),
        (Behaviour.LAUNCH_FAILS, True, False),
        (Behaviour.ACTION_FAILS, True, True),  # a drill ignores actions
        (Behaviour.ACTION_FAILS, False, False),
        (Behaviour.NO_ACTIONS, False, True),
        (Behaviour.CONVERSION_STALLS, True, None),
    ],
)
def test_server_succeeds(behaviour, is_drill, succeeds):
    assert server_succeeds(behaviour, is_drill=is_drill) is succeeds


def test_durations_come_from_profile_then_server_then_file():
    scenario = parse_scenario(GOOD)
    simulation = Simulation(speed=10, scenario=scenario)
    behaviours = {SID: Behaviour.LAUNCHES, OTHER: Behaviour.LAUNCHES}
    timeline = simulation.timeline("us-east-1", behaviours, is_drill=False, profile=None)
    # pending 600/10, started 30/10; SID launches after 120/10, OTHER after 360/10.
    launched = {
        sid: next(s.at for s in timeline if s.server(sid).launch_status == "LAUNCHED")
        for sid in behaviours
    }
    assert launched == {SID: 60 + 3 + 12, OTHER: 60 + 3 + 36}
    actions_end = max(s.at for s in timeline)
    assert actions_end == 60 + 3 + 36 + 30
    slow = simulation.timeline(
        "us-east-1",
        behaviours,
        is_drill=True,
        profile=JobProfile("p", None, DurationOverrides(launching=50)),
    )
    assert {s.at for s in slow} == {0, 60, 63, 68}  # a drill: no actions; profile wins


def test_planned_timeline_shapes():
    plans = {
        "a": ServerPlan("launched", launching=5, actions=10),
        "b": ServerPlan("launch_failed", launching=2, actions=10),
        "c": ServerPlan("action_failed", launching=5, actions=None),  # no actions: it launches
    }
    timeline = planned_timeline(plans, pending=10, started=1)
    assert [(s.at, s.job_status) for s in timeline] == [
        (0, "PENDING"),
        (10, "STARTED"),
        (11, "STARTED"),
        (13, "STARTED"),
        (16, "COMPLETED"),
        (26, "COMPLETED"),
    ]
    final = timeline[-1]
    assert final.server("a").runs[0].status == "SUCCEEDED"
    assert (final.server("b").launch_status, final.server("b").runs) == ("FAILED", ())
    assert (final.server("c").launch_status, final.server("c").runs) == ("LAUNCHED", None)
    stalled = planned_timeline({"a": ServerPlan("conversion_stalled")}, pending=1, started=1)
    assert [s.job_status for s in stalled] == ["PENDING", "STARTED", "STARTED"]
    assert stalled[-1].server("a").launch_status == "IN_PROGRESS"
