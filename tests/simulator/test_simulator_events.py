"""The simulator's "DRS Source Server Launch Result" events (simulator/events.py): one per
server whose launch ended, in the documented shape (docs/events.md), never twice; a failed
PutEvents is ignored."""

from __future__ import annotations

import json
import re

from drs_poller.clock import ManualClock
from drs_poller.simulator.events import LaunchEventPublisher
from drs_poller.simulator.service import DrsSimulator
from drs_poller.simulator.timelines import JobScript, ServerScript, ServerSnapshot, Snapshot

S1, S2, S3 = "s-00000000000000001", "s-00000000000000002", "s-00000000000000003"
JOB = "drsjob-00000000000000001"
# The documented shape (EventBridge reference for DRS; the DRS/MGN sample events).
DETAIL_TYPES = {
    "DRS Source Server Launch Result",
    "DRS Source Server Data Replication Stalled Change",
    "DRS PIT Snapshot Taken",
    "DRS Recovery Instance Failback State Change",
    "DRS Source Network Protection Status Change",
    "DRS Source Network Recovery Result",
}
ARN = re.compile(
    r"^arn:aws:drs:[a-z]{2}(-[a-z]+)+-[0-9]+:[0-9]{12}:source-server/s-[0-9a-zA-Z]{17}$"
)
STATE = re.compile(r"^(DRILL|RECOVERY)_LAUNCH_(SUCCEEDED|FAILED)$")
JOB_ID = re.compile(r"^drsjob-[0-9a-zA-Z]{17}$")


def conforms(entry: dict) -> None:
    assert set(entry) == {"Source", "DetailType", "Resources", "Detail"}
    assert entry["Source"] == "aws.drs"
    assert entry["DetailType"] in DETAIL_TYPES
    assert len(entry["Resources"]) == 1
    assert ARN.match(entry["Resources"][0])
    detail = json.loads(entry["Detail"])
    assert set(detail) == {"state", "job-id"}
    assert STATE.match(detail["state"])
    assert JOB_ID.match(detail["job-id"])


def simulator(clock: ManualClock, *, is_drill: bool = True) -> DrsSimulator:
    drs = DrsSimulator(clock=clock)
    drs.add_job(
        JobScript(
            job_id=JOB,
            region="us-west-2",
            is_drill=is_drill,
            created_at=clock.time(),
            servers=tuple(ServerScript(source_server_id=s) for s in (S1, S2, S3)),
            timeline=(
                Snapshot(0, "PENDING"),
                Snapshot(60, "STARTED", {S1: ServerSnapshot("LAUNCHED")}),
                Snapshot(
                    120,
                    "COMPLETED",
                    {S1: ServerSnapshot("LAUNCHED"), S2: ServerSnapshot("FAILED")},
                ),
            ),
        )
    )
    return drs


def test_each_ended_launch_is_published_once_in_the_documented_shape():
    clock = ManualClock()
    publisher = LaunchEventPublisher(simulator(clock), endpoint_url="http://127.0.0.1:9")
    assert publisher.due() == {}
    clock.advance(61)
    first = publisher.due()
    assert list(first) == ["us-west-2"]
    assert [json.loads(e["Detail"])["state"] for e in first["us-west-2"]] == [
        "DRILL_LAUNCH_SUCCEEDED"
    ]
    assert publisher.due() == {}  # never twice
    clock.advance(60)
    second = publisher.due()["us-west-2"]
    assert [e["Resources"][0].rsplit("/", 1)[1] for e in second] == [S2]
    assert json.loads(second[0]["Detail"]) == {"state": "DRILL_LAUNCH_FAILED", "job-id": JOB}
    for entry in first["us-west-2"] + second:
        conforms(entry)
    clock.advance(600)
    assert publisher.due() == {}  # S3 never ended: no event


def test_a_recovery_says_so():
    clock = ManualClock()
    publisher = LaunchEventPublisher(
        simulator(clock, is_drill=False), endpoint_url="http://127.0.0.1:9"
    )
    clock.advance(61)
    (entry,) = publisher.due()["us-west-2"]
    conforms(entry)
    assert json.loads(entry["Detail"])["state"] == "RECOVERY_LAUNCH_SUCCEEDED"


async def test_a_failed_put_events_is_counted_and_ignored():
    clock = ManualClock()
    # Nothing listens on the discard port: the PutEvents fails (after botocore's tries).
    publisher = LaunchEventPublisher(simulator(clock), endpoint_url="http://127.0.0.1:9")
    clock.advance(61)
    try:
        assert await publisher.publish_due() == 0
    finally:
        await publisher.aclose()
    assert publisher.failed == 1
    assert publisher.published == 0
