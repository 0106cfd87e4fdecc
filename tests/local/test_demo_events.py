"""The demo's EventBridge and SQS wiring in moto (local/events.py): DRS events reach the
input queue; the daemon's finalization events on the demo bus reach the output queue and
are read back; everything is deleted afterwards."""

from __future__ import annotations

import json

import aioboto3
import pytest

from drs_poller.local.events import (
    DEMO_EVENT_BUS,
    finalization_of,
    received_finalizations,
    unwire_events,
    wire_events,
)
from drs_poller.local.stack import FAKE_CREDENTIALS

REGION = "us-east-1"


def session() -> aioboto3.Session:
    return aioboto3.Session(**FAKE_CREDENTIALS, region_name=REGION)


async def test_the_demo_wiring_routes_both_ways_and_is_removed(moto_url):
    wiring = await wire_events(moto_url, region=REGION)
    try:
        async with (
            session().client("events", endpoint_url=moto_url) as events,
            session().client("sqs", endpoint_url=moto_url) as sqs,
        ):
            redrive = await sqs.get_queue_attributes(
                QueueUrl=wiring.queue_url, AttributeNames=["RedrivePolicy"]
            )
            policy = json.loads(redrive["Attributes"]["RedrivePolicy"])
            assert policy["deadLetterTargetArn"].endswith(wiring.dlq_url.rsplit("/", 1)[1])
            assert int(policy["maxReceiveCount"]) == 5
            await events.put_events(
                Entries=[
                    {
                        "Source": "aws.drs",
                        "DetailType": "DRS Source Server Launch Result",
                        "Resources": [],
                        "Detail": "{}",
                    },
                    # What the daemon puts on its bus (the events-out half).
                    {
                        "Source": "drs-poller",
                        "DetailType": "DRS Poller Execution Finished",
                        "Detail": json.dumps(
                            {"ExecutionId": "ex-1", "PlanId": "p", "Status": "COMPLETED"}
                        ),
                        "EventBusName": DEMO_EVENT_BUS,
                    },
                    {
                        "Source": "drs-poller",
                        "DetailType": "DRS Poller Wave Finished",
                        "Detail": json.dumps(
                            {
                                "ExecutionId": "ex-1",
                                "PlanId": "p",
                                "Status": "PARTIAL",
                                "WaveNumber": 2,
                            }
                        ),
                        "EventBusName": DEMO_EVENT_BUS,
                    },
                ]
            )
            got = await sqs.receive_message(QueueUrl=wiring.queue_url, WaitTimeSeconds=1)
            (message,) = got["Messages"]
            assert json.loads(message["Body"])["source"] == "aws.drs"
        finalizations = await received_finalizations(moto_url, wiring)
        assert sorted(f.line() for f in finalizations) == sorted(
            [
                f"{'DRS Poller Execution Finished':<30}  ex-1  COMPLETED",
                f"{'DRS Poller Wave Finished':<30}  ex-1 wave 2  PARTIAL",
            ]
        )
        assert await received_finalizations(moto_url, wiring) == []  # read and deleted
    finally:
        await unwire_events(moto_url, wiring)
    async with session().client("sqs", endpoint_url=moto_url) as sqs:
        listed = await sqs.list_queues(QueueNamePrefix="drs-poller-demo")
    assert not set(listed.get("QueueUrls", [])) & {wiring.queue_url, wiring.out_queue_url}


@pytest.mark.parametrize(
    "body",
    ["not json", json.dumps({"source": "aws.drs", "detail": {}}), json.dumps([1])],
)
def test_anything_else_is_not_a_finalization(body):
    assert finalization_of(body) is None
