"""drs_poller.core.drs_events: an SQS message body to a DRS event, or a typed rejection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from drs_poller.core.drs_events import (
    LAUNCH_RESULT,
    DrsEvent,
    Rejected,
    Rejection,
    parse_event,
    parse_time,
)
from drs_poller.simulator.events import launch_result_event

SID = "s-1234567890abcdef0"
SID2 = "s-0000000000000000a"
JOB = "drsjob-1234567890abcdef0"
ACCOUNT = "111122223333"


def envelope(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "0",
        "id": "9da9af57-9253-4406-87cb-7cc400e43465",
        "detail-type": LAUNCH_RESULT,
        "source": "aws.drs",
        "account": ACCOUNT,
        "time": "2026-12-05T04:50:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:drs:us-east-1:{ACCOUNT}:source-server/{SID}"],
        "detail": {"state": "DRILL_LAUNCH_SUCCEEDED", "job-id": JOB},
    }
    for name, value in changes.items():
        key = name.replace("_", "-")
        if value is ...:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def body(**changes: Any) -> str:
    return json.dumps(envelope(**changes))


def test_a_launch_result_is_read_whole():
    event = parse_event(body())
    assert event == DrsEvent(
        detail_type=LAUNCH_RESULT,
        event_id="9da9af57-9253-4406-87cb-7cc400e43465",
        time=parse_time("2026-12-05T04:50:00Z"),
        region="us-east-1",
        account=ACCOUNT,
        source_servers=(SID,),
        job_id=JOB,
        state="DRILL_LAUNCH_SUCCEEDED",
        server_regions=("us-east-1",),
    )
    assert isinstance(event, DrsEvent)
    assert event.routable
    assert event.time == 1_796_446_200.0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", Rejection.MALFORMED_JSON),
        (b"\xff\xfe", Rejection.MALFORMED_JSON),
        ("x" * (256 * 1024 + 1), Rejection.MALFORMED_JSON),
        ("[1, 2]", Rejection.NOT_AN_EVENT),
        ('"aws.drs"', Rejection.NOT_AN_EVENT),
        (json.dumps({"Message": "an SNS notification"}), Rejection.NOT_AN_EVENT),
        (body(source=...), Rejection.NOT_AN_EVENT),
        (body(detail_type=...), Rejection.NOT_AN_EVENT),
        (body(detail_type=7), Rejection.NOT_AN_EVENT),
        (body(source="aws.mgn"), Rejection.UNKNOWN_SOURCE),
        (body(source="drs-poller"), Rejection.UNKNOWN_SOURCE),
        (body(detail_type="DRS Something New"), Rejection.UNKNOWN_DETAIL_TYPE),
        (body(detail_type="AWS API Call via CloudTrail"), Rejection.UNKNOWN_DETAIL_TYPE),
    ],
)
def test_what_is_not_a_known_drs_event_is_rejected_with_its_reason(raw, reason):
    result = parse_event(raw)
    assert isinstance(result, Rejected)
    assert result.reason is reason
    assert result.why


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [
        ({"time": "yesterday"}, "time", None),
        ({"time": 1_796_446_200}, "time", None),
        ({"time": "2026-12-05T04:50:00.123Z"}, "time", 1_796_446_200.123),
        ({"time": "2026-12-05T04:50:00+01:00"}, "time", None),  # EventBridge writes Z
        ({"region": "Mars"}, "region", None),
        ({"region": ...}, "region", None),
        ({"account": "12"}, "account", None),
        ({"account": 111122223333}, "account", None),
        ({"detail": "a string"}, "job_id", None),
        ({"detail": {"job-id": "job-1"}}, "job_id", None),
        ({"detail": {"jobID": JOB}}, "job_id", JOB),
        ({"detail": {}}, "state", None),
        ({"detail": {"state": {"nested": 1}}}, "state", None),
        ({"detail": {"state": "SOMETHING_NEW"}}, "state", "SOMETHING_NEW"),
        ({"resources": "not a list"}, "source_servers", ()),
        ({"resources": [SID, 7, None, "s-short"]}, "source_servers", (SID,)),
        (
            {"resources": [f"arn:aws:drs:us-east-1:{ACCOUNT}:source-server/{SID}"] * 2},
            "source_servers",
            (SID,),
        ),
        (
            {"resources": [f"arn:aws:drs:us-east-1:{ACCOUNT}:recovery-instance/i-0123456789"]},
            "source_servers",
            (),
        ),
        (
            # another account's server of the same id is not ours
            {"resources": [f"arn:aws:drs:us-east-1:999999999999:source-server/{SID2}"]},
            "source_servers",
            (),
        ),
        (
            # a server's region is its ARN's (a bus that re-puts a forwarded event in its
            # own region changes the envelope's, never the ARN's)
            {"resources": [f"arn:aws:drs:eu-west-1:{ACCOUNT}:source-server/{SID}", SID2]},
            "server_regions",
            ("eu-west-1", "us-east-1"),
        ),
        (
            {"resources": [f"arn:aws-us-gov:drs:us-east-1:{ACCOUNT}:source-server/{SID2}"]},
            "source_servers",
            (SID2,),
        ),
        ({"id": ...}, "event_id", None),
    ],
)
def test_a_value_out_of_shape_degrades_its_field_only(changes, field, value):
    event = parse_event(body(**changes))
    assert isinstance(event, DrsEvent)
    assert getattr(event, field) == value
    assert event.detail_type == LAUNCH_RESULT


def test_an_event_naming_nothing_is_not_routable():
    event = parse_event(body(resources=[], detail={"state": "STALLED"}))
    assert isinstance(event, DrsEvent)
    assert not event.routable


def test_every_detail_type_of_the_reference_is_known():
    for detail_type in (
        "DRS Source Server Launch Result",
        "DRS Source Server Data Replication Stalled Change",
        "DRS PIT Snapshot Taken",
        "DRS Recovery Instance Failback State Change",
        "DRS Source Network Protection Status Change",
        "DRS Source Network Recovery Result",
    ):
        assert isinstance(parse_event(body(detail_type=detail_type)), DrsEvent)


@pytest.mark.parametrize(("is_drill", "launched"), [(True, True), (False, False)])
def test_the_simulator_s_launch_result_reads_back(is_drill, launched):
    entry = launch_result_event(
        region="us-west-2",
        account=ACCOUNT,
        source_server_id=SID,
        job_id=JOB,
        is_drill=is_drill,
        launched=launched,
    )
    # What EventBridge makes of a PutEvents entry.
    delivered = envelope(
        source=entry["Source"],
        detail_type=entry["DetailType"],
        resources=entry["Resources"],
        detail=json.loads(entry["Detail"]),
        region="us-west-2",
    )
    event = parse_event(json.dumps(delivered))
    assert isinstance(event, DrsEvent)
    assert event.source_servers == (SID,)
    assert event.job_id == JOB
    kind = "DRILL" if is_drill else "RECOVERY"
    assert event.state == f"{kind}_LAUNCH_{'SUCCEEDED' if launched else 'FAILED'}"
