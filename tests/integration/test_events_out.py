"""Finalization events out (docs/events.md): the daemon puts an event on an EventBridge
bus when a wave or an execution reached its final status, after the write that made it
final has landed. Real aiobotocore clients against moto server's EventBridge (a rule on
the bus delivers to an SQS queue, which the test reads), DynamoDB, and the DRS
simulator, on a manual clock. PutEvents' answers are bent by the fault proxy."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict

import pytest
from faultproxy import FaultProxy, Outcome, rewrite_json, status
from harness import REGION, ServerSnapshot, launched, metric, server_id
from harness import replica_turn as _turn

from drs_poller.core.events_out import PUBLISHED, idempotency_key
from drs_poller.engine.daemon import Daemon
from drs_poller.local.items import ServerSpec
from drs_poller.observability.metrics import Metrics
from drs_poller.settings import load_settings

LEASE = 30.0
RENEW = LEASE / 3
EXECUTION = "DRS Poller Execution Finished"
WAVE = "DRS Poller Wave Finished"


@pytest.fixture
async def bus(world, moto_url):
    """A fresh bus with a rule on source drs-poller delivering to a fresh SQS queue;
    yields (bus name, a function returning the events the queue received since)."""
    name = f"drs-poller-{uuid.uuid4().hex[:8]}"
    session = world.stack.session()
    async with (
        session.client("events", endpoint_url=moto_url) as events,
        session.client("sqs", endpoint_url=moto_url) as sqs,
    ):
        await events.create_event_bus(Name=name)
        queue = (await sqs.create_queue(QueueName=name))["QueueUrl"]
        attributes = await sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        await events.put_rule(
            Name="finalization",
            EventBusName=name,
            EventPattern=json.dumps({"source": ["drs-poller"]}),
        )
        await events.put_targets(
            Rule="finalization",
            EventBusName=name,
            Targets=[{"Id": "queue", "Arn": attributes["Attributes"]["QueueArn"]}],
        )

        async def received() -> list[dict]:
            found = []
            while True:
                answer = await sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
                messages = answer.get("Messages") or []
                if not messages:
                    return found
                for message in messages:
                    found.append(json.loads(message["Body"]))
                    await sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])

        yield name, received


def _two_waves(world, execution_id: str, n: int, *, wave1: float, wave2: float, fail=False):
    """A drill of two waves, one server each: wave 1 ends at ``wave1`` s (FAILED with
    ``fail``), wave 2 at ``wave2`` s."""
    s1, s2 = server_id(2 * n + 1), server_id(2 * n + 2)
    end1 = ServerSnapshot("FAILED") if fail else launched()
    job1 = world.job([s1], [(0, "STARTED", {}), (wave1, "COMPLETED", {s1: end1})])
    job2 = world.job([s2], [(0, "STARTED", {}), (wave2, "COMPLETED", {s2: launched()})])
    return world.spec(
        execution_id, [(REGION, [ServerSpec(s1, job1)]), (REGION, [ServerSpec(s2, job2)])]
    )


def _scope(event: dict) -> str:
    detail = event["detail"]
    return "execution" if "WaveNumber" not in detail else f"wave-{detail['WaveNumber']}"


async def test_a_wave_and_an_execution_each_announce_their_final_status_once(world, bus):
    name, received = bus
    await world.put_spec(_two_waves(world, "ex-events", 1, wave1=100, wave2=400, fail=True))
    daemon = await world.daemon(event_bus=name, events_endpoint_url=world.stack.moto_url)
    publisher = daemon.built.publisher
    assert publisher is not None
    seen: list[tuple[dict, dict]] = []  # (event, the item the table held when it arrived)
    for _ in range(60):
        await world.step(daemon, 15)
        await publisher.drain()
        events = await received()
        item = await world.get("ex-events")
        seen.extend((event, item) for event in events)
        if item["Status"] != "POLLING" and not events:
            break
    assert [(e["detail-type"], _scope(e), e["detail"]["Status"]) for e, _ in seen] == [
        (WAVE, "wave-1", "FAILED"),  # its only server failed
        (WAVE, "wave-2", "COMPLETED"),
        (EXECUTION, "execution", "PARTIAL"),
    ]
    # Each came after the write that made its status final: the table held it already.
    (wave1, during), _, (finished, after) = seen
    assert during["Waves"][0]["Status"] == "FAILED"
    assert during["Status"] == "POLLING"  # wave 1's event did not wait for the execution
    assert after["Status"] == "PARTIAL"
    assert wave1["source"] == "drs-poller"
    detail = finished["detail"]
    assert (detail["Schema"], detail["SchemaVersion"]) == ("drs-poller/event", 1)
    assert detail["ExecutionId"] == "ex-events"
    assert detail["PlanId"] == "plan-local"
    assert detail["ExecutionType"] == "DRILL"
    assert [w["Status"] for w in detail["Waves"]] == ["FAILED", "COMPLETED"]
    assert [s["SourceServerId"] for s in detail["FailedServers"]] == [server_id(3)]
    assert detail["FailedServers"][0]["Reason"]
    assert detail["IdempotencyKey"] == idempotency_key(
        execution_id="ex-events", plan_id="plan-local", scope="execution", status="PARTIAL"
    )
    assert wave1["detail"]["WaveNumber"] == 1
    # Recorded on the item once accepted, so no replica sends them again.
    assert (await world.get("ex-events"))[PUBLISHED] == {
        "wave-1:FAILED",
        "wave-2:COMPLETED",
        "execution:PARTIAL",
    }
    assert (
        metric(daemon, "drs_poller_events_published_total", {"type": "wave", "outcome": "sent"})
        == 2
    )
    assert (
        metric(
            daemon, "drs_poller_events_published_total", {"type": "execution", "outcome": "sent"}
        )
        == 1
    )
    # A sweep finds nothing left to send.
    assert await publisher.sweep_once() == 0


async def test_putevents_partial_failures_are_retried_alone(world, bus):
    name, received = bus
    await world.put_spec(_two_waves(world, "ex-partial", 2, wave1=100, wave2=100))
    async with FaultProxy(world.stack.moto_url, keep_requests=True) as proxy:
        # EventBridge takes the batch but rejects its second entry (a transient
        # InternalFailure): only that entry is sent again, after the daemon's backoff.
        def reject_second(body):
            body["FailedEntryCount"] = 1
            body["Entries"][1] = {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
            return body

        proxy.add(rewrite_json(reject_second), operation="PutEvents", times=1)
        daemon = await world.daemon(event_bus=name, events_endpoint_url=proxy.url)
        item = await world.run_until_final(daemon, "ex-partial", step=15)
        assert item["Status"] == "COMPLETED"
        await daemon.built.publisher.drain()
        calls = [json.loads(r.request.body)["Entries"] for r in proxy.select("PutEvents")]
        assert proxy.count("PutEvents", outcome=Outcome.REWRITTEN) == 1
    assert [len(entries) for entries in calls] == [3, 1]
    assert calls[1] == [calls[0][1]]  # the rejected entry alone, unchanged
    events = await received()
    by_key = defaultdict(list)
    for event in events:
        by_key[event["detail"]["IdempotencyKey"]].append(event)
    # Every final status arrived; the rejected one twice here (moto had delivered it
    # before the proxy bent the answer), both copies under one key.
    assert sorted((_scope(e[0]), len(e)) for e in by_key.values()) == [
        ("execution", 1),
        ("wave-1", 1),
        ("wave-2", 2),
    ]
    labels = {"type": "wave", "outcome": "retried"}
    assert metric(daemon, "drs_poller_events_published_total", labels) == 1
    assert (await world.get("ex-partial"))[PUBLISHED] == {
        "wave-1:COMPLETED",
        "wave-2:COMPLETED",
        "execution:COMPLETED",
    }


async def test_entries_still_rejected_after_the_retries_are_counted_then_sent_by_the_sweep(
    world, bus
):
    name, received = bus
    await world.put_spec(_two_waves(world, "ex-throttled", 3, wave1=100, wave2=100))
    rejected = {
        "FailedEntryCount": 3,
        "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"}] * 3,
    }
    async with FaultProxy(world.stack.moto_url) as proxy:
        rule = proxy.add(status(200, rejected), operation="PutEvents")
        daemon = await world.daemon(event_bus=name, events_endpoint_url=proxy.url, max_attempts=3)
        await world.run_until_final(daemon, "ex-throttled", step=15)
        publisher = daemon.built.publisher
        await publisher.drain()
        assert proxy.count("PutEvents", outcome=Outcome.INJECTED) == 3  # max_attempts
        assert await received() == []
        for kind, count in (("wave", 2), ("execution", 1)):
            for outcome, times in (("retried", 2 * count), ("failed", count)):
                labels = {"type": kind, "outcome": outcome}
                assert metric(daemon, "drs_poller_events_published_total", labels) == times
        assert PUBLISHED not in await world.get("ex-throttled")
        # Not lost while the process lives: the sweep finds the execution unannounced.
        proxy.remove(rule)
        assert await publisher.sweep_once() == 3
        await publisher.drain()
    assert sorted(_scope(e) for e in await received()) == ["execution", "wave-1", "wave-2"]


async def test_a_full_queue_drops_and_counts_and_the_sweep_finds_them_again(world, bus):
    name, received = bus
    await world.put_spec(_two_waves(world, "ex-full", 4, wave1=100, wave2=100))
    daemon = await world.daemon(event_bus=name, events_endpoint_url=world.stack.moto_url)
    publisher = daemon.built.publisher
    publisher.queue = asyncio.Queue(1)
    await world.run_until_final(daemon, "ex-full", step=15)
    dropped = sum(
        metric(daemon, "drs_poller_events_published_total", {"type": k, "outcome": "dropped"})
        for k in ("wave", "execution")
    )
    assert dropped >= 1  # counted
    await publisher.drain()
    first = await received()
    assert 0 < len(first) < 3
    # Not lost while the process lives: the sweep finds what did not fit (one at a
    # time, through this queue of one).
    every = first
    for _ in range(3):
        if await publisher.sweep_once() == 0:
            break
        await publisher.drain()
        every += await received()
    assert sorted(_scope(e) for e in every) == ["execution", "wave-1", "wave-2"]


@pytest.mark.parametrize("projection", ["ALL", "KEYS_ONLY"])
async def test_across_a_failover_every_final_status_arrives_with_one_key(world, bus):
    """Replica a dies twice over: first right after PutEvents (accepted, not recorded),
    then right after its final writes (events queued, never sent). Replica b takes over
    a's share after the lease time and sends what a left: every final status arrives at
    least once, and every copy of one carries the same IdempotencyKey."""
    name, received = bus
    names = [f"ex-fo-{n}" for n in range(6)]
    for n, execution_id in enumerate(names):
        await world.put_spec(_two_waves(world, execution_id, 10 + n, wave1=60, wave2=200))
    table = await world.lease_table()
    replicas = [
        await world.daemon(
            event_bus=name,
            events_endpoint_url=world.stack.moto_url,
            lease_table_name=table,
            replica_id=f"replica-{replica}",
            lease_time=LEASE,
            shard_jobs=1,
        )
        for replica in ("a", "b")
    ]
    a, b = replicas

    async def not_recorded(**_):
        return True  # a "crashes" between PutEvents and the record

    a.built.publisher.records.record = not_recorded
    # Until every first wave ended: both send (a does not record).
    for _ in range(20):
        await _turn(world, a, b, seconds=RENEW)
        await a.built.publisher.drain()
        await b.built.publisher.drain()
        items = [await world.get(x) for x in names]
        if all(item["Waves"][0]["Status"] == "COMPLETED" for item in items):
            break
    a_share = {t.execution_id for t in a.state.tracked.values()}
    assert a_share
    assert a_share != set(names)
    # Until every execution ended: a no longer sends anything, then stops for good.
    for _ in range(40):
        await _turn(world, a, b, seconds=RENEW)
        await b.built.publisher.drain()
        if all(item["Status"] == "COMPLETED" for item in [await world.get(x) for x in names]):
            break
    assert not a.built.publisher.queue.empty()  # a's last events die with it
    # b alone, past a's lease: it takes over, and its sweep finds what a left.
    for _ in range(int(2 * LEASE / RENEW) + 2):
        await _turn(world, b, seconds=RENEW)
    assert await b.built.publisher.sweep_once() > 0
    await b.built.publisher.drain()

    copies = defaultdict(list)
    for event in await received():
        detail = event["detail"]
        copies[(detail["ExecutionId"], _scope(event), detail["Status"])].append(
            detail["IdempotencyKey"]
        )
    expected = {
        (x, scope, "COMPLETED") for x in names for scope in ("wave-1", "wave-2", "execution")
    }
    assert set(copies) == expected  # every final status, at least once
    for (execution_id, scope, final), keys in copies.items():
        key = idempotency_key(
            execution_id=execution_id, plan_id="plan-local", scope=scope, status=final
        )
        assert set(keys) == {key}
    # a's unrecorded first waves were sent again by b: duplicates happened, under one key.
    assert {x for (x, scope, _), keys in copies.items() if len(keys) > 1} == a_share
    for x in names:
        assert (await world.get(x))[PUBLISHED] >= {"wave-2:COMPLETED", "execution:COMPLETED"}


async def test_without_a_bus_nothing_is_published(world):
    await world.put_spec(_two_waves(world, "ex-quiet", 5, wave1=60, wave2=60))
    daemon = await world.daemon()
    item = await world.run_until_final(daemon, "ex-quiet", step=15)
    assert item["Status"] == "COMPLETED"
    assert daemon.built.publisher is None
    assert daemon.poller.publisher is None
    assert PUBLISHED not in item


async def test_a_malformed_item_ended_failed_still_announces_it(world, bus):
    name, received = bus
    await world.put(
        {
            "ExecutionId": "ex-malformed",
            "PlanId": "plan-local",
            "Status": "POLLING",
            "StartTime": world.clock.time(),
            "Waves": [{"WaveName": "w", "Region": REGION, "Servers": [{"Status": 3}]}],
        }
    )
    daemon = await world.daemon(
        event_bus=name, events_endpoint_url=world.stack.moto_url, max_execution_age=7200
    )
    for _ in range(3):  # past the maximum age the daemon ends it, saying why
        await world.step(daemon, 3600)
    assert (await world.get("ex-malformed"))["Status"] == "FAILED"
    await daemon.built.publisher.drain()
    (event,) = await received()
    assert event["detail-type"] == EXECUTION
    assert event["detail"]["Status"] == "FAILED"
    assert "SourceServerId" in event["detail"]["ErrorMessage"]


async def test_the_daemon_runs_the_sender_and_the_sweeper_and_stops_them(world, bus):
    """startup() starts both root tasks with a bus, and shutdown() ends them."""
    name, _ = bus
    daemon = Daemon(
        load_settings(
            table_name=world.table,
            dynamodb_endpoint_url=world.stack.moto_url,
            events_endpoint_url=world.stack.moto_url,
            event_bus=name,
            metrics_port=0,
            metrics_host="127.0.0.1",
            shutdown_grace=1,
        ),
        session=world.stack.session(),
        metrics=Metrics(),
    )
    await daemon.startup()
    try:
        roots = daemon.roots
        assert roots is not None
        names = {task.get_name() for task in roots.all()}
        assert {"sender of events", "sweeper of unsent events"} <= names
        assert not roots.publisher.done()
    finally:
        await daemon.shutdown()
    assert roots.publisher.done()
    assert roots.event_sweeper.done()
