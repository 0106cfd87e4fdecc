"""parse_execution and peek_start_time: strict on what the daemon relies on,
tolerant (and lossless) for everything else."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from drs_poller.core.models import (
    ExecutionType,
    MalformedItemError,
    parse_execution,
    peek_start_time,
)

EXECUTION_ID = "exec-1"


def _item(**overrides: Any) -> dict[str, Any]:
    """A valid POLLING item with two waves, as the DynamoDB deserializer gives it."""
    item: dict[str, Any] = {
        "ExecutionId": EXECUTION_ID,
        "PlanId": "plan-1",
        "ExecutionType": "RECOVERY",
        "Status": "POLLING",
        "StartTime": Decimal("1800000000.250"),
        "Waves": [
            {
                "WaveName": "web",
                "ProtectionGroupId": "pg-1",
                "Region": "us-east-1",
                "Status": "IN_PROGRESS",
                "StartTime": Decimal(1800000000),
                "Servers": [
                    {
                        "SourceServerId": "s-1",
                        "RecoveryJobId": "drsjob-1",
                        "Status": "LAUNCHED",
                        "IsDrill": False,
                        "LaunchTime": Decimal(1800000000),
                        "LaunchedTime": Decimal("1800000100.5"),
                        "PostLaunchActionsStatus": "IN_PROGRESS",
                        "JobNotFoundPolls": Decimal(2),
                        "PollAttempts": Decimal(7),
                    },
                    {"SourceServerId": "s-2", "Status": "FAILED", "Error": "could not start"},
                ],
            },
            {
                "WaveName": "db",
                "Region": "eu-west-1",
                "ExecutionMode": "DRILL",
                "Servers": [{"SourceServerId": "s-3", "Status": "PENDING"}],
            },
        ],
    }
    item.update(overrides)
    return item


def test_parse_valid_item_reads_every_field():
    execution = parse_execution(_item(Phase="POST_LAUNCH", LastPolledTime=Decimal(1800000200)))

    assert execution.execution_id == EXECUTION_ID
    assert execution.plan_id == "plan-1"
    assert execution.key == (EXECUTION_ID, "plan-1")
    assert execution.execution_type is ExecutionType.RECOVERY
    assert execution.status == "POLLING"
    assert execution.start_time == 1800000000.25
    assert execution.phase == "POST_LAUNCH"
    assert execution.last_polled_time == 1800000200.0
    assert len(execution.waves) == 2

    web, db = execution.waves
    assert (web.name, web.region, web.status, web.mode) == ("web", "us-east-1", "IN_PROGRESS", None)
    assert (db.name, db.region, db.status, db.mode) == (
        "db",
        "eu-west-1",
        None,
        ExecutionType.DRILL,
    )
    assert execution.mode_of(web) is ExecutionType.RECOVERY
    assert execution.mode_of(db) is ExecutionType.DRILL

    s1, s2 = web.servers
    assert s1.source_server_id == "s-1"
    assert s1.job_id == "drsjob-1"
    assert s1.status == "LAUNCHED"
    assert s1.launched_time == 1800000100.5
    assert s1.post_launch_status == "IN_PROGRESS"
    assert s1.error is None
    assert s1.job_not_found_polls == 2
    assert s1.poll_attempts == 7
    assert (s2.job_id, s2.status, s2.error) == (None, "FAILED", "could not start")
    assert (s2.job_not_found_polls, s2.poll_attempts, s2.launched_time) == (0, 0, None)
    (s3,) = db.servers
    assert (s3.source_server_id, s3.job_id, s3.status) == ("s-3", None, "PENDING")


def test_optional_fields_absent():
    execution = parse_execution(_item())
    assert execution.phase is None
    assert execution.last_polled_time is None


def test_missing_execution_type_means_drill():
    item = _item()
    del item["ExecutionType"]
    assert parse_execution(item).execution_type is ExecutionType.DRILL


def test_wave_without_name_gets_a_positional_one():
    item = _item()
    del item["Waves"][1]["WaveName"]
    assert parse_execution(item).waves[1].name == "wave-2"


def test_empty_job_id_means_no_job():
    item = _item()
    item["Waves"][1]["Servers"][0]["RecoveryJobId"] = ""
    assert parse_execution(item).waves[1].servers[0].job_id is None


def test_numbers_may_be_int_float_or_decimal():
    for value, expected in ((1800000000, 1800000000.0), (1.5, 1.5), (Decimal("2.25"), 2.25)):
        assert parse_execution(_item(StartTime=value)).start_time == expected


def test_unknown_attributes_are_kept_verbatim_in_raw():
    item = _item(Initiator="api", Tags={"team": "dr"})
    item["Waves"][0]["Custom"] = [Decimal(1), "x"]
    item["Waves"][0]["Servers"][0]["Note"] = {"by": "operator"}
    original = copy.deepcopy(item)

    execution = parse_execution(item)

    assert execution.raw["Initiator"] == "api"
    assert execution.raw["Tags"] == {"team": "dr"}
    assert execution.waves[0].raw["Custom"] == [Decimal(1), "x"]
    assert execution.waves[0].servers[0].raw["Note"] == {"by": "operator"}
    assert execution.waves[0].servers[0].raw["IsDrill"] is False
    assert dict(execution.raw) == original
    assert item == original  # parsing does not mutate the input


def _without(path: tuple[Any, ...]) -> dict[str, Any]:
    item = _item()
    target: Any = item
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return item


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    item = _item()
    target: Any = item
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return item


def _wave1_started_without_region() -> dict[str, Any]:
    item = _item()
    del item["Waves"][1]["Region"]
    item["Waves"][1]["Servers"].append({"SourceServerId": "s-4", "RecoveryJobId": "drsjob-4"})
    return item


MALFORMED = [
    ("missing PlanId", _without(("PlanId",)), "PlanId"),
    ("empty PlanId", _with(("PlanId",), ""), "PlanId"),
    ("missing Status", _without(("Status",)), "Status"),
    ("missing StartTime", _without(("StartTime",)), "StartTime"),
    ("missing Waves", _without(("Waves",)), "Waves"),
    ("string StartTime", _with(("StartTime",), "1800000000"), "StartTime"),
    ("bool StartTime", _with(("StartTime",), True), "StartTime"),
    ("numeric Status", _with(("Status",), Decimal(1)), "Status"),
    ("Waves a map", _with(("Waves",), {"0": {}}), "Waves"),
    ("Waves a string", _with(("Waves",), "[]"), "Waves"),
    ("wave not a map", _with(("Waves", 1), "db"), "Waves[1]"),
    ("wave without Servers", _without(("Waves", 1, "Servers")), "Waves[1].Servers"),
    ("Servers not a list", _with(("Waves", 0, "Servers"), {}), "Waves[0].Servers"),
    ("server not a map", _with(("Waves", 0, "Servers", 1), "s-2"), "Waves[0].Servers[1]"),
    (
        "server without SourceServerId",
        _without(("Waves", 1, "Servers", 0, "SourceServerId")),
        "Waves[1].Servers[0].SourceServerId",
    ),
    (
        "numeric SourceServerId",
        _with(("Waves", 1, "Servers", 0, "SourceServerId"), Decimal(3)),
        "Waves[1].Servers[0].SourceServerId",
    ),
    (
        "bool LaunchedTime",
        _with(("Waves", 0, "Servers", 0, "LaunchedTime"), False),
        "Waves[0].Servers[0].LaunchedTime",
    ),
    (
        "string PollAttempts",
        _with(("Waves", 0, "Servers", 0, "PollAttempts"), "7"),
        "Waves[0].Servers[0].PollAttempts",
    ),
    (
        "numeric RecoveryJobId",
        _with(("Waves", 0, "Servers", 0, "RecoveryJobId"), Decimal(1)),
        "Waves[0].Servers[0].RecoveryJobId",
    ),
    ("bad ExecutionType", _with(("ExecutionType",), "drill"), "ExecutionType"),
    ("numeric ExecutionType", _with(("ExecutionType",), Decimal(1)), "ExecutionType"),
    ("bad ExecutionMode", _with(("Waves", 1, "ExecutionMode"), "TEST"), "Waves[1].ExecutionMode"),
    ("started wave without Region", _wave1_started_without_region(), "Waves[1].Region"),
    ("started wave with empty Region", _with(("Waves", 0, "Region"), ""), "Waves[0].Region"),
    ("numeric Region", _with(("Waves", 0, "Region"), Decimal(1)), "Waves[0].Region"),
    ("string LastPolledTime", _with(("LastPolledTime",), "now"), "LastPolledTime"),
]


@pytest.mark.parametrize(
    ("item", "field"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_malformed_item_names_execution_and_field(item, field):
    with pytest.raises(MalformedItemError) as caught:
        parse_execution(item)
    error = caught.value
    assert error.execution_id == EXECUTION_ID
    assert error.field == field
    assert repr(EXECUTION_ID) in str(error)
    assert f"field {field}:" in str(error)


@pytest.mark.parametrize("execution_id", [None, "", Decimal(5)])
def test_missing_or_bad_execution_id(execution_id):
    item = _item(ExecutionId=execution_id)
    with pytest.raises(MalformedItemError) as caught:
        parse_execution(item)
    assert caught.value.field == "ExecutionId"


def test_wave_without_region_is_fine_while_no_job_started():
    item = _without(("Waves", 1, "Region"))
    assert parse_execution(item).waves[1].region is None


# --- peek_start_time ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"StartTime": Decimal("12.5")}, 12.5),
        ({"StartTime": 7}, 7.0),
        ({"StartTime": 7.25, "Waves": "garbage"}, 7.25),
        ({"StartTime": "12"}, None),
        ({"StartTime": True}, None),
        ({"StartTime": None}, None),
        ({}, None),
    ],
)
def test_peek_start_time(item, expected):
    assert peek_start_time(item) == expected
