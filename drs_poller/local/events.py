"""The demo's EventBridge and SQS wiring, in moto (docs/events.md).

Events in: a queue with a DLQ (redrive policy, ``maxReceiveCount`` 5), and a rule on the
daemon region's default bus matching source ``aws.drs`` whose target is the queue. On AWS,
each other DRS region forwards its events to that bus with a rule of its own; moto cannot
forward them faithfully (it drops ``resources``), so the local stack's simulator puts every
region's events on the daemon region's bus itself (simulator/events.py). The source
server's ARN names its region, which the daemon matches the wave's against.

Events out: a bus :data:`DEMO_EVENT_BUS` and a rule on it matching source ``drs-poller``,
whose target is a second queue the demo reads at the end (the daemon's finalization
events: "DRS Poller Execution Finished", "DRS Poller Wave Finished").
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Final

import aioboto3

from drs_poller.local.stack import FAKE_CREDENTIALS

# The output bus the daemon puts its finalization events on (DRS_POLLER_EVENT_BUS).
DEMO_EVENT_BUS: Final = "drs-poller-demo"
OUT_SOURCE: Final = "drs-poller"
MAX_RECEIVE_COUNT: Final = 5


@dataclass(frozen=True)
class DemoEvents:
    region: str  # the daemon's
    queue_url: str  # DRS events in
    dlq_url: str
    out_queue_url: str  # the daemon's finalization events, from DEMO_EVENT_BUS
    bus: str
    rules: tuple[tuple[str, str, str], ...]  # (region, bus, rule name)


def _session(region: str) -> aioboto3.Session:
    return aioboto3.Session(**FAKE_CREDENTIALS, region_name=region)


async def _queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
    found = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, found["Attributes"]["QueueArn"]


async def wire_events(endpoint_url: str, *, region: str) -> DemoEvents:
    """Create the queues, the bus and the rules in moto."""
    suffix = uuid.uuid4().hex[:8]
    rules: list[tuple[str, str, str]] = []
    async with _session(region).client("sqs", endpoint_url=endpoint_url) as sqs:
        dlq_url, dlq_arn = await _queue(sqs, f"drs-poller-demo-events-dlq-{suffix}")
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
        queue_url, queue_arn = await _queue(
            sqs, f"drs-poller-demo-events-{suffix}", RedrivePolicy=json.dumps(redrive)
        )
        out_url, out_arn = await _queue(sqs, f"drs-poller-demo-finished-{suffix}")
    drs_pattern = json.dumps({"source": ["aws.drs"]})
    async with _session(region).client("events", endpoint_url=endpoint_url) as events:
        rule = f"drs-poller-demo-drs-{suffix}"
        await events.put_rule(Name=rule, EventPattern=drs_pattern)
        await events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])
        rules.append((region, "default", rule))
        await events.create_event_bus(Name=DEMO_EVENT_BUS)
        out_rule = f"drs-poller-demo-finished-{suffix}"
        await events.put_rule(
            Name=out_rule,
            EventBusName=DEMO_EVENT_BUS,
            EventPattern=json.dumps({"source": [OUT_SOURCE]}),
        )
        await events.put_targets(
            Rule=out_rule, EventBusName=DEMO_EVENT_BUS, Targets=[{"Id": "queue", "Arn": out_arn}]
        )
        rules.append((region, DEMO_EVENT_BUS, out_rule))
    return DemoEvents(
        region=region,
        queue_url=queue_url,
        dlq_url=dlq_url,
        out_queue_url=out_url,
        bus=DEMO_EVENT_BUS,
        rules=tuple(rules),
    )


async def unwire_events(endpoint_url: str, wiring: DemoEvents) -> None:
    """Delete the rules, the bus and the queues (a reused moto server keeps them)."""
    for region, bus, rule in wiring.rules:
        async with _session(region).client("events", endpoint_url=endpoint_url) as events:
            targets = await events.list_targets_by_rule(Rule=rule, EventBusName=bus)
            ids = [target["Id"] for target in targets.get("Targets", [])]
            if ids:
                await events.remove_targets(Rule=rule, EventBusName=bus, Ids=ids)
            await events.delete_rule(Name=rule, EventBusName=bus)
    async with _session(wiring.region).client("events", endpoint_url=endpoint_url) as events:
        await events.delete_event_bus(Name=wiring.bus)
    async with _session(wiring.region).client("sqs", endpoint_url=endpoint_url) as sqs:
        for url in (wiring.queue_url, wiring.dlq_url, wiring.out_queue_url):
            await sqs.delete_queue(QueueUrl=url)


@dataclass(frozen=True)
class Finalization:
    detail_type: str
    execution_id: str
    status: str
    wave: str | None  # WaveNumber, for a wave's event

    def line(self) -> str:
        wave = f" wave {self.wave}" if self.wave is not None else ""
        return f"{self.detail_type:<30}  {self.execution_id}{wave}  {self.status}"


def finalization_of(body: str) -> Finalization | None:
    """A finalization event's fields, from the envelope EventBridge put in the queue."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return None
    if not isinstance(envelope, dict) or envelope.get("source") != OUT_SOURCE:
        return None
    detail = envelope.get("detail")
    detail = detail if isinstance(detail, dict) else {}
    wave = detail.get("WaveNumber")
    return Finalization(
        detail_type=str(envelope.get("detail-type") or ""),
        execution_id=str(detail.get("ExecutionId") or "?"),
        status=str(detail.get("Status") or "?"),
        wave=None if wave is None else str(wave),
    )


async def received_finalizations(endpoint_url: str, wiring: DemoEvents) -> list[Finalization]:
    """Every finalization event in the output queue now (read and deleted)."""
    found: list[Finalization] = []
    async with _session(wiring.region).client("sqs", endpoint_url=endpoint_url) as sqs:
        while True:
            page = await sqs.receive_message(
                QueueUrl=wiring.out_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = page.get("Messages") or []
            if not messages:
                return found
            for message in messages:
                event = finalization_of(message.get("Body") or "")
                if event is not None:
                    found.append(event)
            await sqs.delete_message_batch(
                QueueUrl=wiring.out_queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(messages)
                ],
            )
